"""Torch implementations of every graph-IR op, keyed by op name.

Each kernel takes ``(args, attrs, ev)``: ``args`` are torch tensors (or
Python scalars for ``Literal`` inputs, which keeps torch's weak-scalar type
promotion), ``attrs`` the node's attributes, and ``ev`` evaluates a symbolic
attribute to an int for the current binding of the dynamic dims.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ir.ops.elementwise import ARITH_BINARY, COMPARE_BINARY, FLOAT_UNARY, SAME_UNARY

DTYPE = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
}

KERNELS: dict = {}


def kernel(*names):
    def wrap(fn):
        for n in names:
            KERNELS[n] = fn
        return fn
    return wrap


def _t(x, like=None):
    """A tensor from a kernel argument (scalars become 0-d tensors)."""
    if isinstance(x, torch.Tensor):
        return x
    return torch.tensor(x, device=like.device if isinstance(like, torch.Tensor) else None)


_UNARY = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
    "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "silu": F.silu, "erf": torch.erf, "reciprocal": torch.reciprocal,
    "neg": torch.neg, "abs": torch.abs, "relu": torch.relu, "bitwise_not": torch.bitwise_not,
    "floor": torch.floor, "ceil": torch.ceil, "sign": torch.sign, "logical_not": torch.logical_not,
}
_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "maximum": torch.maximum,
    "minimum": torch.minimum, "floor_divide": torch.floor_divide, "remainder": torch.remainder,
    "bitwise_and": torch.bitwise_and, "bitwise_or": torch.bitwise_or,
    "bitwise_xor": torch.bitwise_xor, "pow": torch.pow,
    "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or,
    "logical_xor": torch.logical_xor,
}
assert set(FLOAT_UNARY + SAME_UNARY) - {"gelu"} <= set(_UNARY)
assert set(ARITH_BINARY + COMPARE_BINARY) <= set(_BINARY)


def _floating(x):
    """Integer and bool inputs of ops whose result is floating compute in float32 (the IR's types)."""
    return x if x.is_floating_point() else x.to(torch.float32)


def _unary(fn, to_float: bool):
    """``to_float``: integer inputs compute in float32 (the ops of ``FLOAT_UNARY``)."""
    def run(args, attrs, ev):
        x = _t(args[0])
        return fn(_floating(x) if to_float else x)
    return run


def _binary(fn):
    def run(args, attrs, ev):
        a, b = args
        if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
            a = _t(a)
        if not isinstance(a, torch.Tensor):
            # torch functions want the tensor first for scalar arguments; keep
            # the scalar weak by broadcasting a 0-d tensor of the tensor's dtype.
            return fn(torch.full((), a, dtype=_weak_dtype(a, b), device=b.device), b)
        if not isinstance(b, torch.Tensor) and fn in _TENSOR_ONLY:
            b = torch.full((), b, dtype=_weak_dtype(b, a), device=a.device)
        return fn(a, b)
    return run


# torch functions that take no Python scalar operand (a 0-d tensor of the weak dtype stands in)
_TENSOR_ONLY = (torch.maximum, torch.minimum, torch.logical_and, torch.logical_or, torch.logical_xor)


def _weak_dtype(scalar, tensor):
    """The dtype torch gives a Python scalar next to ``tensor``: the tensor's, unless the scalar's
    category (bool < int < float) is higher, then that category's default."""
    if isinstance(scalar, float) and not tensor.is_floating_point():
        return torch.float32
    if isinstance(scalar, int) and not isinstance(scalar, bool) and tensor.dtype == torch.bool:
        return torch.int64
    return tensor.dtype


for _n, _f in _UNARY.items():
    KERNELS[_n] = _unary(_f, _n in FLOAT_UNARY)
for _n, _f in _BINARY.items():
    KERNELS[_n] = _binary(_f)


@kernel("gelu")
def _gelu(args, attrs, ev):
    return F.gelu(_floating(args[0]), approximate=attrs["approximate"])


@kernel("div")
def _div(args, attrs, ev):
    a, b = args
    if not isinstance(a, torch.Tensor):
        a = torch.full((), a, dtype=_weak_dtype(a, b), device=b.device)
    return torch.div(a, b, rounding_mode=attrs["rounding_mode"])


@kernel("where")
def _where(args, attrs, ev):
    c, a, b = args
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        dt = torch.float32 if isinstance(a, float) or isinstance(b, float) else torch.int64
        a = torch.tensor(a, dtype=dt, device=c.device)
    return torch.where(c, a, b)


@kernel("clamp")
def _clamp(args, attrs, ev):
    return torch.clamp(args[0], attrs["min"], attrs["max"])


@kernel("cast")
def _cast(args, attrs, ev):
    return _t(args[0]).to(DTYPE[attrs["dtype"]])


def _reduce(fn):
    def run(args, attrs, ev):
        x = args[0]
        axes = list(attrs["axes"]) or list(range(x.dim()))
        dt = attrs.get("dtype")
        kw = {"dtype": DTYPE[dt]} if dt else {}
        return fn(x, axes, attrs["keepdim"], **kw)
    return run


KERNELS["sum"] = _reduce(lambda x, a, k, **kw: torch.sum(x, a, keepdim=k, **kw))
KERNELS["mean"] = _reduce(lambda x, a, k, **kw: torch.mean(x, a, keepdim=k, **kw))
# torch.amax/amin take no dtype: as for sum, the input is converted to it first; torch.any/all give
# uint8 for uint8 input, the IR says bool
KERNELS["amax"] = _reduce(lambda x, a, k, **kw: torch.amax(x.to(kw.get("dtype", x.dtype)), a, keepdim=k))
KERNELS["amin"] = _reduce(lambda x, a, k, **kw: torch.amin(x.to(kw.get("dtype", x.dtype)), a, keepdim=k))
KERNELS["any"] = _reduce(lambda x, a, k, **kw: torch.any(x, dim=tuple(a), keepdim=k).to(torch.bool))
KERNELS["all"] = _reduce(lambda x, a, k, **kw: torch.all(x, dim=tuple(a), keepdim=k).to(torch.bool))


@kernel("prod")
def _prod(args, attrs, ev):
    x = args[0]
    axes = list(attrs["axes"]) or list(range(x.dim()))
    dt = DTYPE[attrs["dtype"]] if attrs["dtype"] else None
    for a in sorted((a % max(x.dim(), 1) for a in axes), reverse=True):
        x = torch.prod(x, a, keepdim=attrs["keepdim"], dtype=dt)
    return x


@kernel("argmax")
def _argmax(args, attrs, ev):
    return torch.argmax(args[0], dim=attrs["axis"], keepdim=attrs["keepdim"])


@kernel("cumsum")
def _cumsum(args, attrs, ev):
    dt = DTYPE[attrs["dtype"]] if attrs["dtype"] else None
    return torch.cumsum(args[0], attrs["axis"], dtype=dt)


@kernel("softmax")
def _softmax(args, attrs, ev):
    return torch.softmax(_floating(args[0]), attrs["axis"])


@kernel("log_softmax")
def _log_softmax(args, attrs, ev):
    return torch.log_softmax(_floating(args[0]), attrs["axis"])


@kernel("matmul")
def _matmul(args, attrs, ev):
    return torch.matmul(args[0], args[1])


@kernel("linear")
def _linear(args, attrs, ev):
    return F.linear(*args)


@kernel("conv2d")
def _conv2d(args, attrs, ev):
    x, w = args[:2]
    b = args[2] if len(args) > 2 else None
    return F.conv2d(x, w, b, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])


@kernel("im2col")
def _im2col(args, attrs, ev):
    x = args[0]
    n = x.shape[0]
    cols = F.unfold(x, attrs["kernel"], attrs["dilation"], attrs["padding"], attrs["stride"])  # [N, C*KH*KW, L]
    return cols.permute(0, 2, 1).reshape(n * cols.shape[2], cols.shape[1])


@kernel("max_pool2d")
def _max_pool2d(args, attrs, ev):
    return F.max_pool2d(args[0], attrs["kernel"], attrs["stride"], attrs["padding"],
                        attrs["dilation"], ceil_mode=attrs["ceil_mode"])


@kernel("avg_pool2d")
def _avg_pool2d(args, attrs, ev):
    return F.avg_pool2d(args[0], attrs["kernel"], attrs["stride"], attrs["padding"],
                        ceil_mode=attrs["ceil_mode"], count_include_pad=attrs["count_include_pad"])


@kernel("layer_norm")
def _layer_norm(args, attrs, ev):
    x = args[0]
    w = args[1] if len(args) > 1 else None
    b = args[2] if len(args) > 2 else None
    return F.layer_norm(x, x.shape[-attrs["ndim"]:], w, b, attrs["eps"])


@kernel("rms_norm")
def _rms_norm(args, attrs, ev):
    x = args[0]
    w = args[1] if len(args) > 1 else None
    return F.rms_norm(x, x.shape[-attrs["ndim"]:], w, attrs["eps"])


@kernel("attention")
def _attention(args, attrs, ev):
    q, k, v = args[:3]
    mask = args[3] if len(args) > 3 else None
    gqa = q.dim() >= 3 and q.shape[-3] != k.shape[-3]
    causal = attrs["causal"]
    if causal and q.shape[-2] != k.shape[-2]:
        # torch's is_causal aligns top-left; ours is bottom-right (a query
        # attends to every key up to its own position at the end of the cache).
        lq, lk = q.shape[-2], k.shape[-2]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        mask = keep if mask is None else _combine(mask, keep)
        causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                          scale=attrs["scale"], enable_gqa=gqa)


def _combine(mask, keep):
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, float("-inf"))


@kernel("embedding")
def _embedding(args, attrs, ev):
    return F.embedding(args[1], args[0])


@kernel("reshape")
def _reshape(args, attrs, ev):
    return _t(args[0]).reshape([ev(d) for d in attrs["shape"]])


@kernel("permute")
def _permute(args, attrs, ev):
    return args[0].permute(attrs["dims"])


@kernel("expand")
def _expand(args, attrs, ev):
    return _t(args[0]).expand([ev(d) for d in attrs["shape"]])


@kernel("slice")
def _slice(args, attrs, ev):
    x = args[0]
    idx = [slice(None)] * x.dim()
    idx[attrs["axis"]] = slice(ev(attrs["start"]), ev(attrs["end"]), attrs["step"])
    return x[tuple(idx)]


@kernel("concat")
def _concat(args, attrs, ev):
    return torch.cat(list(args), attrs["axis"])


@kernel("take")
def _take(args, attrs, ev):
    x, i = args
    ax = attrs["axis"] % x.dim()
    out = torch.index_select(x, ax, i.reshape(-1))
    return out.reshape(x.shape[:ax] + i.shape + x.shape[ax + 1:])


@kernel("index")
def _index(args, attrs, ev):
    x = args[0]
    idx: list = [slice(None)] * x.dim()
    for a, t in zip(attrs["axes"], args[1:]):
        idx[a] = t
    return x[tuple(idx)]


@kernel("gather")
def _gather(args, attrs, ev):
    return torch.gather(args[0], attrs["axis"], args[1])


@kernel("argsort")
def _argsort(args, attrs, ev):
    return torch.sort(args[0], dim=attrs["axis"], descending=attrs["descending"], stable=True).indices


@kernel("arange")
def _arange(args, attrs, ev, device=None):
    return torch.arange(ev(attrs["start"]), ev(attrs["end"]), attrs["step"],
                        dtype=DTYPE[attrs["dtype"]], device=device)


@kernel("full")
def _full(args, attrs, ev, device=None):
    return torch.full([ev(d) for d in attrs["shape"]], attrs["value"],
                      dtype=DTYPE[attrs["dtype"]], device=device)


@kernel("shape_value")
def _shape_value(args, attrs, ev, device=None):
    return torch.tensor(ev(attrs["value"]), dtype=DTYPE[attrs["dtype"]], device=device)


CREATION = ("arange", "full", "shape_value")
