"""Numpy kernels for host-fallback ops (ops the device does not run).

``run_host_op(op, args, attrs, dtype)`` computes one op; ``args`` are numpy
arrays or Python scalars, ``attrs`` have their symbolic values already
evaluated. Semantics follow doc/ir.md (torch's).

Each kernel is registered with the attribute values it honours, next to its
code (``@host_kernel("div", rounding_mode=(None, "trunc", "floor"))``):
``ANY`` for every value the op allows, else the tuple of supported values.
An attribute a kernel does not declare is one it ignores, so a call that
carries it is refused (``unsupported_attrs``): the compiler refuses such a
model at compile time and ``run_host_op`` refuses it at run time, rather
than computing something else. Kernels marked ``promote`` get their tensor
operands converted to the result dtype first, float16 computing in float32
(torch's CPU "opmath"), so the result is rounded once, as torch rounds it.
Ops registered with ``@dlavm.host_op`` (``dlavm.host_ops``) run through
:func:`find_kernel` like built-in ones. Needs numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import erf
from typing import Callable

import numpy as np

from dlavm import host_ops
from dlavm.artifact import HostStep


class HostOpError(RuntimeError):
    """A host-fallback op has no numpy kernel, an attribute its kernel does not honour, or invalid inputs."""


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: an attribute a kernel honours for every value the op allows
ANY = _Any()
#: the dtypes numpy can hold (no bfloat16): host values and dtype attributes must be one of these
NUMPY_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
_OPT_DTYPES = (None,) + NUMPY_DTYPES
_NUMERIC_OPT_DTYPES = (None,) + NUMPY_DTYPES[1:]  # a bool range or running sum is not defined (torch neither)


@dataclass(frozen=True)
class HostKernel:
    """``fn(args, attrs)`` computes op ``op``; ``attrs`` maps every attribute it honours to
    ``ANY`` or the tuple of values it supports; ``promote``: see the module docstring."""

    op: str
    fn: Callable
    attrs: dict = field(default_factory=dict)
    promote: bool = False


KERNELS: dict[str, HostKernel] = {}


def host_kernel(*ops, promote: bool = False, **attrs):
    """Register the decorated ``fn(args, attrs)`` as the kernel of ``ops``, honouring ``attrs``."""
    def wrap(fn):
        for op in ops:
            if op in KERNELS:
                raise ValueError(f"host op '{op}' already has a kernel")
            KERNELS[op] = HostKernel(op, fn, dict(attrs), promote)
        return fn
    return wrap


def _user_kernel(args, a, op):
    out = np.asarray(host_ops.call(op, a["call"], [np.asarray(x) for x in args]))
    if out.shape != tuple(a["shape"]):
        raise HostOpError(f"host op '{op}' returned shape {out.shape}, the model expects {tuple(a['shape'])}")
    return out


def find_kernel(op: str) -> HostKernel | None:
    """The kernel of host op ``op``: a built-in one of :data:`KERNELS`, or a user host op registered in
    this process with ``@dlavm.host_op`` (``dlavm.host_ops``); None if there is neither."""
    k = KERNELS.get(op)
    if k is None and host_ops.get(op) is not None:
        k = HostKernel(op, lambda args, a, _op=op: _user_kernel(args, a, _op), {"shape": ANY, "dtype": ANY,
                                                                                "call": ANY})
    return k


def missing_kernels(ops) -> list[str]:
    """The ops of ``ops`` this process cannot run on the host, sorted: no built-in kernel and no user
    host op registered (``@dlavm.host_op``)."""
    return sorted({op for op in ops if find_kernel(op) is None})


def require_kernels(ops) -> None:
    """Raise :class:`HostOpError` (one line, naming each op) if this process cannot run one of the host
    ops ``ops``: how a model needing a user host op nobody registered is refused when it is loaded."""
    missing = missing_kernels(ops)
    if not missing:
        return
    user = [op for op in missing if "::" in op]
    names = ", ".join(f"'{op}'" for op in missing)
    if user:
        raise HostOpError(f"the model needs host op(s) {names}, which this process has not registered: register "
                          f"the numpy implementation with @dlavm.host_op(\"{user[0]}\") before loading it "
                          f"(doc/host_ops.md)")
    raise HostOpError(f"the model needs host op(s) {names}, which have no numpy kernel in this dlavm "
                      f"(dlavm.runtime.host_kernels)")


def host_ops_of(manifest) -> set:
    """The ops of every host-fallback step of ``manifest`` (a ``dlavm.artifact.Manifest``)."""
    return {s.op for e in manifest.entries.values() for s in e.steps if isinstance(s, HostStep)}


def unsupported_attrs(op: str, attrs: dict) -> list[str]:
    """The attributes of a call of ``op`` its kernel does not honour, as ``"name=value (why)"``."""
    k = find_kernel(op)
    out = []
    for name, value in sorted(attrs.items()):
        want = k.attrs.get(name)
        if want is None:
            out.append(f"{name}={value!r} (the kernel ignores this attribute)")
        elif want is not ANY and value not in want:
            out.append(f"{name}={value!r} (the kernel supports {', '.join(map(repr, want))})")
    return out


def _compute_dtype(dtype):
    return np.float32 if np.dtype(dtype) == np.float16 else np.dtype(dtype)


def _promote(x, dtype):
    if not isinstance(x, np.ndarray):
        return x  # a Python scalar stays weak, as in torch
    return x.astype(_compute_dtype(dtype or x.dtype), copy=False)


# --- elementwise -----------------------------------------------------------------------------

def _erf(x):
    return np.vectorize(erf, otypes=[np.float64])(np.asarray(x, np.float64))


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _trunc_div(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        q = np.floor_divide(a, b)  # exact on integers; round towards zero where signs differ
        return q + ((np.remainder(a, b) != 0) & ((np.asarray(a) < 0) != (np.asarray(b) < 0)))
    return np.trunc(np.true_divide(a, b))


_DIV = {None: np.true_divide, "floor": np.floor_divide, "trunc": _trunc_div}


@host_kernel("div", promote=True, rounding_mode=tuple(_DIV))
def _div(args, a):
    return _DIV[a["rounding_mode"]](args[0], args[1])


@host_kernel("gelu", promote=True, approximate=("none", "tanh"))
def _gelu_kernel(args, a):
    return _gelu(args[0], a["approximate"])


_UNARY = {"neg": np.negative, "exp": np.exp, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
          "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0),
          "abs": np.abs, "log": np.log, "sin": np.sin, "cos": np.cos, "erf": _erf,
          "silu": lambda x: x / (1 + np.exp(-x)), "reciprocal": lambda x: 1 / x, "floor": np.floor,
          "ceil": np.ceil, "sign": lambda x: x if x.dtype == bool else np.sign(x), "bitwise_not": np.invert}
_ARITH = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
          "minimum": np.minimum, "pow": np.power, "floor_divide": np.floor_divide, "remainder": np.remainder,
          "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor}
_PREDICATE = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
              "eq": np.equal, "ne": np.not_equal, "logical_and": np.logical_and,
              "logical_or": np.logical_or, "logical_xor": np.logical_xor}

for _name, _f in _UNARY.items():
    host_kernel(_name, promote=True)(lambda args, a, _f=_f: _f(args[0]))
for _name, _f in _ARITH.items():
    host_kernel(_name, promote=True)(lambda args, a, _f=_f: _f(args[0], args[1]))
for _name, _f in _PREDICATE.items():
    host_kernel(_name)(lambda args, a, _f=_f: _f(args[0], args[1]))
host_kernel("logical_not")(lambda args, a: np.logical_not(args[0]))
host_kernel("where")(lambda args, a: np.where(args[0], args[1], args[2]))
host_kernel("clamp", promote=True, min=ANY, max=ANY)(lambda args, a: np.clip(args[0], a["min"], a["max"]))
host_kernel("cast", dtype=NUMPY_DTYPES)(lambda args, a: np.asarray(args[0]).astype(a["dtype"]))


# --- reductions and normalisations ---------------------------------------------------------------

_REDUCE = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "amax": np.max, "amin": np.min,
           "any": np.any, "all": np.all}
for _name, _f in _REDUCE.items():
    host_kernel(_name, promote=True, axes=ANY, keepdim=ANY, dtype=_OPT_DTYPES)(
        lambda args, a, _f=_f: _f(args[0], axis=tuple(a["axes"]) or None, keepdims=a["keepdim"]))


@host_kernel("cumsum", promote=True, axis=ANY, dtype=_NUMERIC_OPT_DTYPES)
def _cumsum(args, a):
    return np.cumsum(args[0], axis=a["axis"])


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@host_kernel("softmax", promote=True, axis=ANY)
def _softmax_kernel(args, a):
    return _softmax(np.asarray(args[0]), a["axis"])


@host_kernel("log_softmax", promote=True, axis=ANY)
def _log_softmax(args, a):
    x = np.asarray(args[0])
    m = x.max(axis=a["axis"], keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=a["axis"], keepdims=True))


@host_kernel("argmax", axis=ANY, keepdim=ANY)
def _argmax(args, a):
    return np.argmax(args[0], axis=a["axis"], keepdims=a["keepdim"])


def _norm(args, a, rms):
    x = np.asarray(args[0], np.float64)
    axes = tuple(range(x.ndim - a["ndim"], x.ndim))
    if rms:
        y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + a["eps"])
    else:
        mu = x.mean(axis=axes, keepdims=True)
        y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + a["eps"])
    if len(args) > 1:
        y = y * np.asarray(args[1], np.float64)
    if len(args) > 2:
        y = y + np.asarray(args[2], np.float64)
    return y


host_kernel("layer_norm", ndim=ANY, eps=ANY)(lambda args, a: _norm(args, a, rms=False))
host_kernel("rms_norm", ndim=ANY, eps=ANY)(lambda args, a: _norm(args, a, rms=True))


# --- matrix products, attention, convolution and pooling -------------------------------------

@host_kernel("linear")
def _linear(args, a):
    y = np.asarray(args[0], np.float64) @ np.asarray(args[1], np.float64).T
    return y + np.asarray(args[2], np.float64) if len(args) > 2 else y


@host_kernel("matmul")
def _matmul(args, a):
    return np.matmul(np.asarray(args[0], np.float64), np.asarray(args[1], np.float64))


@host_kernel("attention", causal=ANY, scale=ANY)
def _attention(args, a):
    """softmax(q k^T * scale + mask) v on [..., H, L, D]; GQA; causal aligned bottom-right (doc/ir.md)."""
    q, k, v = (np.asarray(t, np.float64) for t in args[:3])
    if q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    scale = 1 / np.sqrt(q.shape[-1]) if a["scale"] is None else a["scale"]
    s = q @ np.swapaxes(k, -1, -2) * scale
    lq, lk = s.shape[-2], s.shape[-1]
    if a["causal"]:
        s = np.where(np.arange(lk)[None, :] <= np.arange(lq)[:, None] + lk - lq, s, -np.inf)
    if len(args) > 3:
        m = np.asarray(args[3])
        s = np.where(m, s, -np.inf) if m.dtype == bool else s + m
    return _softmax(s, -1) @ v


@host_kernel("conv2d", stride=ANY, padding=ANY, dilation=ANY, groups=ANY)
def _conv2d(args, a):
    x, w = np.asarray(args[0], np.float64), np.asarray(args[1], np.float64)
    (sh, sw), (ph, pw), (dh, dw), g = a["stride"], a["padding"], a["dilation"], a["groups"]
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hh, ww = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = (hh - dh * (kh - 1) - 1) // sh + 1, (ww - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // g
    for gi in range(g):
        xs = x[:, gi * cg:(gi + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[gi * og:(gi + 1) * og, :, i, j])
    if len(args) > 2:
        out += np.asarray(args[2], np.float64)[None, :, None, None]
    return out


@host_kernel("im2col", kernel=ANY, stride=ANY, padding=ANY, dilation=ANY)
def _im2col(args, a):
    """Pure data movement (bit-exact): the tap (i, j) of every output pixel, zero outside the input."""
    x = np.asarray(args[0])
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise HostOpError(f"im2col: a {kh}x{kw} kernel (dilation {(dh, dw)}) does not fit the padded "
                          f"{h}x{w} input (padding {(ph, pw)})")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, oh, ow, c, kh, kw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            cols[:, :, :, :, i, j] = tap.transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw)


def _pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output length: with ``ceil_mode`` the last window must start inside the
    input or its left padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _windows(x, a, fill):
    """Every window of the pooling as a list of [N, C, OH, OW] arrays, padded with ``fill``."""
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    oh = _pool_out_size(x.shape[2], kh, sh, ph, dh, a["ceil_mode"])
    ow = _pool_out_size(x.shape[3], kw, sw, pw, dw, a["ceil_mode"])
    need_h, need_w = (oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, max(ph, need_h - x.shape[2] - ph)),
                    (pw, max(pw, need_w - x.shape[3] - pw))), constant_values=fill)
    wins = [xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    return wins, oh, ow


@host_kernel("max_pool2d", kernel=ANY, stride=ANY, padding=ANY, dilation=ANY, ceil_mode=ANY)
def _max_pool2d(args, a):
    x = np.asarray(args[0])
    fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    wins, _, _ = _windows(x, a, fill)
    return np.max(np.stack(wins), axis=0)


def _avg_divisor(size, out, kernel, stride, pad, include_pad):
    """Per output position, the element count torch divides a window's sum by."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)  # windows are clipped to the padded input
    full = end - start
    valid = np.minimum(end, size) - np.maximum(start, 0)
    return full if include_pad else valid


@host_kernel("avg_pool2d", kernel=ANY, stride=ANY, padding=ANY, ceil_mode=ANY, count_include_pad=ANY)
def _avg_pool2d(args, a):
    x = np.asarray(args[0], np.float64)
    wins, oh, ow = _windows(x, a, 0.0)
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dv_h = _avg_divisor(x.shape[2], oh, kh, sh, ph, a["count_include_pad"])
    dv_w = _avg_divisor(x.shape[3], ow, kw, sw, pw, a["count_include_pad"])
    return np.sum(np.stack(wins), axis=0) / (dv_h[:, None] * dv_w[None, :])


# --- data movement, indexing and creation ----------------------------------------------------

@host_kernel("slice", axis=ANY, start=ANY, end=ANY, step=ANY)
def _slice(args, a):
    x = np.asarray(args[0])
    idx = [slice(None)] * x.ndim
    idx[a["axis"]] = slice(a["start"], a["end"], a["step"])
    return x[tuple(idx)]


@host_kernel("index", axes=ANY)
def _index(args, a):
    x = np.asarray(args[0])
    idx: list = [slice(None)] * x.ndim
    for ax, t in zip(a["axes"], args[1:]):
        idx[ax] = np.asarray(t).astype(np.int64)
    return x[tuple(idx)]


@host_kernel("gather", axis=ANY)
def _gather(args, a):
    x, i = np.asarray(args[0]), np.asarray(args[1]).astype(np.int64)
    ax = a["axis"] % x.ndim
    # torch lets indices be smaller than x outside ``axis``: only that corner of x is read
    x = x[tuple(slice(None) if d == ax else slice(0, n) for d, n in enumerate(i.shape))]
    return np.take_along_axis(x, i, axis=ax)


@host_kernel("argsort", axis=ANY, descending=ANY)
def _argsort(args, a):
    x, ax = np.asarray(args[0]), a["axis"]
    if not a["descending"]:
        return np.argsort(x, axis=ax, kind="stable")
    # descending and stable: sort the reversed row ascending (ties then come last-first), reverse the
    # order and map the positions back, so equal values keep their input order; NaN comes first as in torch
    n = x.shape[ax]
    return np.flip(n - 1 - np.argsort(np.flip(x, ax), axis=ax, kind="stable"), ax)


host_kernel("embedding")(lambda args, a: np.asarray(args[0])[np.asarray(args[1]).astype(np.int64)])
host_kernel("reshape", shape=ANY)(lambda args, a: np.reshape(args[0], tuple(a["shape"])))
host_kernel("permute", dims=ANY)(lambda args, a: np.transpose(args[0], tuple(a["dims"])))
host_kernel("expand", shape=ANY)(lambda args, a: np.broadcast_to(args[0], tuple(a["shape"])).copy())
host_kernel("concat", axis=ANY)(lambda args, a: np.concatenate([np.asarray(x) for x in args], axis=a["axis"]))
host_kernel("take", axis=ANY)(
    lambda args, a: np.take(args[0], np.asarray(args[1]).astype(np.int64), axis=a["axis"]))
host_kernel("arange", start=ANY, end=ANY, step=ANY, dtype=_NUMERIC_OPT_DTYPES[1:])(
    lambda args, a: np.arange(a["start"], a["end"], a["step"], dtype=a["dtype"]))
host_kernel("full", shape=ANY, value=ANY, dtype=NUMPY_DTYPES)(
    lambda args, a: np.full(tuple(a["shape"]), a["value"], dtype=a["dtype"]))
host_kernel("shape_value", value=ANY, dtype=NUMPY_DTYPES)(lambda args, a: np.asarray(a["value"], dtype=a["dtype"]))


def run_host_op(op: str, args: list, attrs: dict, dtype: str | None = None):
    """Result of host op ``op`` (numpy) as ``dtype`` (the graph's result dtype, when given).

    Raises :class:`HostOpError` if the op has no kernel, carries an attribute
    value its kernel does not honour, has a dtype numpy cannot hold, or fails.
    """
    kernel = find_kernel(op)
    if kernel is None:
        if "::" in op:
            raise HostOpError(f"host op '{op}' is not registered in this process: register its numpy "
                              f"implementation with @dlavm.host_op(\"{op}\") before loading the model")
        raise HostOpError(f"host-fallback op '{op}' has no numpy kernel in dlavm.runtime.host_kernels; "
                          f"supported: {sorted(KERNELS)}")
    bad = unsupported_attrs(op, attrs)
    if bad:
        raise HostOpError(f"host op '{op}': the numpy kernel does not honour {'; '.join(bad)}")
    if dtype is not None and dtype not in NUMPY_DTYPES:
        raise HostOpError(f"host op '{op}': result dtype {dtype} has no numpy equivalent")
    try:
        if kernel.promote:
            args = [_promote(x, dtype) for x in args]
        with np.errstate(all="ignore"):  # inf/nan follow IEEE as in torch
            out = np.asarray(kernel.fn(args, attrs))
        return out.astype(dtype, copy=False) if dtype else out
    except Exception as e:  # numpy's message names the shapes
        raise HostOpError(f"host op '{op}' failed: {e}") from e


__all__ = ["ANY", "HostKernel", "HostOpError", "KERNELS", "NUMPY_DTYPES", "find_kernel", "host_kernel",
           "host_ops_of", "missing_kernels", "require_kernels", "run_host_op", "unsupported_attrs"]
