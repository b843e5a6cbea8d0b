"""``dev.eltwise``: add / sub / mul of fp16 tensors on the SFU (doc/isa.md 7.5, ``eltwise``).

One fp32 operation per element, rounded once to fp16. ``b`` has ``a``'s
shape, or a *suffix* of it (leading size-1 dims aside): a row broadcast
over the leading dims, which the instruction's ``period`` field does (a
bias row ``[N]`` over ``[M, N]``, a ``[T, D]`` table over ``[B, T, D]``).

Legalization moves a host add/sub/mul here when the operand of the
result's shape is a computed tensor that is not itself host arithmetic
(an operand still computed by host arithmetic may be the inside of a
larger pattern, an RMSNorm's square or GPT-2's GELU formula, matched at its
root, so this rule never takes a piece of one) and the other operand is
such a tensor too, of the same shape, or a broadcast row: a weight, or a
computed tensor that is not a size-only table (RoPE's cos/sin rows belong
to the ``rope`` pattern) unless it is a table lookup (a positional
embedding). Scalars (literals) stay on the host: a scalar operand is what
the larger patterns are made of.
"""
from __future__ import annotations

from .. import sym
from ..ir import Call, Constant, IRTypeError, TensorType, Var, attr, call
from ..ir.ops.elementwise import ARITH_BINARY, FLOAT_UNARY, SAME_UNARY
from ..passes.fold import is_size_only
from ..passes.patterns_match import Pat, Pattern, device_value, is_float, is_op, strip_views, to_device, to_host
from ..target.isa import ELTWISE_OPS
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def row_shape(b_shape) -> tuple:
    """``b_shape`` without its leading size-1 dims (the row the instruction repeats)."""
    shape = tuple(b_shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def broadcasts(b_shape, a_shape) -> bool:
    """``b`` is ``a``'s shape or a row of it: its shape, leading 1s aside, is a suffix of ``a``'s."""
    if tuple(b_shape) == tuple(a_shape):
        return True
    row = row_shape(b_shape)
    return len(b_shape) <= len(a_shape) and (not row or tuple(a_shape[len(a_shape) - len(row):]) == row)


def type_rel(types, attrs):
    a, b = f16(types[0], "dev.eltwise", "a"), f16(types[1], "dev.eltwise", "b")
    if attrs["fn"] not in ELTWISE_OPS:
        raise IRTypeError(f"op 'dev.eltwise': fn must be one of {ELTWISE_OPS}, got {attrs['fn']!r}")
    if not broadcasts(b.shape, a.shape):
        raise IRTypeError(f"op 'dev.eltwise': b {b} is neither a's shape nor a row of it: {a}")
    return TensorType(a.shape, "float16")


_HOST_ARITH = frozenset(ARITH_BINARY + FLOAT_UNARY + SAME_UNARY) - {"relu"}


def _operand(x) -> bool:
    """A computed float tensor that is not host arithmetic (see the module docstring)."""
    return isinstance(x, (Call, Var)) and is_float(x) and not is_op(x, *_HOST_ARITH)


def _same_shape_dtype(node) -> bool:
    a, b = node.args
    return (a.type.shape == b.type.shape == node.type.shape and a.type.dtype == b.type.dtype == node.type.dtype
            and not (is_size_only(a) and is_size_only(b))
            # a host square x*x is the inside of a norm pattern, not a device op
            and not (a is b and device_value(a) is None))


def _eltwise(node, ctx, a, b):
    return to_host(call("dev.eltwise", to_device(a), to_device(b), fn=node.op.name), node.type.dtype)


def _row_operand(x) -> bool:
    """A broadcast row: a weight, or a computed float tensor that is not host arithmetic and not a
    size-only table (RoPE's cos/sin rows are the inside of the ``rope`` pattern) unless it is a table
    lookup (a positional embedding ``wpe(arange(T))``)."""
    if isinstance(x, Constant):
        return is_float(x)
    if not _operand(x):
        return False
    return not is_size_only(x) or is_op(strip_views(x)[0], "embedding")


def _broadcast(node, ctx, a, b):
    """``a fn b`` with ``b`` a row of ``a``'s shape (``add``/``mul``: either operand order)."""
    if not (a.type.shape == node.type.shape and a.type.dtype == b.type.dtype == node.type.dtype
            and b.type.shape != a.type.shape and broadcasts(b.type.shape, a.type.shape) and b is not a
            and not (is_size_only(a) and is_size_only(b))):
        return None
    return _eltwise(node, ctx, a, b)


PATTERNS = tuple(
    Pattern(f"{fn}->eltwise", Pat(fn, Pat.any("a", where=_operand), Pat.any("b", where=_operand),
                                  where=_same_shape_dtype),
            _eltwise, f"same-shape {fn} of computed tensors -> dev.eltwise({fn})", priority=90)
    for fn in ELTWISE_OPS) + tuple(
    Pattern(f"{fn}-row->eltwise", Pat(fn, Pat.any("a", where=_operand), Pat.any("b", where=_row_operand),
                                      commutative=fn != "sub"),
            _broadcast, f"{fn} of a computed tensor and a broadcast row (weight or tensor) -> "
                        f"dev.eltwise({fn}, period)", priority=90)
    for fn in ELTWISE_OPS)


def reference(args, attrs, ev):
    import torch
    a, b = args[0].float(), args[1].float().reshape(row_shape(args[1].shape))
    out = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[attrs["fn"]](a, b)
    return out.to(torch.float16)


def lower(ctx, node):
    a, b = node.args
    count = numel(node.type.shape)
    rows = numel(b.type.shape)
    period = 0 if sym.as_expr(rows) == sym.as_expr(count) else rows  # a same-size b needs no broadcast
    aa, ba, dst = ctx.fp16_operand(a), ctx.fp16_operand(b), ctx.addr(node)
    return [ctx.emit("eltwise", fn=node.attrs["fn"], a=aa, b=ba, dst=dst, count=count, period=period)]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    """Each fn on same-shape tensors; a bias row [32] over [seq, 32] (``period`` 32); a [seq, 32] table
    over [1, seq, 32] (a positional embedding: period = count); a row [1, 4, 8] over [seq, 4, 8]."""
    from .examples import host_input, one_op, seq_dim
    seq = seq_dim()
    return tuple(OpExample(fn, one_op("dev.eltwise", [host_input("a", seq, 32), host_input("b", seq, 32)], {}, fn=fn))
                 for fn in ELTWISE_OPS) + (
        OpExample("sub-bias-row", one_op("dev.eltwise", [host_input("a", seq, 32), host_input("b", 32)], {},
                                         fn="sub")),
        OpExample("add-positions", one_op("dev.eltwise", [host_input("a", 1, seq, 32), host_input("b", seq, 32)],
                                          {}, fn="add")),
        OpExample("mul-row-input", one_op("dev.eltwise", [host_input("a", seq, 4, 8), host_input("b", 1, 4, 8)],
                                          {}, fn="mul")))


SPEC = register_device_op(DeviceOpSpec(
    name="dev.eltwise",
    inputs=("a", "b"),
    attrs={"fn": attr("str")},
    type_rel=type_rel,
    doc="a fn b for f16 tensors; b has a's shape or is a row of it (its shape, leading 1s aside, a suffix "
        "of a's), repeated over a's leading dims",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("eltwise",),
))
