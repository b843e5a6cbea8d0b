"""``dev.rmsnorm``: RMS normalisation over the last dim on the SFU (doc/isa.md 7.4).

y = x * rsqrt(mean(x^2) + eps) * gamma, with fp16 x and gamma, the row sum of
squares by the adder tree, the mean by a correctly rounded fp32 division and
the reciprocal square root from a correctly rounded fp32 sqrt.
"""
from __future__ import annotations

import numpy as np

from .. import sym
from ..ir import Constant, IRTypeError, TensorType, attr, call
from ..ir.ops.common import tensor
from ..passes.patterns_match import Pat, Pattern, is_float, is_weight, to_device, to_host
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    x = f16(types[0], "dev.rmsnorm")
    g = tensor(types[1], "dev.rmsnorm", "gamma")
    if g.shape != (x.shape[-1],):
        raise IRTypeError(f"op 'dev.rmsnorm': gamma {g} must be [{x.shape[-1]}]")
    return TensorType(x.shape, "float16")


# --- legalization ---------------------------------------------------------------------------------

def _ones(ctx, c):
    name = f"dlavm.ones.{c}"
    ctx.params.setdefault(name, np.ones(int(c), dtype=np.float32))
    return Constant(name, TensorType((sym.as_expr(c),), "float32"))


def _rms_norm(node, ctx, x, gamma=None):
    if gamma is None:
        gamma = _ones(ctx, x.type.shape[-1])
    return to_host(call("dev.rmsnorm", to_device(x), gamma, eps=node.attrs["eps"]), node.type.dtype)


def _last_dim_mean(m) -> bool:
    axes = m.attrs["axes"]
    nd = m.args[0].type.ndim
    return m.attrs["keepdim"] and len(axes) == 1 and axes[0] % nd == nd - 1


_SQUARE = Pat.alt(Pat("pow", Pat.any("x"), Pat.lit(2)), Pat("mul", Pat.any("x"), Pat.any("x")))
#: x * rsqrt(mean(x^2, -1, keepdim) + eps)
_RMS = Pat("mul", Pat.any("x"),
           Pat("rsqrt", Pat("add", Pat("mean", _SQUARE, where=_last_dim_mean), Pat.lit_any("eps"),
                            commutative=True)),
           commutative=True, name="body")




def _rms_decomposed(node, ctx, g, x, eps, body):
    """HF Llama/Qwen2 RMSNorm: weight * (x * rsqrt(mean(x^2) + eps))."""
    if x.type.shape[-1] != g.type.shape[0] or x.type != node.type:
        return None
    return to_host(call("dev.rmsnorm", to_device(x), g, eps=float(eps.value)), node.type.dtype)


_X = Pat.any("x", where=is_float)
_GAMMA = Pat.any("gamma", where=is_weight)

PATTERNS = (
    Pattern("rms_norm->rmsnorm",
            Pat.alt(Pat("rms_norm", _X, attrs={"ndim": 1}), Pat("rms_norm", _X, _GAMMA, attrs={"ndim": 1})),
            _rms_norm, "rms_norm -> dev.rmsnorm", priority=30,
            decline="rms_norm over more than the last dim, or with a weight that is not a weight "
                    "tensor, has no device op"),
    Pattern("rmsnorm-decomposed",
            Pat("mul", Pat.any("g", where=lambda g: is_weight(g) and g.type.ndim == 1), _RMS, commutative=True),
            _rms_decomposed, "w * (x * rsqrt(mean(x^2) + eps)) -> dev.rmsnorm", priority=10),
)


# --- reference kernel -----------------------------------------------------------------------------

def reference(args, attrs, ev):
    import torch

    from ..reference.device_numerics import div_f32, numerics, param16, sqrt_f32, tree_sum
    lanes = numerics(attrs, "tree_lanes", "dev.rmsnorm")
    x = args[0].float()
    ms = div_f32(tree_sum(x * x, lanes), x.shape[-1])
    r = 1.0 / sqrt_f32(ms + np.float32(attrs["eps"]))
    return ((x * r[..., None]) * param16(args[1])).to(torch.float16)


# --- lowering -------------------------------------------------------------------------------------

def lower(ctx, node):
    x, g = node.args
    c = int(x.type.shape[-1])
    rows = numel(x.type.shape[:-1])
    src, dst, ga = ctx.addr(x), ctx.addr(node), ctx.fp16_operand(g)
    return [ctx.emit("rmsnorm", src=src, dst=dst, gamma=ga, rows=rows, cols=c, eps=float(node.attrs["eps"]))]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    from .examples import host_input, one_op, seq_dim, weight
    p = {}
    g = weight(p, "g", 1 + 0.1 * rng.standard_normal(32))
    return (OpExample("rows", one_op("dev.rmsnorm", [host_input("x", seq_dim(), 32), g], p, eps=1e-5)),)


SPEC = register_device_op(DeviceOpSpec(
    name="dev.rmsnorm",
    inputs=("x", "gamma"),
    attrs={"eps": attr("float", 1e-5)},
    type_rel=type_rel,
    doc="rmsnorm over the last dim of x f16 [..., C]; gamma [C]; out f16",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("rmsnorm",),
    numerics=("tree_lanes",),
))
