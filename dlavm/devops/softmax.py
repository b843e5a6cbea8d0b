"""``dev.softmax``: row softmax over the last dim on the SFU (doc/isa.md 7.5), optionally causal.

exp through the ``softmax_exp`` piecewise-linear table after subtracting the
row maximum, the row sum by the adder tree, one correctly rounded division
per element.
"""
from __future__ import annotations

import math

from .. import sym
from ..ir import Literal, TensorType, attr, call
from ..passes.patterns_match import Pat, Pattern, is_float, is_op, to_device, to_host
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    return TensorType(f16(types[0], "dev.softmax").shape, "float16")


def _last_axis(node) -> bool:
    x = node.args[0]
    return node.attrs["axis"] % max(x.type.ndim, 1) == x.type.ndim - 1


def _masked_with_inf(x) -> bool:
    """``x`` is ``where(c, ±inf, y)`` / ``where(c, y, ±inf)`` (``masked_fill`` with an infinity)."""
    return is_op(x, "where") and any(isinstance(a, Literal) and isinstance(a.value, float) and math.isinf(a.value)
                                     for a in x.args[1:])


def _softmax(node, ctx, x):
    if _masked_with_inf(x):  # the PWL exp is not defined at -inf (0 * -inf): the host softmax is
        return ctx.decline(node, "softmax of a masked_fill with an infinity: the device's PWL exp is not "
                                 "defined at -inf (a causal mask runs inside dev.attention instead)")
    return to_host(call("dev.softmax", to_device(x)), node.type.dtype)


PATTERNS = (
    Pattern("softmax->softmax", Pat("softmax", Pat.any("x", where=is_float), where=_last_axis),
            _softmax, "softmax over the last dim -> dev.softmax", priority=30,
            decline="softmax over a dim other than the last has no device op"),
)


def reference(args, attrs, ev):
    from ..reference.device_numerics import numerics, softmax_rows
    x = args[0]
    n = x.shape[-1]
    lead = x.shape[:-1]
    m = lead[-1] if lead else 1
    lanes = numerics(attrs, "tree_lanes", "dev.softmax")
    return softmax_rows(x.reshape(-1, m, n), attrs["causal"], ev(attrs["pos0"]), lanes).reshape(x.shape)


def lower(ctx, node):
    shape = node.type.shape
    cols = shape[-1]
    rows = numel(shape[:-1])
    m = shape[-2] if len(shape) >= 2 else sym.const(1)
    src, dst = ctx.addr(node.args[0]), ctx.addr(node)
    return [ctx.emit("softmax", in_fp32=False,
                     causal=bool(node.attrs["causal"]), src=src, dst=dst, rows=rows, cols=cols, m=m,
                     pos0=sym.as_expr(node.attrs["pos0"]))]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    """Scores [H, L, L] as attention makes them, causal and not."""
    from .examples import host_input, one_op, seq_dim
    seq = seq_dim()
    return tuple(OpExample(f"causal={c}", one_op("dev.softmax", [host_input("x", 4, seq, seq)], {}, causal=c))
                 for c in (True, False))


SPEC = register_device_op(DeviceOpSpec(
    name="dev.softmax",
    inputs=("x",),
    attrs={"causal": attr("bool", False), "pos0": attr("sym", 0)},
    type_rel=type_rel,
    doc="row softmax over the last dim of x f16 [..., L]; out f16",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("softmax",),
    numerics=("tree_lanes",),
))
