"""Reference implementations of doc/isa.md numerics, written from the document.

Deliberately coded differently from hw_models/numerics.py (explicit loops over
groups/levels, np.dot per group) so agreement is evidence, not tautology.
"""
from __future__ import annotations

import numpy as np

F16, F32, F64 = np.float16, np.float32, np.float64


def tree_sum(p: np.ndarray, lanes: int = 128) -> np.ndarray:
    """doc/isa.md 'Reduction trees': ``lanes``-lane binary trees (target field tree_lanes), blocks summed in order."""
    p = np.asarray(p, dtype=F32)
    k = p.shape[-1]
    nb = max(1, -(-k // lanes))
    padded = np.zeros(p.shape[:-1] + (nb * lanes,), dtype=F32)
    padded[..., :k] = p
    blocks = padded.reshape(p.shape[:-1] + (nb, lanes))
    for _ in range(lanes.bit_length() - 1):
        blocks = blocks.reshape(blocks.shape[:-1] + (-1, 2)).sum(axis=-1, dtype=F32)
    acc = np.zeros(p.shape[:-1], dtype=F32)
    for b in range(nb):
        acc = (acc + blocks[..., b, 0]).astype(F32)
    return acc


def dot_f16(a: np.ndarray, b: np.ndarray, lanes: int = 128) -> np.ndarray:
    """[.., M, K] x [.., N, K] -> fp32 [.., M, N]: exact fp32 products, tree sum."""
    prod = a.astype(F32)[..., :, None, :] * b.astype(F32)[..., None, :, :]
    return tree_sum(prod, lanes)


def mvm_acc(fmt: str, x: np.ndarray, q: np.ndarray, scales, group: int, int8_block: int = 64,
            lanes: int = 128) -> np.ndarray:
    """fp32 [M, N] MVM accumulator for unpacked weights q [N, K] (group, int8_block, lanes: target fields)."""
    m, k = x.shape
    n = q.shape[0]
    if fmt == "fp16":
        return dot_f16(x, q, lanes)
    blk = group if fmt == "int4" else int8_block
    acc = np.zeros((m, n), dtype=F32)
    for g0 in range(0, k, blk):
        xs = x[:, g0:g0 + blk].astype(F64)
        qs = q[:, g0:g0 + blk].astype(F64)
        d = np.array([[np.dot(xs[i], qs[j]) for j in range(n)] for i in range(m)], dtype=F64).astype(F32)
        if fmt == "int4":
            d = (d * scales[:, g0 // group].astype(F32)[None, :]).astype(F32)
        acc = (acc + d).astype(F32)
    if fmt == "int8":
        acc = (acc * scales.astype(F32)[None, :]).astype(F32)
    return acc


def pwl(x: np.ndarray, entries: np.ndarray, nseg: int, lo: float, inv_step: float) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    t = ((x - F32(lo)).astype(F32) * F32(inv_step)).astype(F32)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        tv = t[idx]
        e = 0 if tv < 0 else (nseg + 1 if not tv < nseg else 1 + int(np.floor(tv)))
        if entries[e, 0] == 0 and np.isinf(x[idx]):
            out[idx] = entries[e, 1]          # a flat entry is a constant, also at +-inf
        else:
            with np.errstate(invalid="ignore"):
                out[idx] = F32(F32(entries[e, 0] * x[idx]) + entries[e, 1])
    return out
