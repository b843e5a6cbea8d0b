# dlavm instruction listing v1
# case: device_ops
# config: max_seq=256 k=4096 heads=2 head_dim=32
# model: device_ops
# target: vcu128
# isa: 1.1
# dims: seq in [1, 256]
# at: seq=129
# addresses: relocated
# buffer weights:ops.rmsnorm.weight.f16 0x0 0x2000
# buffer weights:ops.layernorm.weight.f16 0x2000 0x2000
# buffer weights:ops.layernorm.bias.f16 0x4000 0x2000
# buffer weights:ops.qkv.weight.int4 0x6000 0x20000
# buffer weights:ops.qkv.weight.int4.scale 0x26000 0x1000
# buffer weights:ops.qkv.bias.aff 0x27000 0x100
# buffer weights:ops.rope.table.f32 0x27100 0x8000
# buffer weights:pwl.silu 0x2f100 0x1010
# buffer weights:ops.out.weight.int4 0x30120 0x40000
# buffer weights:ops.out.weight.int4.scale 0x70120 0x2000
# buffer kv:scratch.attn.kcache 0x72120 0x8000
# buffer kv:scratch.attn.vcache 0x7a120 0x8000
# buffer kv:scratch.attn.scores 0x82120 0x80000
# buffer kv:scratch.attn.probs 0x102120 0x40000
stream forward.0 13
0000 - dev.rmsnorm#1 rmsnorm src=act+0x400000 dst=act+0x0 gamma=weights:ops.rmsnorm.weight.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06
0001 - dev.layernorm#2 layernorm src=act+0x0 dst=act+0x200000 gamma=weights:ops.layernorm.weight.f16 beta=weights:ops.layernorm.bias.f16 rows=129{seq} cols=4096 eps=9.999999747378752e-06 wait=sfu
0002 - dev.mvm#3 mvm wfmt=int4 affine=1 res=none relu=1 argmax=0 out_fp32=0 x=act+0x200000{i*1048576+[act+0x200000]} w=weights:ops.qkv.weight.int4 wscale=weights:ops.qkv.weight.int4.scale out=act+0x0{i*16384+[act+0x0]} aff=weights:ops.qkv.bias.aff resid=- m=128{min(seq-i*128,128)} k=4096 n=64 wait=sfu ; loop i<{(seq+127)//128}=2
0003 - dev.rope#4 rope interleaved=0 src=act+0x0 dst=act+0x8000 table=weights:ops.rope.table.f32 m=129{seq} heads=2 d=32 pos0=0 wait=mvm
0004 - dev.attention#5 kv_append src=act+0x8000 dst=kv:scratch.attn.kcache m=129{seq} kv_heads=2 d=32 pos=0 head_stride=16384 capacity=256 wait=sfu
0005 - dev.attention#5 kv_append src=act+0x8000 dst=kv:scratch.attn.vcache m=129{seq} kv_heads=2 d=32 pos=0 head_stride=16384 capacity=256
0006 - dev.attention#5 mat_qk out_fp32=1 q=act+0x8000 kc=kv:scratch.attn.kcache out=kv:scratch.attn.scores m=129{seq} heads=2 kv_heads=2 l=129{seq} d=32 k_stride=16384 scale=0.1767766922712326 wait=sfu
0007 - dev.attention#5 softmax in_fp32=1 causal=1 src=kv:scratch.attn.scores dst=kv:scratch.attn.probs rows=258{seq*2} cols=129{seq} m=129{seq} pos0=0 wait=mat
0008 - dev.attention#5 mat_pv p=kv:scratch.attn.probs vc=kv:scratch.attn.vcache out=act+0x0 m=129{seq} heads=2 kv_heads=2 l=129{seq} d=32 v_stride=16384 wait=mvm,sfu
0009 - dev.act#6 act src=act+0x0 dst=act+0x8000 table=weights:pwl.silu count=8256{seq*64} nseg=512 lo=-16.0 inv_step=16.0 wait=mat
0010 - dev.eltwise#7 eltwise fn=mul a=act+0x8000 b=act+0x0 dst=act+0x10000 count=8256{seq*64} period=0 wait=sfu
0011 - dev.softmax#8 softmax in_fp32=0 causal=0 src=act+0x10000 dst=act+0x400000 rows=129{seq} cols=64 m=129{seq} pos0=0 wait=sfu
0012 - dev.mvm#9 mvm wfmt=int4 affine=0 res=add relu=0 argmax=0 out_fp32=0 x=act+0x400000 w=weights:ops.out.weight.int4 wscale=weights:ops.out.weight.int4.scale out=act+0x0 aff=- resid=act+0x200000 m=129{seq} k=64 n=4096 wait=mat,sfu
