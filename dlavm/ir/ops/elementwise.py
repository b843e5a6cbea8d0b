"""Elementwise ops: unary maths, binary arithmetic with broadcasting,
comparisons, ``where`` and casts. Scalars are 0-d ``Literal`` inputs and are
weak in type promotion, as Python scalars are in torch."""
from __future__ import annotations

from ..op import IRTypeError, attr, register_op
from ..types import DEFAULT_FLOAT, TensorType, dtype_category, promote_dtypes
from .common import broadcast_shapes, tensor

# Unary ops whose result is floating (int inputs promote to the default float).
FLOAT_UNARY = ("exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
               "silu", "erf", "reciprocal", "gelu")
# Unary ops that keep the input dtype.
SAME_UNARY = ("neg", "abs", "relu", "bitwise_not", "floor", "ceil", "sign")
ARITH_BINARY = ("add", "sub", "mul", "maximum", "minimum", "floor_divide", "remainder",
                "bitwise_and", "bitwise_or", "bitwise_xor", "pow")
COMPARE_BINARY = ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor")


def _float_unary(name):
    attrs = {"approximate": attr("str", "none", choices=("none", "tanh"))} if name == "gelu" else {}

    @register_op(name, ("x",), attrs, doc=f"elementwise {name}; int inputs give {DEFAULT_FLOAT}")
    def rel(types, attrs, _n=name):
        x = tensor(types[0], _n)
        dt = x.dtype if dtype_category(x.dtype) == "float" else DEFAULT_FLOAT
        return TensorType(x.shape, dt)


def _same_unary(name):
    @register_op(name, ("x",), doc=f"elementwise {name}; keeps the dtype")
    def rel(types, attrs, _n=name):
        x = tensor(types[0], _n)
        if _n == "bitwise_not" and dtype_category(x.dtype) == "float":
            raise IRTypeError("op 'bitwise_not' needs an integer or bool tensor")
        return TensorType(x.shape, x.dtype)


@register_op("logical_not", ("x",), doc="elementwise logical not; result is bool")
def _logical_not(types, attrs):
    return TensorType(tensor(types[0], "logical_not").shape, "bool")


def _operands(types, op):
    ts = [tensor(t, op) for t in types]
    strong = [t.dtype for t in ts if t.ndim > 0]
    weak = [t.dtype for t in ts if t.ndim == 0]
    return ts, promote_dtypes(strong, weak)


def _arith(name):
    @register_op(name, ("a", "b"), doc=f"elementwise {name} with broadcasting and torch type promotion")
    def rel(types, attrs, _n=name):
        ts, dt = _operands(types, _n)
        if _n.startswith("bitwise") and dtype_category(dt) == "float":
            raise IRTypeError(f"op '{_n}' needs integer or bool operands, got {dt}")
        return TensorType(broadcast_shapes([t.shape for t in ts], _n), dt)


@register_op("div", ("a", "b"), {"rounding_mode": attr("?str", None, choices=(None, "trunc", "floor"))},
             doc="elementwise true division (ints give float) or rounding division")
def _div(types, attrs):
    ts, dt = _operands(types, "div")
    if attrs["rounding_mode"] is None and dtype_category(dt) != "float":
        dt = DEFAULT_FLOAT
    return TensorType(broadcast_shapes([t.shape for t in ts], "div"), dt)


def _compare(name):
    @register_op(name, ("a", "b"), doc=f"elementwise {name}; result is bool")
    def rel(types, attrs, _n=name):
        ts = [tensor(t, _n) for t in types]
        return TensorType(broadcast_shapes([t.shape for t in ts], _n), "bool")


@register_op("where", ("cond", "a", "b"), doc="select a where cond else b, with broadcasting")
def _where(types, attrs):
    c = tensor(types[0], "where", "cond")
    if c.dtype != "bool":
        raise IRTypeError(f"op 'where': cond must be bool, got {c.dtype}")
    ts, dt = _operands(types[1:], "where")
    return TensorType(broadcast_shapes([c.shape] + [t.shape for t in ts], "where"), dt)


@register_op("clamp", ("x",), {"min": attr("?scalar", None), "max": attr("?scalar", None)},
             doc="elementwise clamp to [min, max] (either bound optional)")
def _clamp(types, attrs):
    x = tensor(types[0], "clamp")
    bounds = [v for v in (attrs["min"], attrs["max"]) if v is not None]
    if not bounds:
        raise IRTypeError("op 'clamp' needs min or max")
    weak = ["float32" if isinstance(v, float) else "int64" for v in bounds]
    return TensorType(x.shape, promote_dtypes([x.dtype], weak))


@register_op("cast", ("x",), {"dtype": attr("dtype")}, doc="convert to another dtype")
def _cast(types, attrs):
    return TensorType(tensor(types[0], "cast").shape, attrs["dtype"])


for _n in FLOAT_UNARY:
    _float_unary(_n)
for _n in SAME_UNARY:
    _same_unary(_n)
for _n in ARITH_BINARY:
    _arith(_n)
for _n in COMPARE_BINARY:
    _compare(_n)
