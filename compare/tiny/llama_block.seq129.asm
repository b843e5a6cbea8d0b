# dlavm instruction listing v1
# case: llama_block
# config: max_seq=256 layers=2 hidden=256 heads=4 kv_heads=2 head_dim=64 ffn=512
# model: llama_block
# target: tiny
# isa: 1.1
# dims: seq in [1, 256]
# at: seq=129
# addresses: relocated
# buffer weights:model.layers.0.input_layernorm.weight.f16 0x0 0x200
# buffer weights:model.layers.0.self_attn.q_proj.weight.int4 0x200 0x8000
# buffer weights:model.layers.0.self_attn.q_proj.weight.int4.scale 0x8200 0x400
# buffer weights:model.rope.table.f32 0x8600 0x10000
# buffer weights:model.layers.0.self_attn.k_proj.weight.int4 0x18600 0x4000
# buffer weights:model.layers.0.self_attn.k_proj.weight.int4.scale 0x1c600 0x200
# buffer weights:model.layers.0.self_attn.v_proj.weight.int4 0x1c800 0x4000
# buffer weights:model.layers.0.self_attn.v_proj.weight.int4.scale 0x20800 0x200
# buffer weights:model.layers.0.self_attn.o_proj.weight.int4 0x20a00 0x8000
# buffer weights:model.layers.0.self_attn.o_proj.weight.int4.scale 0x28a00 0x400
# buffer weights:model.layers.0.post_attention_layernorm.weight.f16 0x28e00 0x200
# buffer weights:model.layers.0.mlp.gate_proj.weight.int4 0x29000 0x10000
# buffer weights:model.layers.0.mlp.gate_proj.weight.int4.scale 0x39000 0x800
# buffer weights:pwl.silu 0x39800 0x1010
# buffer weights:model.layers.0.mlp.up_proj.weight.int4 0x3a820 0x10000
# buffer weights:model.layers.0.mlp.up_proj.weight.int4.scale 0x4a820 0x800
# buffer weights:model.layers.0.mlp.down_proj.weight.int4 0x4b020 0x10000
# buffer weights:model.layers.0.mlp.down_proj.weight.int4.scale 0x5b020 0x800
# buffer weights:model.layers.1.input_layernorm.weight.f16 0x5b820 0x200
# buffer weights:model.layers.1.self_attn.q_proj.weight.int4 0x5ba20 0x8000
# buffer weights:model.layers.1.self_attn.q_proj.weight.int4.scale 0x63a20 0x400
# buffer weights:model.layers.1.self_attn.k_proj.weight.int4 0x63e20 0x4000
# buffer weights:model.layers.1.self_attn.k_proj.weight.int4.scale 0x67e20 0x200
# buffer weights:model.layers.1.self_attn.v_proj.weight.int4 0x68020 0x4000
# buffer weights:model.layers.1.self_attn.v_proj.weight.int4.scale 0x6c020 0x200
# buffer weights:model.layers.1.self_attn.o_proj.weight.int4 0x6c220 0x8000
# buffer weights:model.layers.1.self_attn.o_proj.weight.int4.scale 0x74220 0x400
# buffer weights:model.layers.1.post_attention_layernorm.weight.f16 0x74620 0x200
# buffer weights:model.layers.1.mlp.gate_proj.weight.int4 0x74820 0x10000
# buffer weights:model.layers.1.mlp.gate_proj.weight.int4.scale 0x84820 0x800
# buffer weights:model.layers.1.mlp.up_proj.weight.int4 0x85020 0x10000
# buffer weights:model.layers.1.mlp.up_proj.weight.int4.scale 0x95020 0x800
# buffer weights:model.layers.1.mlp.down_proj.weight.int4 0x95820 0x10000
# buffer weights:model.layers.1.mlp.down_proj.weight.int4.scale 0xa5820 0x800
# buffer weights:model.norm.weight.f16 0xa6020 0x200
# buffer kv:scratch.attn.kcache 0xa6220 0x10000
# buffer kv:scratch.attn.vcache 0xb6220 0x10000
# buffer kv:scratch.attn.scores 0xc6220 0x100000
# buffer kv:scratch.attn.probs 0x1c6220 0x80000
stream forward.0 35
0000 L0 dev.rmsnorm#2 rmsnorm src=act+0x40000 dst=act+0x0 gamma=weights:model.layers.0.input_layernorm.weight.f16 rows=129{seq} cols=256 eps=9.999999747378752e-06
0001 L0 dev.mvm#3 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.0.self_attn.q_proj.weight.int4 wscale=weights:model.layers.0.self_attn.q_proj.weight.int4.scale out=act+0x20000{i*65536+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=256 wait=sfu ; loop i<{(seq+127)//128}=2
0002 L0 dev.rope#4 rope interleaved=0 src=act+0x20000 dst=act+0x60000 table=weights:model.rope.table.f32 m=129{seq} heads=4 d=64 pos0=0 wait=mvm
0003 L0 dev.mvm#5 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.0.self_attn.k_proj.weight.int4 wscale=weights:model.layers.0.self_attn.k_proj.weight.int4.scale out=act+0x20000{i*32768+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=128 wait=sfu ; loop i<{(seq+127)//128}=2
0004 L0 dev.rope#6 rope interleaved=0 src=act+0x20000 dst=act+0x30000 table=weights:model.rope.table.f32 m=129{seq} heads=2 d=64 pos0=0 wait=mvm
0005 L0 dev.mvm#7 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.0.self_attn.v_proj.weight.int4 wscale=weights:model.layers.0.self_attn.v_proj.weight.int4.scale out=act+0x20000{i*32768+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=128 wait=sfu ; loop i<{(seq+127)//128}=2
0006 L0 dev.attention#8 kv_append src=act+0x30000 dst=kv:scratch.attn.kcache m=129{seq} kv_heads=2 d=64 pos=0 head_stride=32768 capacity=256 wait=sfu
0007 L0 dev.attention#8 kv_append src=act+0x20000 dst=kv:scratch.attn.vcache m=129{seq} kv_heads=2 d=64 pos=0 head_stride=32768 capacity=256 wait=mvm
0008 L0 dev.attention#8 mat_qk out_fp32=1 q=act+0x60000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=129{seq} heads=4 kv_heads=2 l=129{seq} d=64 k_stride=32768 scale=0.125 wait=sfu
0009 L0 dev.attention#8 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=516{seq*4} cols=129{seq} m=129{seq} pos0=0 wait=mat
0010 L0 dev.attention#8 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=129{seq} heads=4 kv_heads=2 l=129{seq} d=64 v_stride=32768 wait=mvm,sfu
0011 L0 dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.0.self_attn.o_proj.weight.int4 wscale=weights:model.layers.0.self_attn.o_proj.weight.int4.scale out=act+0x80000{i*65536+[act+0x80000]} aff=- resid=act+0x40000{i*65536+[act+0x40000]} m=128{min(seq-i*128,128)} k=256 n=256 wait=mat ; loop i<{(seq+127)//128}=2
0012 L0 dev.rmsnorm#10 rmsnorm src=act+0x80000 dst=act+0xa0000 gamma=weights:model.layers.0.post_attention_layernorm.weight.f16 rows=129{seq} cols=256 eps=9.999999747378752e-06 wait=mvm
0013 L0 dev.mvm#11 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xa0000{i*65536+[act+0xa0000]} w=weights:model.layers.0.mlp.gate_proj.weight.int4 wscale=weights:model.layers.0.mlp.gate_proj.weight.int4.scale out=act+0x0{i*131072+[act+0x0]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=512 wait=sfu ; loop i<{(seq+127)//128}=2
0014 L0 dev.act#12 act src=act+0x0 dst=act+0x40000 table=weights:pwl.silu count=66048{seq*512} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0015 L0 dev.mvm#13 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xa0000{i*65536+[act+0xa0000]} w=weights:model.layers.0.mlp.up_proj.weight.int4 wscale=weights:model.layers.0.mlp.up_proj.weight.int4.scale out=act+0x0{i*131072+[act+0x0]} aff=- resid=act+0x40000{i*131072+[act+0x40000]} m=128{min(seq-i*128,128)} k=256 n=512 wait=sfu ; loop i<{(seq+127)//128}=2
0016 L0 dev.mvm#14 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.0.mlp.down_proj.weight.int4 wscale=weights:model.layers.0.mlp.down_proj.weight.int4.scale out=act+0x40000{i*32768+[act+0x40000]} aff=- resid=act+0x80000{i*32768+[act+0x80000]} m=64{min(seq-i*64,64)} k=512 n=256 wait=mvm ; loop i<{(seq+63)//64}=3
0017 L1 dev.rmsnorm#15 rmsnorm src=act+0x40000 dst=act+0x0 gamma=weights:model.layers.1.input_layernorm.weight.f16 rows=129{seq} cols=256 eps=9.999999747378752e-06 wait=mvm,sfu
0018 L1 dev.mvm#16 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.1.self_attn.q_proj.weight.int4 wscale=weights:model.layers.1.self_attn.q_proj.weight.int4.scale out=act+0x20000{i*65536+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=256 wait=sfu ; loop i<{(seq+127)//128}=2
0019 L1 dev.rope#17 rope interleaved=0 src=act+0x20000 dst=act+0x60000 table=weights:model.rope.table.f32 m=129{seq} heads=4 d=64 pos0=0 wait=mvm
0020 L1 dev.mvm#18 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.1.self_attn.k_proj.weight.int4 wscale=weights:model.layers.1.self_attn.k_proj.weight.int4.scale out=act+0x20000{i*32768+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=128 wait=sfu ; loop i<{(seq+127)//128}=2
0021 L1 dev.rope#19 rope interleaved=0 src=act+0x20000 dst=act+0x30000 table=weights:model.rope.table.f32 m=129{seq} heads=2 d=64 pos0=0 wait=mvm
0022 L1 dev.mvm#20 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.1.self_attn.v_proj.weight.int4 wscale=weights:model.layers.1.self_attn.v_proj.weight.int4.scale out=act+0x20000{i*32768+[act+0x20000]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=128 wait=sfu ; loop i<{(seq+127)//128}=2
0023 L1 dev.attention#21 kv_append src=act+0x30000 dst=kv:scratch.attn.kcache m=129{seq} kv_heads=2 d=64 pos=0 head_stride=32768 capacity=256 wait=sfu
0024 L1 dev.attention#21 kv_append src=act+0x20000 dst=kv:scratch.attn.vcache m=129{seq} kv_heads=2 d=64 pos=0 head_stride=32768 capacity=256 wait=mvm
0025 L1 dev.attention#21 mat_qk out_fp32=1 q=act+0x60000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=129{seq} heads=4 kv_heads=2 l=129{seq} d=64 k_stride=32768 scale=0.125 wait=sfu
0026 L1 dev.attention#21 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=516{seq*4} cols=129{seq} m=129{seq} pos0=0 wait=mat
0027 L1 dev.attention#21 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=129{seq} heads=4 kv_heads=2 l=129{seq} d=64 v_stride=32768 wait=mvm,sfu
0028 L1 dev.mvm#22 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.1.self_attn.o_proj.weight.int4 wscale=weights:model.layers.1.self_attn.o_proj.weight.int4.scale out=act+0x80000{i*65536+[act+0x80000]} aff=- resid=act+0x40000{i*65536+[act+0x40000]} m=128{min(seq-i*128,128)} k=256 n=256 wait=mvm,mat ; loop i<{(seq+127)//128}=2
0029 L1 dev.rmsnorm#23 rmsnorm src=act+0x80000 dst=act+0xa0000 gamma=weights:model.layers.1.post_attention_layernorm.weight.f16 rows=129{seq} cols=256 eps=9.999999747378752e-06 wait=mvm
0030 L1 dev.mvm#24 mvm wfmt=int4 affine=0 res=none relu=0 argmax=0 out_fp32=0 x=act+0xa0000{i*65536+[act+0xa0000]} w=weights:model.layers.1.mlp.gate_proj.weight.int4 wscale=weights:model.layers.1.mlp.gate_proj.weight.int4.scale out=act+0x0{i*131072+[act+0x0]} aff=- resid=- m=128{min(seq-i*128,128)} k=256 n=512 wait=sfu ; loop i<{(seq+127)//128}=2
0031 L1 dev.act#25 act src=act+0x0 dst=act+0x40000 table=weights:pwl.silu count=66048{seq*512} nseg=512 lo=-16.0 inv_step=16.0 wait=mvm,mat
0032 L1 dev.mvm#26 mvm wfmt=int4 affine=0 res=mul relu=0 argmax=0 out_fp32=0 x=act+0xa0000{i*65536+[act+0xa0000]} w=weights:model.layers.1.mlp.up_proj.weight.int4 wscale=weights:model.layers.1.mlp.up_proj.weight.int4.scale out=act+0x0{i*131072+[act+0x0]} aff=- resid=act+0x40000{i*131072+[act+0x40000]} m=128{min(seq-i*128,128)} k=256 n=512 wait=sfu ; loop i<{(seq+127)//128}=2
0033 L1 dev.mvm#27 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x0{i*65536+[act+0x0]} w=weights:model.layers.1.mlp.down_proj.weight.int4 wscale=weights:model.layers.1.mlp.down_proj.weight.int4.scale out=act+0x40000{i*32768+[act+0x40000]} aff=- resid=act+0x80000{i*32768+[act+0x80000]} m=64{min(seq-i*64,64)} k=512 n=256 wait=mvm ; loop i<{(seq+63)//64}=3
0034 - dev.rmsnorm#28 rmsnorm src=act+0x40000 dst=act+0x0 gamma=weights:model.norm.weight.f16 rows=129{seq} cols=256 eps=9.999999747378752e-06 wait=mvm,sfu
