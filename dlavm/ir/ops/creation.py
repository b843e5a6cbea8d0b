"""Ops that make tensors from sizes: ranges, filled tensors and shape values."""
from __future__ import annotations

from ... import sym
from ..op import IRTypeError, attr, register_op
from ..types import TensorType


@register_op("arange", (), {"start": attr("sym", 0), "end": attr("sym"), "step": attr("int", 1),
                            "dtype": attr("dtype", "int64")},
             doc="start, start+step, ... < end")
def _arange(types, attrs):
    if attrs["step"] < 1:
        raise IRTypeError(f"op 'arange': step must be >= 1, got {attrs['step']}")
    n = sym.smax(sym.ceildiv(attrs["end"] - attrs["start"], attrs["step"]), 0)
    return TensorType((n,), attrs["dtype"])


@register_op("full", (), {"shape": attr("syms"), "value": attr("scalar"), "dtype": attr("dtype")},
             doc="a tensor of ``shape`` filled with ``value``")
def _full(types, attrs):
    return TensorType(attrs["shape"], attrs["dtype"])


@register_op("shape_value", (), {"value": attr("sym"), "dtype": attr("dtype", "int64")},
             doc="a 0-d tensor holding a symbolic size (e.g. the current sequence length)")
def _shape_value(types, attrs):
    return TensorType((), attrs["dtype"])
