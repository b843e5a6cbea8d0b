"""Data-movement ops: reshape, permute, expand, slice, concat and indexing.

On the device most of these are address arithmetic; later passes fold them
into the access patterns of the ops around them.
"""
from __future__ import annotations

from ... import sym
from ..op import IRTypeError, attr, register_op
from ..types import TensorType, dtype_category
from .common import broadcast_shapes, is_one, norm_axis, same_numel, tensor


@register_op("reshape", ("x",), {"shape": attr("syms")}, doc="same elements, new shape (row-major)")
def _reshape(types, attrs):
    x = tensor(types[0], "reshape")
    shape = attrs["shape"]
    if not same_numel(x.shape, shape):
        raise IRTypeError(f"op 'reshape': cannot reshape {x} to "
                          f"[{', '.join(map(str, shape))}] (element counts differ or are not provably equal)")
    return TensorType(shape, x.dtype)


@register_op("permute", ("x",), {"dims": attr("ints")}, doc="reorder the axes: out.shape[i] = x.shape[dims[i]]")
def _permute(types, attrs):
    x = tensor(types[0], "permute")
    dims = tuple(norm_axis(d, x.ndim, "permute") for d in attrs["dims"])
    if sorted(dims) != list(range(x.ndim)):
        raise IRTypeError(f"op 'permute': dims {attrs['dims']} are not a permutation of rank {x.ndim}")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


@register_op("expand", ("x",), {"shape": attr("syms")}, doc="broadcast x to ``shape`` (no copy on a strided backend)")
def _expand(types, attrs):
    x = tensor(types[0], "expand")
    shape = attrs["shape"]
    if len(shape) < x.ndim:
        raise IRTypeError(f"op 'expand': target rank {len(shape)} below input rank of {x}")
    lead = len(shape) - x.ndim
    for i, d in enumerate(x.shape):
        if not (is_one(d) or d == shape[lead + i]):
            raise IRTypeError(f"op 'expand': dim {i} of {x} cannot expand to {shape[lead + i]}")
    return TensorType(shape, x.dtype)


@register_op("slice", ("x",), {"axis": attr("int"), "start": attr("sym"), "end": attr("sym"),
                               "step": attr("int", 1)},
             doc="elements start, start+step, ... < end along ``axis``; start/end already in [0, dim]")
def _slice(types, attrs):
    x = tensor(types[0], "slice")
    ax = norm_axis(attrs["axis"], x.ndim, "slice")
    start, end, step = attrs["start"], attrs["end"], attrs["step"]
    if step < 1:
        raise IRTypeError(f"op 'slice': step must be >= 1, got {step}")
    length = sym.smax(sym.ceildiv(end - start, step), 0)
    shape = list(x.shape)
    shape[ax] = length
    return TensorType(tuple(shape), x.dtype)


@register_op("concat", ("*xs",), {"axis": attr("int")}, doc="join tensors along ``axis``")
def _concat(types, attrs):
    ts = [tensor(t, "concat") for t in types]
    if not ts:
        raise IRTypeError("op 'concat' needs at least one input")
    first = ts[0]
    ax = norm_axis(attrs["axis"], first.ndim, "concat")
    total = sym.const(0)
    for t in ts:
        if t.ndim != first.ndim or t.dtype != first.dtype or any(
                i != ax and d != e for i, (d, e) in enumerate(zip(t.shape, first.shape))):
            raise IRTypeError(f"op 'concat': {t} does not match {first} outside axis {ax}")
        total = total + t.shape[ax]
    shape = list(first.shape)
    shape[ax] = total
    return TensorType(tuple(shape), first.dtype)


@register_op("take", ("x", "indices"), {"axis": attr("int")},
             doc="x indexed along ``axis`` by an integer tensor: shape x[:axis] + indices + x[axis+1:]")
def _take(types, attrs):
    x, i = tensor(types[0], "take"), tensor(types[1], "take", "indices")
    if dtype_category(i.dtype) != "int":
        raise IRTypeError(f"op 'take': indices must be integers, got {i.dtype}")
    ax = norm_axis(attrs["axis"], x.ndim, "take")
    return TensorType(x.shape[:ax] + i.shape + x.shape[ax + 1:], x.dtype)


@register_op("index", ("x", "*indices"), {"axes": attr("ints")},
             doc="numpy advanced indexing: integer/bool-free index tensors on ``axes`` "
                 "(broadcast together); the result dims go where the first indexed axis "
                 "is if the axes are adjacent, else in front")
def _index(types, attrs):
    x = tensor(types[0], "index")
    idx = [tensor(t, "index", "indices") for t in types[1:]]
    axes = tuple(norm_axis(a, x.ndim, "index") for a in attrs["axes"])
    if len(axes) != len(idx) or not idx:
        raise IRTypeError(f"op 'index': {len(idx)} index tensors for axes {attrs['axes']}")
    if list(axes) != sorted(set(axes)):
        raise IRTypeError(f"op 'index': axes {axes} must be increasing and distinct")
    for t in idx:
        if dtype_category(t.dtype) != "int":
            raise IRTypeError(f"op 'index': index tensors must be integers, got {t.dtype}")
    bshape = broadcast_shapes([t.shape for t in idx], "index")
    rest = [d for i, d in enumerate(x.shape) if i not in axes]
    adjacent = axes == tuple(range(axes[0], axes[0] + len(axes)))
    if adjacent:
        before = list(x.shape[:axes[0]])
        after = list(x.shape[axes[-1] + 1:])
        return TensorType(tuple(before) + bshape + tuple(after), x.dtype)
    return TensorType(bshape + tuple(rest), x.dtype)


@register_op("gather", ("x", "indices"), {"axis": attr("int")},
             doc="torch.gather: out[i][j][k] = x[i][indices[i][j][k]][k] for axis 1; indices has x's rank, "
                 "any size along ``axis`` and at most x's size elsewhere; the result has the shape of indices")
def _gather(types, attrs):
    x, i = tensor(types[0], "gather"), tensor(types[1], "gather", "indices")
    if dtype_category(i.dtype) != "int":
        raise IRTypeError(f"op 'gather': indices must be integers, got {i.dtype}")
    if i.ndim != x.ndim:
        raise IRTypeError(f"op 'gather': indices {i} must have the rank of x {x}")
    ax = norm_axis(attrs["axis"], x.ndim, "gather")
    for d, (a, b) in enumerate(zip(i.shape, x.shape)):
        if d != ax and a.is_const and b.is_const and a.value > b.value:
            raise IRTypeError(f"op 'gather': indices {i} is larger than x {x} in dim {d}")
    return TensorType(i.shape, x.dtype)


@register_op("argsort", ("x",), {"axis": attr("int"), "descending": attr("bool", False)},
             doc="int64 indices that sort x along ``axis`` (ascending, or descending); stable: equal "
                 "values keep their input order; NaN sorts above every number")
def _argsort(types, attrs):
    x = tensor(types[0], "argsort")
    norm_axis(attrs["axis"], x.ndim, "argsort")
    return TensorType(x.shape, "int64")
