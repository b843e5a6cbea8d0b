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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Bound on elements of an intermediate array; larger problems are chunked.
CHUNK_ELEMS = 1 << 22

#: Output columns per block of :class:`GroupedWeights` (a block's float32 weights stay in cache
#: while every split of x and every row of a chunk of rows is multiplied by them).
WEIGHT_BLOCK_COLS = 128

#: numpy's matmul releases the GIL only for more than 500 (block, group) products in one call
_GIL_FREE_MATMULS = 501

#: Worker threads of :func:`grouped_dot_split` (its work items are independent).
SPLIT_THREADS = max(1, min(8, os.cpu_count() or 1))

#: Largest |q| of an int4 and of an int8 weight.
INT4_MAX, INT8_MAX = 8, 128

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


@dataclass(frozen=True, eq=False)
class GroupedWeights:
    """Integer weights [N, Kp] laid out for :func:`grouped_dot_split`.

    ``data`` is float32 [B, G, group, nb] (exact: |q| <= ``qmax`` <= 128): ``data[b, g]`` is the
    transpose of rows ``b*nb .. b*nb+nb-1`` (zero rows past N), columns ``g*group .. g*group+group-1``.
    Built once per weight and kept (see ``DeviceMemory.derived``); :meth:`ints` gives q back.
    """

    data: np.ndarray
    n: int
    group: int
    qmax: int

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def ints(self) -> np.ndarray:
        """The integer weights, int16 [N, Kp]."""
        nblk, ng, group, nb = self.data.shape
        return self.data.transpose(0, 3, 1, 2).reshape(nblk * nb, ng * group)[: self.n].astype(np.int16)


def group_weights(q: np.ndarray, group: int, qmax: int, block: int = WEIGHT_BLOCK_COLS) -> GroupedWeights:
    """:class:`GroupedWeights` of integer weights ``q`` [N, Kp] (Kp a multiple of ``group``, |q| <= qmax)."""
    n, kp = q.shape
    nb, nblk = _blocks(n, block)
    data = np.empty((nblk, kp // group, group, nb), dtype=F32)
    for b in range(nblk):            # a block at a time: its rows stay in cache while transposed
        rows = q[b * nb:(b + 1) * nb]
        dst = data[b].reshape(kp, nb)
        dst[:, : rows.shape[0]] = rows.T
        dst[:, rows.shape[0]:] = 0
    return GroupedWeights(data, n, group, qmax)


def group_int4_weights(packed: np.ndarray, kp: int, group: int, block: int = WEIGHT_BLOCK_COLS) -> GroupedWeights:
    """:class:`GroupedWeights` of int4 weights packed two per byte, uint8 [N, Kp/2] (element 2j is the
    low nibble of byte j, two's complement), unpacked a block at a time."""
    n = packed.shape[0]
    nb, nblk = _blocks(n, block)
    data = np.empty((nblk, kp // group, group, nb), dtype=F32)
    for b in range(nblk):
        pk = packed[b * nb:(b + 1) * nb]
        r = pk.shape[0]
        dst = data[b].reshape(kp // 2, 2, nb)            # [byte j, nibble, row]
        # (v ^ 8) - 8 maps the nibble v in [0, 16) to v - 16 * (v >= 8), in uint8 then int8 arithmetic
        dst[:, 0, :r] = (((pk & np.uint8(0x0F)) ^ np.uint8(8)).view(np.int8) - np.int8(8)).T
        dst[:, 1, :r] = (((pk >> np.uint8(4)) ^ np.uint8(8)).view(np.int8) - np.int8(8)).T
        dst[:, :, r:] = 0
    return GroupedWeights(data, n, group, INT4_MAX)


def _blocks(n: int, block: int) -> tuple[int, int]:
    """(columns per block, blocks) of a GroupedWeights with n rows."""
    nb = max(1, min(block, n))
    return nb, -(-n // nb)


def split_bits(group: int, qmax: int) -> int:
    """Bits of x per split in :func:`grouped_dot_split`: the largest b with (2**b - 1) * qmax * group
    <= 2**24, so that a group's dot product of one split is an integer (in units of the split's
    lowest bit) below 2**24 in magnitude, exact in fp32."""
    return 24 - (qmax * group - 1).bit_length()


def split_fp16(x: np.ndarray, bits: int) -> list[np.ndarray]:
    """fp16 ``x`` as exact float32 pieces ``x = p[0] + p[1] + ...`` (the sum exact in float64).

    x is an integer multiple X of 2**-24 with |X| < 2**40; piece i is sign(X) * (bits [i*b, (i+1)*b)
    of |X|) * 2**-24, an integer below 2**b in units of 2**(i*b - 24): exact in float32 (normal,
    at most b significant bits). ``x`` must be finite.
    """
    xx = np.asarray(x, dtype=F16).astype(F64) * F64(2.0 ** 24)
    mag = np.abs(xx).astype(np.int64)
    neg = xx < 0
    mask = (1 << bits) - 1
    pieces = []
    for lo in range(0, 40, bits):
        p = ((mag >> lo) & mask).astype(F32) * F32(2.0 ** (lo - 24))
        pieces.append(np.where(neg, -p, p))
    return pieces


def grouped_dot_split(x: np.ndarray, w: GroupedWeights, scales: np.ndarray | None) -> np.ndarray:
    """The result of :func:`grouped_dot_exact` (bit for bit) for weights laid out by :func:`group_weights`.

    Why fp32 BLAS is exact here: x is split into S pieces (:func:`split_fp16`, b = :func:`split_bits`
    bits each). For one piece, every product x_piece * q is an integer multiple of the piece's unit
    with magnitude <= (2**b - 1) * qmax, so every partial sum of a group, in any order and with or
    without FMA, is such a multiple below 2**24 in magnitude: exact in fp32. The group's dot product
    D_g is then the float64 sum of the S piece results: all of them multiples of 2**-24 whose partial
    sums stay below sum |x_k| |q_k| * 2**24 < 2**53 (the bound of :func:`grouped_dot_exact`), so it is
    exact too, and it is rounded once to fp32. Pieces that are zero for every x are skipped (activations
    below 16 in magnitude need no top piece). Rows with a non-finite x go through
    :func:`grouped_dot_exact` (inf and NaN have no fixed-point split).
    """
    x = np.asarray(x, dtype=F16)
    m, kp = x.shape
    nblk, ng, group, nb = w.data.shape
    n = w.n
    out = np.empty((m, n), dtype=F32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        out[bad] = grouped_dot_exact(x[bad], w.ints(), group, scales)
        good = np.flatnonzero(~bad)
        if good.size:
            out[good] = grouped_dot_split(x[good], w, scales)
        return out
    # a piece that is zero everywhere adds only (signed) zeros to D: left out, it changes no result
    # (acc starts at +0, and +0 + -0 = +0), and the matmul has a row per piece and row of x fewer
    pieces = [p for p in split_fp16(x, split_bits(group, w.qmax)) if p.any()] or [np.zeros((m, kp), F32)]
    ns = len(pieces)
    xs = np.ascontiguousarray(np.stack(pieces).reshape(ns, m, ng, group).transpose(2, 0, 1, 3))  # [G, S, M, group]
    s32 = None
    if scales is not None:
        s32 = np.zeros((nblk, ng, 1, nb), dtype=F32)                              # [B, G, 1, nb]
        full = n // nb
        s32[:full, :, 0] = scales[: full * nb].reshape(full, nb, ng).transpose(0, 2, 1)
        if full < nblk:
            s32[full, :, 0, : n - full * nb] = scales[full * nb:].T
    # work items: a run of blocks x a run of rows, each intermediate within CHUNK_ELEMS, each one
    # matmul call of enough (block, group) products that numpy releases the GIL in it, a few items
    # per worker thread where there are blocks enough (so that a thread the OS delays does not hold
    # the others up); items write disjoint outputs
    rows = max(1, min(m, CHUNK_ELEMS // (ng * ns * nb)))
    per_item = max(-(-_GIL_FREE_MATMULS // ng), -(-nblk // (4 * SPLIT_THREADS)))
    per_item = max(1, min(per_item, -(-nblk // SPLIT_THREADS), CHUNK_ELEMS // (ng * ns * rows * nb)))
    items = [(b0, min(nblk, b0 + per_item), r0, min(m, r0 + rows))
             for b0 in range(0, nblk, per_item) for r0 in range(0, m, rows)]

    def run(item):
        b0, b1, r0, r1 = item
        mr = r1 - r0
        xr = xs[:, :, r0:r1].reshape(ng, ns * mr, group)          # row s*mr + r: piece s of x row r0 + r
        part = np.empty((b1 - b0, ng, ns * mr, nb), dtype=F32)
        np.matmul(xr, w.data[b0:b1], out=part)                   # [b, G, S*mr, group] x [b, G, group, nb]
        part = part.reshape(b1 - b0, ng, ns, mr, nb)
        d = part[:, :, ns - 1].astype(F64)
        for s in range(ns - 2, -1, -1):
            d += part[:, :, s]
        d = d.astype(F32)                                                        # [b, G, mr, nb]
        if s32 is not None:
            np.multiply(d, s32[b0:b1], out=d)
        acc = np.zeros((b1 - b0, mr, nb), dtype=F32)
        for g in range(ng):
            np.add(acc, d[:, g], out=acc)
        c0, c1 = b0 * nb, min(n, b1 * nb)
        out[r0:r1, c0:c1] = acc.transpose(1, 0, 2).reshape(mr, (b1 - b0) * nb)[:, : c1 - c0]

    if len(items) > 1 and SPLIT_THREADS > 1:
        err = np.geterr()                 # the caller's floating-point error handling, in the workers too

        def run_as_caller(item):
            with np.errstate(**err):
                run(item)
        list(_pool().map(run_as_caller, items))
    else:
        for item in items:
            run(item)
    return out


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(SPLIT_THREADS, thread_name_prefix="grouped_dot_split")
    return _POOL


def _forget_pool() -> None:
    """A forked child has none of the parent's worker threads: it starts a pool of its own."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


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
