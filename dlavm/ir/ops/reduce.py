"""Reductions and scans over axes."""
from __future__ import annotations

from ... import sym
from ..op import IRTypeError, attr, register_op
from ..types import DEFAULT_FLOAT, TensorType, dtype_category
from .common import norm_axes, norm_axis, tensor

REDUCE_OPS = ("sum", "mean", "amax", "amin", "prod", "any", "all")


def _reduced_shape(x, axes, keepdim):
    if keepdim:
        return tuple(sym.const(1) if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _reduce(name):
    @register_op(name, ("x",), {"axes": attr("ints", ()), "keepdim": attr("bool", False),
                                "dtype": attr("?dtype", None)},
                 doc=f"{name} over ``axes`` (empty: all axes)")
    def rel(types, attrs, _n=name):
        x = tensor(types[0], _n)
        axes = norm_axes(attrs["axes"], x.ndim, _n) if attrs["axes"] else tuple(range(x.ndim))
        dt = attrs["dtype"] or x.dtype
        if _n in ("any", "all"):
            dt = "bool"
        elif _n in ("sum", "prod") and attrs["dtype"] is None and dtype_category(x.dtype) != "float":
            dt = "int64"
        elif _n == "mean" and dtype_category(dt) != "float":
            raise IRTypeError(f"op 'mean' needs a floating dtype, got {dt}")
        return TensorType(_reduced_shape(x, set(axes), attrs["keepdim"]), dt)


for _n in REDUCE_OPS:
    _reduce(_n)


@register_op("argmax", ("x",), {"axis": attr("int"), "keepdim": attr("bool", False)},
             doc="index of the first maximum along ``axis`` (int64)")
def _argmax(types, attrs):
    x = tensor(types[0], "argmax")
    ax = norm_axis(attrs["axis"], x.ndim, "argmax")
    return TensorType(_reduced_shape(x, {ax}, attrs["keepdim"]), "int64")


@register_op("cumsum", ("x",), {"axis": attr("int"), "dtype": attr("?dtype", None)},
             doc="inclusive prefix sum along ``axis``; bool/int inputs accumulate in int64")
def _cumsum(types, attrs):
    x = tensor(types[0], "cumsum")
    norm_axis(attrs["axis"], x.ndim, "cumsum")
    dt = attrs["dtype"] or (x.dtype if dtype_category(x.dtype) == "float" else "int64")
    return TensorType(x.shape, dt)


@register_op("softmax", ("x",), {"axis": attr("int")}, doc="softmax along ``axis``")
def _softmax(types, attrs):
    x = tensor(types[0], "softmax")
    norm_axis(attrs["axis"], x.ndim, "softmax")
    return TensorType(x.shape, x.dtype if dtype_category(x.dtype) == "float" else DEFAULT_FLOAT)


@register_op("log_softmax", ("x",), {"axis": attr("int")}, doc="log-softmax along ``axis``")
def _log_softmax(types, attrs):
    return _softmax(types, attrs)
