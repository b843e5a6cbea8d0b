# dlavm instruction listing v1
# case: llama_block
# config: max_seq=256 layers=2 hidden=4096 heads=32 kv_heads=8 head_dim=128 ffn=11008
# model: llama_block
# target: vcu128
# isa: 1.1
# dims: seq in [1, 256]
# at: seq=1
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
# buffer kv:scratch.attn.kcache 0xae73020 0x80000
# buffer kv:scratch.attn.vcache 0xaef3020 0x80000
# buffer kv:scratch.attn.scores 0xaf73020 0x800000
# buffer kv:scratch.attn.probs 0xb773020 0x400000
stream forward.0 35
0000 L0 dev.rmsnorm#2 rmsnorm src=act+0x400000 dst=act+0x0 gamma=weights:model.layers.0.input_layernorm.weight.f16 rows=1{seq} cols=4096 eps=9.999999747378752e-06
0001 L0 dev.mvm#3 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.0.self_attn.q_proj.weight.int4 wscale=weights:model.layers.0.self_attn.q_proj.weight.int4.scale out=act+0x200000{i*1048576+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=4096 wait=sfu ; loop i<{(seq+127)//128}=1
0002 L0 dev.rope#4 rope interleaved=0 src=act+0x200000 dst=act+0x600000 table=weights:model.rope.table.f32 m=1{seq} heads=32 d=128 pos0=0 wait=mvm
0003 L0 dev.mvm#5 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.0.self_attn.k_proj.weight.int4 wscale=weights:model.layers.0.self_attn.k_proj.weight.int4.scale out=act+0x200000{i*262144+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=1024 wait=sfu ; loop i<{(seq+127)//128}=1
0004 L0 dev.rope#6 rope interleaved=0 src=act+0x200000 dst=act+0x280000 table=weights:model.rope.table.f32 m=1{seq} heads=8 d=128 pos0=0 wait=mvm
0005 L0 dev.mvm#7 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.0.self_attn.v_proj.weight.int4 wscale=weights:model.layers.0.self_attn.v_proj.weight.int4.scale out=act+0x200000{i*262144+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=1024 wait=sfu ; loop i<{(seq+127)//128}=1
0006 L0 dev.attention#8 kv_append src=act+0x280000 dst=kv:scratch.attn.kcache m=1{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=sfu
0007 L0 dev.attention#8 kv_append src=act+0x200000 dst=kv:scratch.attn.vcache m=1{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=mvm
0008 L0 dev.attention#8 mat_qk out_fp32=1 q=act+0x600000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=1{seq} heads=32 kv_heads=8 l=1{seq} d=128 k_stride=65536 scale=0.0883883461356163 wait=sfu
0009 L0 dev.attention#8 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=32{seq*32} cols=1{seq} m=1{seq} pos0=0 wait=mat
0010 L0 dev.attention#8 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=1{seq} heads=32 kv_heads=8 l=1{seq} d=128 v_stride=65536 wait=mvm,sfu
0011 L0 dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.0.self_attn.o_proj.weight.int4 wscale=weights:model.layers.0.self_attn.o_proj.weight.int4.scale out=act+0xac0000{i*1048576+[act+0xac0000]} aff=- resid=act+0x400000{i*1048576+[act+0x400000]} m=1{min(seq-i*128,128)} k=4096 n=4096 wait=mat ; loop i<{(seq+127)//128}=1
0012 L0 dev.rmsnorm#10 rmsnorm src=act+0xac0000 dst=act+0xcc0000 gamma=weights:model.layers.0.post_attention_layernorm.weight.f16 rows=1{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm
0013 L0 dev.mvm#11 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xcc0000{i*1048576+[act+0xcc0000]} w=weights:model.layers.0.mlp.gate_proj.weight.int4 wscale=weights:model.layers.0.mlp.gate_proj.weight.int4.scale out=act+0x0{i*2818048+[act+0x0]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=11008 wait=sfu ; loop i<{(seq+127)//128}=1
0014 L0 dev.act#12 act src=act+0x0 dst=act+0x560000 table=weights:pwl.silu count=11008{seq*11008} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0015 L0 dev.mvm#13 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xcc0000{i*1048576+[act+0xcc0000]} w=weights:model.layers.0.mlp.up_proj.weight.int4 wscale=weights:model.layers.0.mlp.up_proj.weight.int4.scale out=act+0x0{i*2818048+[act+0x0]} aff=- resid=act+0x560000{i*2818048+[act+0x560000]} m=1{min(seq-i*128,128)} k=4096 n=11008 wait=sfu ; loop i<{(seq+127)//128}=1
0016 L0 dev.mvm#14 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1034752+[act+0x0]} w=weights:model.layers.0.mlp.down_proj.weight.int4 wscale=weights:model.layers.0.mlp.down_proj.weight.int4.scale out=act+0x560000{i*385024+[act+0x560000]} aff=- resid=act+0xac0000{i*385024+[act+0xac0000]} m=1{min(seq-i*47,47)} k=11008 n=4096 wait=mvm ; loop i<{(seq+46)//47}=1
0017 L1 dev.rmsnorm#15 rmsnorm src=act+0x560000 dst=act+0x0 gamma=weights:model.layers.1.input_layernorm.weight.f16 rows=1{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm,sfu
0018 L1 dev.mvm#16 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.1.self_attn.q_proj.weight.int4 wscale=weights:model.layers.1.self_attn.q_proj.weight.int4.scale out=act+0x200000{i*1048576+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=4096 wait=sfu ; loop i<{(seq+127)//128}=1
0019 L1 dev.rope#17 rope interleaved=0 src=act+0x200000 dst=act+0x760000 table=weights:model.rope.table.f32 m=1{seq} heads=32 d=128 pos0=0 wait=mvm
0020 L1 dev.mvm#18 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.1.self_attn.k_proj.weight.int4 wscale=weights:model.layers.1.self_attn.k_proj.weight.int4.scale out=act+0x200000{i*262144+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=1024 wait=sfu ; loop i<{(seq+127)//128}=1
0021 L1 dev.rope#19 rope interleaved=0 src=act+0x200000 dst=act+0x280000 table=weights:model.rope.table.f32 m=1{seq} heads=8 d=128 pos0=0 wait=mvm
0022 L1 dev.mvm#20 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.1.self_attn.v_proj.weight.int4 wscale=weights:model.layers.1.self_attn.v_proj.weight.int4.scale out=act+0x200000{i*262144+[act+0x200000]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=1024 wait=sfu ; loop i<{(seq+127)//128}=1
0023 L1 dev.attention#21 kv_append src=act+0x280000 dst=kv:scratch.attn.kcache m=1{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=sfu
0024 L1 dev.attention#21 kv_append src=act+0x200000 dst=kv:scratch.attn.vcache m=1{seq} kv_heads=8 d=128 pos=0 head_stride=65536 capacity=256 wait=mvm
0025 L1 dev.attention#21 mat_qk out_fp32=1 q=act+0x760000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=1{seq} heads=32 kv_heads=8 l=1{seq} d=128 k_stride=65536 scale=0.0883883461356163 wait=mvm,sfu
0026 L1 dev.attention#21 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=32{seq*32} cols=1{seq} m=1{seq} pos0=0 wait=mat
0027 L1 dev.attention#21 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=1{seq} heads=32 kv_heads=8 l=1{seq} d=128 v_stride=65536 wait=sfu
0028 L1 dev.mvm#22 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1048576+[act+0x0]} w=weights:model.layers.1.self_attn.o_proj.weight.int4 wscale=weights:model.layers.1.self_attn.o_proj.weight.int4.scale out=act+0xac0000{i*1048576+[act+0xac0000]} aff=- resid=act+0x560000{i*1048576+[act+0x560000]} m=1{min(seq-i*128,128)} k=4096 n=4096 wait=mvm,mat ; loop i<{(seq+127)//128}=1
0029 L1 dev.rmsnorm#23 rmsnorm src=act+0xac0000 dst=act+0xcc0000 gamma=weights:model.layers.1.post_attention_layernorm.weight.f16 rows=1{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm
0030 L1 dev.mvm#24 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xcc0000{i*1048576+[act+0xcc0000]} w=weights:model.layers.1.mlp.gate_proj.weight.int4 wscale=weights:model.layers.1.mlp.gate_proj.weight.int4.scale out=act+0x0{i*2818048+[act+0x0]} aff=- resid=- m=1{min(seq-i*128,128)} k=4096 n=11008 wait=sfu ; loop i<{(seq+127)//128}=1
0031 L1 dev.act#25 act src=act+0x0 dst=act+0x560000 table=weights:pwl.silu count=11008{seq*11008} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0032 L1 dev.mvm#26 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xcc0000{i*1048576+[act+0xcc0000]} w=weights:model.layers.1.mlp.up_proj.weight.int4 wscale=weights:model.layers.1.mlp.up_proj.weight.int4.scale out=act+0x0{i*2818048+[act+0x0]} aff=- resid=act+0x560000{i*2818048+[act+0x560000]} m=1{min(seq-i*128,128)} k=4096 n=11008 wait=sfu ; loop i<{(seq+127)//128}=1
0033 L1 dev.mvm#27 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*1034752+[act+0x0]} w=weights:model.layers.1.mlp.down_proj.weight.int4 wscale=weights:model.layers.1.mlp.down_proj.weight.int4.scale out=act+0x560000{i*385024+[act+0x560000]} aff=- resid=act+0xac0000{i*385024+[act+0xac0000]} m=1{min(seq-i*47,47)} k=11008 n=4096 wait=mvm ; loop i<{(seq+46)//47}=1
0034 - dev.rmsnorm#28 rmsnorm src=act+0x560000 dst=act+0x0 gamma=weights:model.norm.weight.f16 rows=1{seq} cols=4096 eps=9.999999747378752e-06 wait=mvm,sfu
