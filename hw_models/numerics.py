"""Exact, vectorised implementations of the arithmetic doc/isa.md defines.

Each function reproduces the ISA's rounding points bit for bit; the
docstrings give the argument for why a numpy formulation is exact.
Nothing here loops over elements in Python: loops run over reduction
blocks (at most K/block iterations) with whole-array bodies.

The block sizes are target fields (``tree_lanes``, ``int4_group``,
``int8_block``; doc/targets.md), passed in by the units; the target refuses
on load a value for which the exactness arguments below would fail.
"""
from __future__ import annotations

import numpy as np

#: Bound on elements of an intermediate array; larger problems are chunked.
CHUNK_ELEMS = 1 << 22

F16, F32, F64 = np.float16, np.float32, np.float64


def tree_sum(p: np.ndarray, lanes: int) -> np.ndarray:
    """fp32 sum over the last axis in the ISA's order.

    The axis is cut into blocks of ``lanes`` (a power of two; the last block
    zero-padded);
    each block is summed by a binary tree (level i adds lanes 2j and 2j+1,
    each add rounded to fp32); block sums are added left to right into an
    fp32 accumulator that starts at +0.
    """
    p = np.asarray(p, dtype=F32)
    k = p.shape[-1]
    nblk = max(1, -(-k // lanes))
    if k != nblk * lanes:
        pad = np.zeros(p.shape[:-1] + (nblk * lanes - k,), dtype=F32)
        p = np.concatenate([p, pad], axis=-1)
    p = p.reshape(p.shape[:-1] + (nblk, lanes))
    while p.shape[-1] > 1:
        p = p[..., 0::2] + p[..., 1::2]
    blocks = p[..., 0]
    acc = np.zeros(blocks.shape[:-1], dtype=F32)
    for b in range(nblk):
        acc = acc + blocks[..., b]
    return acc


def dot_f16(a: np.ndarray, b: np.ndarray, lanes: int) -> np.ndarray:
    """fp32 [..., M, N] = a [..., M, K] . b [..., N, K]^T for fp16 inputs.

    Exactness: a product of two fp16 values has at most 22 significant bits
    and magnitude in [2**-48, 2**32], so it is exact in fp32; the only
    roundings are the adds of :func:`tree_sum`, which this reproduces.
    """
    a32 = np.asarray(a, dtype=F16).astype(F32)
    b32 = np.asarray(b, dtype=F16).astype(F32)
    m, k = a32.shape[-2:]
    n = b32.shape[-2]
    batch = a32.shape[:-2]
    out = np.empty(batch + (m, n), dtype=F32)
    per_col = max(1, int(np.prod(batch, dtype=np.int64)) * m * min(k, lanes))
    step = max(1, CHUNK_ELEMS // per_col)
    for c0 in range(0, n, step):
        bb = b32[..., c0:c0 + step, :]
        acc = np.zeros(batch + (m, bb.shape[-2]), dtype=F32)
        for k0 in range(0, max(k, 1), lanes):
            prod = a32[..., :, None, k0:k0 + lanes] * bb[..., None, :, k0:k0 + lanes]
            acc = acc + tree_sum(prod, lanes)
        out[..., c0:c0 + step] = acc
    return out


def grouped_dot_exact(x: np.ndarray, q: np.ndarray, group: int, scales: np.ndarray | None) -> np.ndarray:
    """fp32 [M, N]: sum over groups g (in order) of fp32(fp32(D_g) * s[n, g]).

    ``x`` fp16 [M, Kp], ``q`` integer weights [N, Kp] (Kp a multiple of
    ``group``), ``scales`` fp16 [N, G] or None (then no per-group scale).
    D_g, the group's dot product, is computed in float64 and is exact: each
    fp16 x int8 product is a multiple of 2**-24 below 2**23 in magnitude (an
    int4 product below 2**19), so a block of B int8 products needs at most
    47 + log2(B) bits and a group of G int4 products 43 + log2(G) bits; the
    target schema refuses B > 64 and G > 1024, so both stay within float64's
    53. Exact partial sums make the BLAS summation order irrelevant.
    """
    m, kp = x.shape
    n = q.shape[0]
    ng = kp // group
    xg = x.astype(F64).reshape(m, ng, group).transpose(1, 0, 2)          # [G, M, group]
    out = np.empty((m, n), dtype=F32)
    step = max(1, CHUNK_ELEMS // max(1, ng * m, kp))     # bounds both d and the float64 weights
    for c0 in range(0, n, step):
        qc = q[c0:c0 + step].astype(F64)
        nc = qc.shape[0]
        qg = qc.reshape(nc, ng, group).transpose(1, 2, 0)                 # [G, group, Nc]
        d = np.matmul(xg, qg).astype(F32)                                  # [G, M, Nc], one rounding
        if scales is not None:
            d = d * scales[c0:c0 + step].astype(F32).T[:, None, :]
        acc = np.zeros((m, nc), dtype=F32)
        for g in range(ng):
            acc = acc + d[g]
        out[:, c0:c0 + step] = acc
    return out


def unpack_int4(packed: np.ndarray, kp: int) -> np.ndarray:
    """int8 [N, Kp] from packed nibbles (element 2j = low nibble of byte j)."""
    n = packed.shape[0]
    full = np.empty((n, kp), dtype=np.int8)
    full[:, 0::2] = (packed & 0x0F).astype(np.int8)
    full[:, 1::2] = (packed >> 4).astype(np.int8)
    full -= (full >= 8).astype(np.int8) * 16
    return full


def pwl_eval(x: np.ndarray, entries: np.ndarray, nseg: int, lo: float, inv_step: float) -> np.ndarray:
    """fp32 piecewise-linear evaluation (doc/isa.md, "Piecewise-linear tables").

    t = fp32(fp32(x - lo) * inv_step); entry 0 if t < 0, entry nseg+1 if
    t >= nseg (or t is NaN), else entry 1 + floor(t); y = fp32(fp32(slope*x) + icpt), except that an
    infinite x in an entry of slope 0 gives icpt (a flat exterior entry is a constant, so exp(-inf) = 0).
    """
    x = np.asarray(x, dtype=F32)
    t = (x - F32(lo)) * F32(inv_step)
    idx = np.full(x.shape, nseg + 1, dtype=np.int64)
    inside = (t >= 0) & (t < nseg)
    idx[inside] = 1 + np.floor(t[inside]).astype(np.int64)
    idx[t < 0] = 0
    slope = entries[idx, 0].astype(F32)
    icpt = entries[idx, 1].astype(F32)
    with np.errstate(invalid="ignore"):
        y = (slope * x) + icpt
    flat_inf = (slope == 0) & np.isinf(x)
    return np.where(flat_inf, icpt, y)
