"""``dev.layernorm``: layer normalisation over the last dim on the SFU (doc/isa.md 7.4).

y = (x - mean) * rsqrt(var + eps) * gamma + beta, with fp16 x, gamma and beta,
both row sums by the adder tree and the mean and variance by correctly
rounded fp32 divisions.
"""
from __future__ import annotations

import numpy as np

from ..ir import IRTypeError, TensorType, attr, call
from ..ir.ops.common import tensor
from ..passes.patterns_match import Pat, Pattern, is_weight, to_device, to_host
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    x = f16(types[0], "dev.layernorm")
    for p, what in zip(types[1:], ("gamma", "beta")):
        p = tensor(p, "dev.layernorm", what)
        if p.shape != (x.shape[-1],):
            raise IRTypeError(f"op 'dev.layernorm': {what} {p} must be [{x.shape[-1]}]")
    return TensorType(x.shape, "float16")


def _layer_norm(node, ctx, x, gamma, beta):
    return to_host(call("dev.layernorm", to_device(x), gamma, beta, eps=node.attrs["eps"]), node.type.dtype)


PATTERNS = (
    Pattern("layer_norm->layernorm",
            Pat("layer_norm", Pat.any("x"), Pat.any("gamma", where=is_weight), Pat.any("beta", where=is_weight),
                attrs={"ndim": 1}),
            _layer_norm, "layer_norm -> dev.layernorm", priority=30,
            decline="layer_norm needs ndim=1 and both weight and bias for dev.layernorm"),
)


def reference(args, attrs, ev):
    import torch

    from ..reference.device_numerics import div_f32, numerics, param16, sqrt_f32, tree_sum
    lanes = numerics(attrs, "tree_lanes", "dev.layernorm")
    x = args[0].float()
    c = x.shape[-1]
    mu = div_f32(tree_sum(x, lanes), c)
    d = x - mu[..., None]
    v = div_f32(tree_sum(d * d, lanes), c)
    r = 1.0 / sqrt_f32(v + np.float32(attrs["eps"]))
    return (((d * r[..., None]) * param16(args[1])) + param16(args[2])).to(torch.float16)


def lower(ctx, node):
    x, g, b = node.args
    c = int(x.type.shape[-1])
    rows = numel(x.type.shape[:-1])
    src, dst, ga, ba = ctx.addr(x), ctx.addr(node), ctx.fp16_operand(g), ctx.fp16_operand(b)
    return [ctx.emit("layernorm", src=src, dst=dst, gamma=ga, beta=ba, rows=rows, cols=c,
                     eps=float(node.attrs["eps"]))]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    from .examples import host_input, one_op, seq_dim, weight
    p = {}
    g = weight(p, "g", 1 + 0.1 * rng.standard_normal(32))
    b = weight(p, "b", 0.1 * rng.standard_normal(32))
    return (OpExample("rows", one_op("dev.layernorm", [host_input("x", seq_dim(), 32), g, b], p, eps=1e-5)),)


SPEC = register_device_op(DeviceOpSpec(
    name="dev.layernorm",
    inputs=("x", "gamma", "beta"),
    attrs={"eps": attr("float", 1e-5)},
    type_rel=type_rel,
    doc="layernorm over the last dim of x f16 [..., C]; gamma, beta [C]; out f16",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("layernorm",),
    numerics=("tree_lanes",),
))
