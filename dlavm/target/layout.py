"""Tensor layouts the ISA defines in device memory, and the quantizers that fill them.

These are data conventions shared by the compiler (which packs weights) and
by tests; the simulator decodes the same layouts from doc/isa.md on its own.

* fp16 / fp32 tensors: row-major, little-endian, contiguous.
* int4 weights ``[N, K]``: each row padded with zeros to ``Kp = ceil(K/G)*G``
  elements, two's-complement nibbles, element ``2j`` in the low nibble of
  byte ``j``; scales fp16 ``[N, Kp/G]``.
* int8 weights ``[N, K]``: row-major int8; scales fp16 ``[N]``.
"""
from __future__ import annotations

import numpy as np


def padded_k(k: int, group: int) -> int:
    """Row length (elements) of an int4 weight row: K rounded up to the group size."""
    return -(-k // group) * group


def pack_int4(q: np.ndarray, group: int) -> np.ndarray:
    """Pack int values in [-8, 7] of shape [N, K] into uint8 [N, Kp/2] (layout above)."""
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"int4 weights must be 2-D [N, K], got shape {q.shape}")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError("int4 values must lie in [-8, 7]")
    n, k = q.shape
    kp = padded_k(k, group)
    full = np.zeros((n, kp), dtype=np.uint8)
    full[:, :k] = q.astype(np.int8).view(np.uint8) & 0x0F
    return (full[:, 0::2] | (full[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: int8 [N, K]."""
    lo = (packed & 0x0F).astype(np.int8)
    hi = (packed >> 4).astype(np.int8)
    full = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int8)
    full[:, 0::2], full[:, 1::2] = lo, hi
    full = np.where(full >= 8, full - 16, full).astype(np.int8)
    return full[:, :k]


def quantize_int4(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 quantization: (q int8 [N,K] in [-8,7], scales fp16 [N, Kp/G]).

    scale = fp16(max|w| over the group / 7) (1 for an all-zero group); q = clip(round(w/scale)).
    """
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    kp = padded_k(k, group)
    wp = np.zeros((n, kp), dtype=np.float32)
    wp[:, :k] = w
    g = wp.reshape(n, kp // group, group)
    scale = (np.abs(g).max(axis=2) / 7.0).astype(np.float16)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(g / scale.astype(np.float32)[:, :, None]), -8, 7).astype(np.int8)
    return q.reshape(n, kp)[:, :k], scale


def quantize_pack_int4(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pack_int4(q), scales)`` for ``q, scales = quantize_int4(w, group)``: the same
    bytes in fewer passes over the data (no padding copy when K is a multiple of the
    group, rounding and clipping in place, nibbles packed straight from the int8
    view). The weight-packing path of the compiler; see bench/weight_pack.py."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"int4 weights must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    kp = padded_k(k, group)
    if kp != k:
        wp = np.zeros((n, kp), dtype=np.float32)
        wp[:, :k] = w
        w = wp
    g = w.reshape(n, kp // group, group)
    scale = (np.abs(g).max(axis=2) / np.float32(7.0)).astype(np.float16)
    scale[scale == 0] = 1.0
    q = np.divide(g, scale.astype(np.float32)[:, :, None])
    np.rint(q, out=q)
    np.clip(q, -8, 7, out=q)
    u = q.astype(np.int8).view(np.uint8).reshape(n, kp)
    return ((u[:, 0::2] & 0x0F) | (u[:, 1::2] << 4)).astype(np.uint8), scale


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: (q int8 [N,K] in [-127,127], scales fp16 [N])."""
    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float16)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale.astype(np.float32)[:, None]), -127, 127).astype(np.int8)
    return q, scale


def weight_bytes(fmt: str, n: int, k: int, group: int) -> tuple[int, int]:
    """(weight bytes, scale bytes) of an [N, K] weight in format ``fmt``."""
    if fmt == "int4":
        kp = padded_k(k, group)
        return n * kp // 2, n * (kp // group) * 2
    if fmt == "int8":
        return n * k, n * 2
    if fmt == "fp16":
        return n * k * 2, 0
    raise ValueError(f"unknown weight format {fmt!r}")
