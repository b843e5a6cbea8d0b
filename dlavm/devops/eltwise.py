"""``dev.eltwise``: add / sub / mul of two same-shape fp16 tensors on the SFU (doc/isa.md 7.4).

One fp32 operation per element, rounded once to fp16. Legalization moves a
host add/sub/mul here only when both operands are computed tensors of the
result's shape and dtype that are not themselves host arithmetic: an
operand still computed by host arithmetic may be the inside of a larger
pattern (an RMSNorm's square, GPT-2's GELU formula) that is matched at its
root, so this rule never takes a piece of one.
"""
from __future__ import annotations

from ..ir import Call, IRTypeError, TensorType, Var, attr, call
from ..ir.ops.elementwise import ARITH_BINARY, FLOAT_UNARY, SAME_UNARY
from ..passes.fold import is_size_only
from ..passes.patterns_match import Pat, Pattern, device_value, is_float, is_op, to_device, to_host
from ..target.isa import ELTWISE_OPS
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    a, b = f16(types[0], "dev.eltwise", "a"), f16(types[1], "dev.eltwise", "b")
    if attrs["fn"] not in ELTWISE_OPS:
        raise IRTypeError(f"op 'dev.eltwise': fn must be one of {ELTWISE_OPS}, got {attrs['fn']!r}")
    if a.shape != b.shape:
        raise IRTypeError(f"op 'dev.eltwise': shapes differ: {a} vs {b}")
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


PATTERNS = tuple(
    Pattern(f"{fn}->eltwise", Pat(fn, Pat.any("a", where=_operand), Pat.any("b", where=_operand),
                                  where=_same_shape_dtype),
            _eltwise, f"same-shape {fn} of computed tensors -> dev.eltwise({fn})", priority=90)
    for fn in ELTWISE_OPS)


def reference(args, attrs, ev):
    import torch
    a, b = args[0].float(), args[1].float()
    out = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[attrs["fn"]](a, b)
    return out.to(torch.float16)


def lower(ctx, node):
    a, b = node.args
    count = numel(node.type.shape)
    aa, ba, dst = ctx.fp16_operand(a), ctx.fp16_operand(b), ctx.addr(node)
    return [ctx.emit("eltwise", fn=node.attrs["fn"], a=aa, b=ba, dst=dst, count=count)]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    from .examples import host_input, one_op, seq_dim
    seq = seq_dim()
    return tuple(OpExample(fn, one_op("dev.eltwise", [host_input("a", seq, 32), host_input("b", seq, 32)], {}, fn=fn))
                 for fn in ELTWISE_OPS)


SPEC = register_device_op(DeviceOpSpec(
    name="dev.eltwise",
    inputs=("a", "b"),
    attrs={"fn": attr("str")},
    type_rel=type_rel,
    doc="a fn b for same-shape f16 tensors",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("eltwise",),
))
