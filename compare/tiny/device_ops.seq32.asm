# dlavm instruction listing v1
# case: device_ops
# config: max_seq=64 k=1024 heads=2 head_dim=32
# model: device_ops
# target: tiny
# isa: 1.1
# dims: seq in [1, 64]
# at: seq=32
# addresses: relocated
# buffer weights:ops.rmsnorm.weight.f16 0x0 0x800
# buffer weights:ops.layernorm.weight.f16 0x800 0x800
# buffer weights:ops.layernorm.bias.f16 0x1000 0x800
# buffer weights:ops.qkv.weight.int4 0x1800 0x8000
# buffer weights:ops.qkv.weight.int4.scale 0x9800 0x400
# buffer weights:ops.qkv.bias.aff 0x9c00 0x100
# buffer weights:ops.rope.table.f32 0x9d00 0x2000
# buffer weights:pwl.silu 0xbd00 0x1010
# buffer weights:ops.out.weight.int4 0xcd20 0x10000
# buffer weights:ops.out.weight.int4.scale 0x1cd20 0x800
# buffer kv:scratch.attn.kcache 0x1d520 0x2000
# buffer kv:scratch.attn.vcache 0x1f520 0x2000
# buffer kv:scratch.attn.scores 0x21520 0x8000
# buffer kv:scratch.attn.probs 0x29520 0x4000
stream forward.0 13
0000 - dev.rmsnorm#1 rmsnorm src=act+0x40000 dst=act+0x0 gamma=weights:ops.rmsnorm.weight.f16 rows=32{seq} cols=1024 eps=9.999999747378752e-06
0001 - dev.layernorm#2 layernorm src=act+0x0 dst=act+0x20000 gamma=weights:ops.layernorm.weight.f16 beta=weights:ops.layernorm.bias.f16 rows=32{seq} cols=1024 eps=9.999999747378752e-06 wait=sfu
0002 - dev.mvm#3 mvm wfmt=int4 affine=1 res=none relu=1 argmax=0 out_fp32=0 x=act+0x20000{i*65536+[act+0x20000]} w=weights:ops.qkv.weight.int4 wscale=weights:ops.qkv.weight.int4.scale out=act+0x0{i*4096+[act+0x0]} aff=weights:ops.qkv.bias.aff resid=- m=32{min(seq-i*32,32)} k=1024 n=64 wait=sfu ; loop i<{(seq+31)//32}=1
0003 - dev.rope#4 rope interleaved=0 src=act+0x0 dst=act+0x2000 table=weights:ops.rope.table.f32 m=32{seq} heads=2 d=32 pos0=0 wait=mvm
0004 - dev.attention#5 kv_append src=act+0x2000 dst=kv:scratch.attn.kcache m=32{seq} kv_heads=2 d=32 pos=0 head_stride=4096 capacity=64 wait=sfu
0005 - dev.attention#5 kv_append src=act+0x2000 dst=kv:scratch.attn.vcache m=32{seq} kv_heads=2 d=32 pos=0 head_stride=4096 capacity=64
0006 - dev.attention#5 mat_qk out_fp32=1 q=act+0x2000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=32{seq} heads=2 kv_heads=2 l=32{seq} d=32 k_stride=4096 scale=0.1767766922712326 wait=sfu
0007 - dev.attention#5 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=64{seq*2} cols=32{seq} m=32{seq} pos0=0 wait=mat
0008 - dev.attention#5 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=32{seq} heads=2 kv_heads=2 l=32{seq} d=32 v_stride=4096 wait=mvm,sfu
0009 - dev.act#6 act src=act+0x0 dst=act+0x2000 table=weights:pwl.silu count=2048{seq*64} nseg=512 lo=-16.0 inv_step=16.0 wait=mat
0010 - dev.eltwise#7 eltwise fn=mul a=act+0x2000 b=act+0x0 dst=act+0x4000 count=2048{seq*64} period=0 wait=sfu
0011 - dev.softmax#8 softmax in_fp32=0 causal=0 src=act+0x4000 dst=act+0x40000 rows=32{seq} cols=64 m=32{seq} pos0=0 wait=sfu
0012 - dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x40000 w=weights:ops.out.weight.int4 wscale=weights:ops.out.weight.int4.scale out=act+0x0 aff=- resid=act+0x20000 m=32{seq} k=64 n=1024 wait=mat,sfu
