# dlavm instruction listing v1
# case: llama_block
# config: max_seq=256 layers=2 hidden=4096 heads=32 kv_heads=8 head_dim=128 ffn=11008
# model: llama_block
# target: vcu128
# isa: 1.1
# dims: seq in [1, 256]
# at: seq=129
# addresses: relocated
# buffer weights:model.layers.0.input_layernorm.weight.f16 0x0 0x2000
# buffer weights:model.layers.0.self_attn.q_proj.weight.int4 0x2000 0x800000
# buffer weights:model.layers.0.self_attn.q_proj.weight.int4.scale 0x802000 0x40000
# buffer weights:model.rope.table.f32 0x842000 0x20000
# buffer weights:model.layers.0.self_attn.k_proj.weight.int4 0x862000 0x200000
# buffer weights:model.layers.0.self_attn.k_proj.weight.int4.scale 0xa62000 0x10000
# buffer weights:model.layers.0.self_attn.v_proj.weight.int4 0xa72000 0x200000
# buffer weights:model.layers.0.self_attn.v_proj.weight.int4.scale 0xc72000 0x10000
# buffer weights:model.layers.0.self_attn.o_proj.weight.int4 0xc82000 0x800000
# buffer weights:model.layers.0.self_attn.o_proj.weight.int4.scale 0x1482000 0x40000
# buffer weights:model.layers.0.post_attention_layernorm.weight.f16 0x14c2000 0x2000
# buffer weights:model.layers.0.mlp.gate_proj.weight.int4 0x14c4000 0x1580000
# buffer weights:model.layers.0.mlp.gate_proj.weight.int4.scale 0x2a44000 0xac000
# buffer weights:pwl.silu 0x2af0000 0x1010
# buffer weights:model.layers.0.mlp.up_proj.weight.int4 0x2af1020 0x1580000
# buffer weights:model.layers.0.mlp.up_proj.weight.int4.scale 0x4071020 0xac000
# buffer weights:model.layers.0.mlp.down_proj.weight.int4 0x411d020 0x1580000
# buffer weights:model.layers.0.mlp.down_proj.weight.int4.scale 0x569d020 0xac000
# buffer weights:model.layers.1.input_layernorm.weight.f16 0x5749020 0x2000
# buffer weights:model.layers.1.self_attn.q_proj.weight.int4 0x574b020 0x800000
# buffer weights:model.layers.1.self_attn.q_proj.weight.int4.scale 0x5f4b020 0x40000
# buffer weights:model.layers.1.self_attn.k_proj.weight.int4 0x5f8b020 0x200000
# buffer weights:model.layers.1.self_attn.k_proj.weight.int4.scale 0x618b020 0x10000
# buffer weights:model.layers.1.self_attn.v_proj.weight.int4 0x619b020 0x200000
# buffer weights:model.layers.1.self_attn.v_proj.weight.int4.scale 0x639b020 0x10000
# buffer weights:model.layers.1.self_attn.o_proj.weight.int4 0x63ab020 0x800000
# buffer weights:model.layers.1.self_attn.o_proj.weight.int4.scale 0x6bab020 0x40000
# buffer weights:model.layers.1.post_attention_layernorm.weight.f16 0x6beb020 0x2000
# buffer weights:model.layers.1.mlp.gate_proj.weight.int4 0x6bed020 0x1580000
# buffer weights:model.layers.1.mlp.gate_proj.weight.int4.scale 0x816d020 0xac000
# buffer weights:model.layers.1.mlp.up_proj.weight.int4 0x8219020 0x1580000
# buffer weights:model.layers.1.mlp.up_proj.weight.int4.scale 0x9799020 0xac000
# buffer weights:model.layers.1.mlp.down_proj.weight.int4 0x9845020 0x1580000
# buffer weights:model.layers.1.mlp.down_proj.weight.int4.scale 0xadc5020 0xac000
# buffer weights:model.norm.weight.f16 0xae71020 0x2000
# buffer kv:forward.attn.kcache 0xae73020 0x80000
# buffer kv:forward.attn.vcache 0xaef3020 0x80000
# buffer kv:forward.attn.scores 0xaf73020 0x800000
# buffer kv:forward.attn.probs 0xb773020 0x400000
stream forward.0 57
0000 L0 dev.rmsnorm#2 rmsnorm src=act+0x400000 dst=act+0x0 gamma=weights:model.layers.0.input_layernorm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06
0001 L0 dev.mvm#3 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.0.self_attn.q_proj.weight.int4 wscale=weights:model.layers.0.self_attn.q_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=4096 wait=sfu
0002 L0 dev.mvm#3 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.0.self_attn.q_proj.weight.int4 wscale=weights:model.layers.0.self_attn.q_proj.weight.int4.scale out=act+0x300000 aff=- resid=- m=1{seq-128} k=4096 n=4096 ; if {1<(seq+127)//128}
0003 L0 dev.rope#4 rope interleaved=0 src=act+0x200000 dst=act+0x600000 table=weights:model.rope.table.f32 m=129{seq} heads=32 d=128 pos0=0 wait=mvm
0004 L0 dev.mvm#5 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.0.self_attn.k_proj.weight.int4 wscale=weights:model.layers.0.self_attn.k_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=1024 wait=sfu
0005 L0 dev.mvm#5 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.0.self_attn.k_proj.weight.int4 wscale=weights:model.layers.0.self_attn.k_proj.weight.int4.scale out=act+0x240000 aff=- resid=- m=1{seq-128} k=4096 n=1024 ; if {1<(seq+127)//128}
0006 L0 dev.rope#6 rope interleaved=0 src=act+0x200000 dst=act+0x280000 table=weights:model.rope.table.f32 m=129{seq} heads=8 d=128 pos0=0 wait=mvm
0007 L0 dev.mvm#7 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.0.self_attn.v_proj.weight.int4 wscale=weights:model.layers.0.self_attn.v_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=1024 wait=sfu
0008 L0 dev.mvm#7 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.0.self_attn.v_proj.weight.int4 wscale=weights:model.layers.0.self_attn.v_proj.weight.int4.scale out=act+0x240000 aff=- resid=- m=1{seq-128} k=4096 n=1024 ; if {1<(seq+127)//128}
0009 L0 dev.attention#8 kv_append src=act+0x280000 dst=kv:forward.attn.kcache m=129{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=sfu
0010 L0 dev.attention#8 kv_append src=act+0x200000 dst=kv:forward.attn.vcache m=129{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=mvm
0011 L0 dev.attention#8 mat_qk out_fp32=1 q=act+0x600000 kc=kv:forward.attn.kcache out=kv:forward.attn.scores m=129{seq} heads=32 kv_heads=8 l=129{seq} d=128 k_stride=65536 scale=0.0883883461356163 wait=sfu
0012 L0 dev.attention#8 softmax in_fp32=1 causal=1 src=kv:forward.attn.scores dst=kv:forward.attn.probs rows=4128{seq*32} cols=129{seq} m=129{seq} pos0=0 wait=mat
0013 L0 dev.attention#8 mat_pv p=kv:forward.attn.probs vc=kv:forward.attn.vcache out=act+0x0 m=129{seq} heads=32 kv_heads=8 l=129{seq} d=128 v_stride=65536 wait=mvm,sfu
0014 L0 dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.0.self_attn.o_proj.weight.int4 wscale=weights:model.layers.0.self_attn.o_proj.weight.int4.scale out=act+0xac0000 aff=- resid=act+0x400000 m=128{min(seq,128)} k=4096 n=4096 wait=mat
0015 L0 dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.0.self_attn.o_proj.weight.int4 wscale=weights:model.layers.0.self_attn.o_proj.weight.int4.scale out=act+0xbc0000 aff=- resid=act+0x500000 m=1{seq-128} k=4096 n=4096 ; if {1<(seq+127)//128}
0016 L0 dev.rmsnorm#10 rmsnorm src=act+0xac0000 dst=act+0xcc0000 gamma=weights:model.layers.0.post_attention_layernorm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm
0017 L0 dev.mvm#11 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xcc0000 w=weights:model.layers.0.mlp.gate_proj.weight.int4 wscale=weights:model.layers.0.mlp.gate_proj.weight.int4.scale out=act+0x0 aff=- resid=- m=128{min(seq,128)} k=4096 n=11008 wait=sfu
0018 L0 dev.mvm#11 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xdc0000 w=weights:model.layers.0.mlp.gate_proj.weight.int4 wscale=weights:model.layers.0.mlp.gate_proj.weight.int4.scale out=act+0x2b0000 aff=- resid=- m=1{seq-128} k=4096 n=11008 ; if {1<(seq+127)//128}
0019 L0 dev.act#12 act src=act+0x0 dst=act+0x560000 table=weights:pwl.silu count=1420032{seq*11008} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0020 L0 dev.mvm#13 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xcc0000 w=weights:model.layers.0.mlp.up_proj.weight.int4 wscale=weights:model.layers.0.mlp.up_proj.weight.int4.scale out=act+0x0 aff=- resid=act+0x560000 m=128{min(seq,128)} k=4096 n=11008 wait=sfu
0021 L0 dev.mvm#13 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xdc0000 w=weights:model.layers.0.mlp.up_proj.weight.int4 wscale=weights:model.layers.0.mlp.up_proj.weight.int4.scale out=act+0x2b0000 aff=- resid=act+0x810000 m=1{seq-128} k=4096 n=11008 ; if {1<(seq+127)//128}
0022 L0 dev.mvm#14 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.0.mlp.down_proj.weight.int4 wscale=weights:model.layers.0.mlp.down_proj.weight.int4.scale out=act+0x560000 aff=- resid=act+0xac0000 m=47{min(seq,47)} k=11008 n=4096 wait=mvm
0023 L0 dev.mvm#14 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0xfca00 w=weights:model.layers.0.mlp.down_proj.weight.int4 wscale=weights:model.layers.0.mlp.down_proj.weight.int4.scale out=act+0x5be000 aff=- resid=act+0xb1e000 m=47{min(seq-47,47)} k=11008 n=4096 ; if {1<(seq+46)//47}
0024 L0 dev.mvm#14 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x1f9400 w=weights:model.layers.0.mlp.down_proj.weight.int4 wscale=weights:model.layers.0.mlp.down_proj.weight.int4.scale out=act+0x61c000 aff=- resid=act+0xb7c000 m=35{min(seq-94,47)} k=11008 n=4096 ; if {2<(seq+46)//47}
0025 L0 dev.mvm#14 nop ; off mvm if {3<(seq+46)//47}
0026 L0 dev.mvm#14 nop ; off mvm if {4<(seq+46)//47}
0027 L0 dev.mvm#14 nop ; off mvm if {5<(seq+46)//47}
0028 L1 dev.rmsnorm#15 rmsnorm src=act+0x560000 dst=act+0x0 gamma=weights:model.layers.1.input_layernorm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm,sfu
0029 L1 dev.mvm#16 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.1.self_attn.q_proj.weight.int4 wscale=weights:model.layers.1.self_attn.q_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=4096 wait=sfu
0030 L1 dev.mvm#16 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.1.self_attn.q_proj.weight.int4 wscale=weights:model.layers.1.self_attn.q_proj.weight.int4.scale out=act+0x300000 aff=- resid=- m=1{seq-128} k=4096 n=4096 ; if {1<(seq+127)//128}
0031 L1 dev.rope#17 rope interleaved=0 src=act+0x200000 dst=act+0x760000 table=weights:model.rope.table.f32 m=129{seq} heads=32 d=128 pos0=0 wait=mvm
0032 L1 dev.mvm#18 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.1.self_attn.k_proj.weight.int4 wscale=weights:model.layers.1.self_attn.k_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=1024 wait=sfu
0033 L1 dev.mvm#18 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.1.self_attn.k_proj.weight.int4 wscale=weights:model.layers.1.self_attn.k_proj.weight.int4.scale out=act+0x240000 aff=- resid=- m=1{seq-128} k=4096 n=1024 ; if {1<(seq+127)//128}
0034 L1 dev.rope#19 rope interleaved=0 src=act+0x200000 dst=act+0x280000 table=weights:model.rope.table.f32 m=129{seq} heads=8 d=128 pos0=0 wait=mvm
0035 L1 dev.mvm#20 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.1.self_attn.v_proj.weight.int4 wscale=weights:model.layers.1.self_attn.v_proj.weight.int4.scale out=act+0x200000 aff=- resid=- m=128{min(seq,128)} k=4096 n=1024 wait=sfu
0036 L1 dev.mvm#20 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.1.self_attn.v_proj.weight.int4 wscale=weights:model.layers.1.self_attn.v_proj.weight.int4.scale out=act+0x240000 aff=- resid=- m=1{seq-128} k=4096 n=1024 ; if {1<(seq+127)//128}
0037 L1 dev.attention#21 kv_append src=act+0x280000 dst=kv:forward.attn.kcache m=129{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=sfu
0038 L1 dev.attention#21 kv_append src=act+0x200000 dst=kv:forward.attn.vcache m=129{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=mvm
0039 L1 dev.attention#21 mat_qk out_fp32=1 q=act+0x760000 kc=kv:forward.attn.kcache out=kv:forward.attn.scores m=129{seq} heads=32 kv_heads=8 l=129{seq} d=128 k_stride=65536 scale=0.0883883461356163 wait=sfu
0040 L1 dev.attention#21 softmax in_fp32=1 causal=1 src=kv:forward.attn.scores dst=kv:forward.attn.probs rows=4128{seq*32} cols=129{seq} m=129{seq} pos0=0 wait=mat
0041 L1 dev.attention#21 mat_pv p=kv:forward.attn.probs vc=kv:forward.attn.vcache out=act+0x0 m=129{seq} heads=32 kv_heads=8 l=129{seq} d=128 v_stride=65536 wait=mvm,sfu
0042 L1 dev.mvm#22 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.1.self_attn.o_proj.weight.int4 wscale=weights:model.layers.1.self_attn.o_proj.weight.int4.scale out=act+0xac0000 aff=- resid=act+0x560000 m=128{min(seq,128)} k=4096 n=4096 wait=mvm,mat
0043 L1 dev.mvm#22 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x100000 w=weights:model.layers.1.self_attn.o_proj.weight.int4 wscale=weights:model.layers.1.self_attn.o_proj.weight.int4.scale out=act+0xbc0000 aff=- resid=act+0x660000 m=1{seq-128} k=4096 n=4096 ; if {1<(seq+127)//128}
0044 L1 dev.rmsnorm#23 rmsnorm src=act+0xac0000 dst=act+0xcc0000 gamma=weights:model.layers.1.post_attention_layernorm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm
0045 L1 dev.mvm#24 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xcc0000 w=weights:model.layers.1.mlp.gate_proj.weight.int4 wscale=weights:model.layers.1.mlp.gate_proj.weight.int4.scale out=act+0x0 aff=- resid=- m=128{min(seq,128)} k=4096 n=11008 wait=sfu
0046 L1 dev.mvm#24 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xdc0000 w=weights:model.layers.1.mlp.gate_proj.weight.int4 wscale=weights:model.layers.1.mlp.gate_proj.weight.int4.scale out=act+0x2b0000 aff=- resid=- m=1{seq-128} k=4096 n=11008 ; if {1<(seq+127)//128}
0047 L1 dev.act#25 act src=act+0x0 dst=act+0x560000 table=weights:pwl.silu count=1420032{seq*11008} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0048 L1 dev.mvm#26 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xcc0000 w=weights:model.layers.1.mlp.up_proj.weight.int4 wscale=weights:model.layers.1.mlp.up_proj.weight.int4.scale out=act+0x0 aff=- resid=act+0x560000 m=128{min(seq,128)} k=4096 n=11008 wait=sfu
0049 L1 dev.mvm#26 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xdc0000 w=weights:model.layers.1.mlp.up_proj.weight.int4 wscale=weights:model.layers.1.mlp.up_proj.weight.int4.scale out=act+0x2b0000 aff=- resid=act+0x810000 m=1{seq-128} k=4096 n=11008 ; if {1<(seq+127)//128}
0050 L1 dev.mvm#27 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0 w=weights:model.layers.1.mlp.down_proj.weight.int4 wscale=weights:model.layers.1.mlp.down_proj.weight.int4.scale out=act+0x560000 aff=- resid=act+0xac0000 m=47{min(seq,47)} k=11008 n=4096 wait=mvm
0051 L1 dev.mvm#27 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0xfca00 w=weights:model.layers.1.mlp.down_proj.weight.int4 wscale=weights:model.layers.1.mlp.down_proj.weight.int4.scale out=act+0x5be000 aff=- resid=act+0xb1e000 m=47{min(seq-47,47)} k=11008 n=4096 ; if {1<(seq+46)//47}
0052 L1 dev.mvm#27 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x1f9400 w=weights:model.layers.1.mlp.down_proj.weight.int4 wscale=weights:model.layers.1.mlp.down_proj.weight.int4.scale out=act+0x61c000 aff=- resid=act+0xb7c000 m=35{min(seq-94,47)} k=11008 n=4096 ; if {2<(seq+46)//47}
0053 L1 dev.mvm#27 nop ; off mvm if {3<(seq+46)//47}
0054 L1 dev.mvm#27 nop ; off mvm if {4<(seq+46)//47}
0055 L1 dev.mvm#27 nop ; off mvm if {5<(seq+46)//47}
0056 - dev.rmsnorm#28 rmsnorm src=act+0x560000 dst=act+0x0 gamma=weights:model.norm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm,sfu
