"""Numpy kernels for host-fallback ops (ops the device does not run).

``run_host_op(op, args, attrs)`` computes one op; ``args`` are numpy arrays
or Python scalars, ``attrs`` have their symbolic values already evaluated.
Semantics follow doc/ir.md; an op without a kernel raises
:class:`HostOpError` naming it. Needs numpy only.
"""
from __future__ import annotations

import numpy as np


class HostOpError(RuntimeError):
    """A host-fallback op has no numpy kernel, or its inputs are invalid."""


def _softmax(x, axis):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _slice(x, a):
    idx = [slice(None)] * x.ndim
    idx[a["axis"]] = slice(a["start"], a["end"], a.get("step", 1))
    return x[tuple(idx)]


def _conv2d(args, a):
    x, w = np.asarray(args[0], np.float32), np.asarray(args[1], np.float32)
    (sh, sw), (ph, pw), (dh, dw), g = a["stride"], a["padding"], a["dilation"], a["groups"]
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, hh, ww = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = (hh - dh * (kh - 1) - 1) // sh + 1, (ww - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), np.float32)
    og = o // g
    for gi in range(g):
        xs = x[:, gi * cg:(gi + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[gi * og:(gi + 1) * og, :, i, j])
    if len(args) > 2:
        out += np.asarray(args[2], np.float32)[None, :, None, None]
    return out


def _pool2d(args, a, kind):
    x = np.asarray(args[0], np.float32)
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    hh, ww = xp.shape[2], xp.shape[3]
    div = (lambda p, q: -(-p // q)) if a.get("ceil_mode") else (lambda p, q: p // q)
    oh, ow = div(x.shape[2] + 2 * ph - dh * (kh - 1) - 1, sh) + 1, div(x.shape[3] + 2 * pw - dw * (kw - 1) - 1, sw) + 1
    need_h, need_w = (oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1
    xp = np.pad(xp, ((0, 0), (0, 0), (0, max(0, need_h - hh)), (0, max(0, need_w - ww))), constant_values=fill)
    wins = [xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    if kind == "max":
        return np.max(np.stack(wins), axis=0)
    return np.mean(np.stack(wins), axis=0)


def _norm(args, a, rms):
    x = np.asarray(args[0], np.float64)
    axes = tuple(range(x.ndim - a.get("ndim", 1), x.ndim))
    if rms:
        y = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + a.get("eps", 1e-5))
    else:
        mu = x.mean(axis=axes, keepdims=True)
        y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + a.get("eps", 1e-5))
    if len(args) > 1:
        y = y * np.asarray(args[1], np.float64)
    if len(args) > 2:
        y = y + np.asarray(args[2], np.float64)
    return y


def _attention(args, a):
    """softmax(q k^T * scale + mask) v on [..., H, L, D]; GQA; causal aligned bottom-right (doc/ir.md)."""
    q, k, v = (np.asarray(t, np.float64) for t in args[:3])
    h, hk = q.shape[-3], k.shape[-3]
    if hk != h:
        k, v = np.repeat(k, h // hk, axis=-3), np.repeat(v, h // hk, axis=-3)
    scale = a.get("scale")
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    lq, lk = s.shape[-2], s.shape[-1]
    if a.get("causal"):
        s = np.where(np.arange(lk)[None, :] <= np.arange(lq)[:, None] + lk - lq, s, -np.inf)
    if len(args) > 3:
        m = np.asarray(args[3])
        s = np.where(m, s, -np.inf) if m.dtype == bool else s + m
    return _softmax(s, -1) @ v


def _reduce(fn):
    return lambda args, a: fn(np.asarray(args[0]), axis=tuple(a["axes"]) or None, keepdims=a.get("keepdim", False))


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(np.asarray(x, np.float64))


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
           "minimum": np.minimum, "pow": np.power, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}
_UNARY = {"neg": np.negative, "exp": np.exp, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
          "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0),
          "abs": np.abs, "log": np.log, "sin": np.sin, "cos": np.cos, "logical_not": np.logical_not}

KERNELS = {
    "embedding": lambda args, a: np.asarray(args[0])[np.asarray(args[1]).astype(np.int64)],
    "reshape": lambda args, a: np.reshape(args[0], tuple(a["shape"])),
    "permute": lambda args, a: np.transpose(args[0], tuple(a["dims"])),
    "expand": lambda args, a: np.broadcast_to(args[0], tuple(a["shape"])).copy(),
    "cast": lambda args, a: np.asarray(args[0]).astype(a["dtype"]),
    "slice": lambda args, a: _slice(np.asarray(args[0]), a),
    "concat": lambda args, a: np.concatenate([np.asarray(x) for x in args], axis=a["axis"]),
    "take": lambda args, a: np.take(args[0], np.asarray(args[1]).astype(np.int64), axis=a["axis"]),
    "argmax": lambda args, a: np.argmax(args[0], axis=a["axis"], keepdims=a.get("keepdim", False)),
    "softmax": lambda args, a: _softmax(args[0], a["axis"]).astype(np.asarray(args[0]).dtype),
    "div": lambda args, a: np.divide(args[0], args[1]),
    "conv2d": _conv2d,
    "attention": _attention,
    "max_pool2d": lambda args, a: _pool2d(args, a, "max"),
    "avg_pool2d": lambda args, a: _pool2d(args, a, "avg"),
    "layer_norm": lambda args, a: _norm(args, a, rms=False),
    "rms_norm": lambda args, a: _norm(args, a, rms=True),
    "linear": lambda args, a: np.asarray(args[0]) @ np.asarray(args[1]).T + (args[2] if len(args) > 2 else 0),
    "matmul": lambda args, a: np.matmul(args[0], args[1]),
    "sum": _reduce(np.sum), "mean": _reduce(np.mean), "amax": _reduce(np.max), "amin": _reduce(np.min),
    "erf": lambda args, a: _erf(args[0]),
    "gelu": lambda args, a: 0.5 * np.asarray(args[0]) * (1 + _erf(np.asarray(args[0]) / np.sqrt(2))),
    "silu": lambda args, a: np.asarray(args[0]) / (1 + np.exp(-np.asarray(args[0]))),
    "reciprocal": lambda args, a: 1 / np.asarray(args[0]),
    "arange": lambda args, a: np.arange(a["start"], a["end"], a.get("step", 1), dtype=a.get("dtype", "int64")),
    "full": lambda args, a: np.full(tuple(a["shape"]), a["value"], dtype=a["dtype"]),
    "shape_value": lambda args, a: np.asarray(a["value"], dtype=a.get("dtype", "int64")),
    "where": lambda args, a: np.where(args[0], args[1], args[2]),
    "clamp": lambda args, a: np.clip(args[0], a.get("min"), a.get("max")),
}
KERNELS.update({k: (lambda f: lambda args, a: f(args[0], args[1]))(f) for k, f in _BINARY.items()})
KERNELS.update({k: (lambda f: lambda args, a: f(args[0]))(f) for k, f in _UNARY.items()})


def run_host_op(op: str, args: list, attrs: dict, dtype: str | None = None):
    """Result of host op ``op`` (numpy) as ``dtype`` (the graph's result dtype, when given).

    Raises :class:`HostOpError` if the op has no kernel or fails.
    """
    fn = KERNELS.get(op)
    if fn is None:
        raise HostOpError(f"host-fallback op '{op}' has no numpy kernel in dlavm.runtime.host_kernels; "
                          f"supported: {sorted(KERNELS)}")
    try:
        out = np.asarray(fn(args, attrs))
        return out.astype(dtype, copy=False) if dtype and dtype != "bfloat16" else out
    except Exception as e:  # numpy's message names the shapes
        raise HostOpError(f"host op '{op}' failed: {e}") from e


__all__ = ["HostOpError", "run_host_op", "KERNELS"]
