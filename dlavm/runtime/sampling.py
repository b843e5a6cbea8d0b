"""The specified sampler (doc/serve.md, "Sampling is the same everywhere"): numpy only.

One random generator (:class:`SplitMix64`), one exponential (:func:`exp_spec`) and one order of
operations (:func:`sample`), so that a seed gives the same tokens here, in the generated C++ driver and
in the C++ model server (``clib/src/sampling.cc``, ``dlavm/llm.h``; tests/llm/test_sampling_spec.py
compares the two bit for bit).

Every floating-point step is an IEEE double operation that rounds the same way everywhere (``+ - * /``,
``rint``, ``ldexp``), done in the same order, never a library ``exp`` or a pairwise ``sum`` (numpy's
``np.sum`` and libm's ``exp`` may differ from C++ in the last place). Sums are sequential, left to
right: ``np.add.accumulate``.
"""
from __future__ import annotations

import math

import numpy as np

_MASK = (1 << 64) - 1


class SplitMix64:
    """SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference ``splitmix64.c``): state = the seed, a u64."""

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _MASK:
            raise ValueError(f"seed={seed!r}: must be an integer in [0, 2**64)")
        self.state = int(seed)

    def next(self) -> int:
        """The next u64."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """A uniform number in [0, 1): the top 53 bits of :meth:`next` times 2^-53 (exact)."""
        return (self.next() >> 11) * 2.0 ** -53


#: ln 2 in two parts (fdlibm's): LN2_HI has 32 significant bits, so k * LN2_HI is exact for |k| < 2^21.
LN2_HI = float.fromhex("0x1.62e42feep-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
#: 1/n! for n = 0..13 (each the double nearest to it: an exact integer divided once), Horner's coefficients.
TAYLOR = tuple(1.0 / float(math.factorial(n)) for n in range(14))
#: Below this exp_spec is 0 (exp(-745.2) is under half the smallest subnormal double).
EXP_MIN = -745.2


def exp_spec(x) -> np.ndarray:
    """exp(x) for x <= 0 (float64 array in, float64 array out) with IEEE-exact operations only:
    ``k = rint(x / ln 2)`` (as ``x * INV_LN2``), ``r = (x - k * LN2_HI) - k * LN2_LO``, ``p`` the degree-13
    Taylor polynomial of ``exp(r)`` in Horner form, ``ldexp(p, k)``; 0 where ``x < EXP_MIN``, and exactly
    1 at 0. The C++ ``dlavm::exp_spec`` computes the same bits (within ~1 ulp of the true value)."""
    x = np.asarray(x, dtype=np.float64)
    low = ~(x >= EXP_MIN)                       # also -inf (and NaN, which the sampler never passes)
    xs = np.where(low, 0.0, x)
    k = np.rint(xs * INV_LN2)
    r = (xs - k * LN2_HI) - k * LN2_LO
    p = np.full_like(r, TAYLOR[13])
    for c in TAYLOR[12::-1]:
        p = p * r + c
    return np.where(low, 0.0, np.ldexp(p, k.astype(np.int32)))


def _check(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> None:
    if logits.ndim != 1:
        raise ValueError(f"logits must be a vector, got shape {logits.shape}")
    if logits.size == 0:
        raise ValueError("logits must be a non-empty vector, got 0 values")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r}: sampling needs a finite number > 0")
    if not 0 <= top_k <= logits.size:
        raise ValueError(f"top_k={top_k!r}: must be an integer in [0, {logits.size}] (0: all tokens)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r}: must be a number in (0, 1]")
    nan = np.flatnonzero(np.isnan(logits))
    if nan.size:
        raise ValueError(f"logit {int(nan[0])} is NaN: cannot sample")


def _weights(z: np.ndarray, m: float) -> np.ndarray:
    """``exp_spec(z - m)``, 1 where ``z == m`` (also when both are infinite, where ``z - m`` is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(z == m, 1.0, exp_spec(z - m))


def sample(logits, temperature: float, top_k: int, top_p: float, rng: SplitMix64) -> int:
    """One token id from ``logits`` (float32 values, as the ``logits`` entry returns; others are rounded
    to float32 first) with one ``rng.uniform()`` draw, in doc/serve.md's order of operations:

    1. ``z = float64(logits) / temperature``, ``m = max(z)``, ``w[i] = exp_spec(z[i] - m)`` (1 where
       ``z[i] == m``, infinities included);
    2. the kept ids: with ``top_k`` 0 or the vocabulary and ``top_p == 1`` every id in id order (no
       order to find); otherwise the ids ordered by ``z`` descending, equal values by smaller id, the
       first ``top_k`` (0: all), and with ``top_p < 1``, ``S`` = their ``w`` summed in id order, ``c`` =
       the running sums of ``w`` in the order, kept up to the first ``j`` with ``c[j] >= top_p * S``
       (all of them if rounding leaves none);
    3. ``t = u * C``, ``C`` the kept ids' ``w`` summed in the kept order; the first kept id whose running
       sum exceeds ``t`` (the last kept one if rounding leaves none).

    Every sum is sequential, left to right (``np.add.accumulate``). The C++ sampler finds the same ids
    with partial orders; here a stable argsort (of the ids at or above the top_k-th largest z, when there
    is a top_k cut) is the reference. ``ValueError`` for empty logits, a NaN logit or parameters outside
    their rules."""
    x = np.asarray(logits, dtype=np.float32)
    _check(x, float(temperature), int(top_k), float(top_p))
    with np.errstate(over="ignore"):            # a tiny temperature may take z to +-inf: _weights handles it
        z = x.astype(np.float64) / float(temperature)
    m = z.max()
    n, top_k, top_p = z.size, int(top_k), float(top_p)
    if top_k in (0, n) and top_p == 1.0:
        c = np.add.accumulate(_weights(z, m))
        ids = None                               # the kept ids are 0..n-1
    else:
        if 0 < top_k < n:                        # only the ids with z >= the top_k-th largest z need ordering
            cand = np.flatnonzero(z >= np.partition(z, n - top_k)[n - top_k])
            ids = cand[np.argsort(-z[cand], kind="stable")][:top_k]
            w = _weights(z[ids], m)
            by_id = w[np.argsort(ids, kind="stable")]     # the same weights in id order
        else:
            ids = np.argsort(-z, kind="stable")
            by_id = _weights(z, m)
            w = by_id[ids]
        c = np.add.accumulate(w)
        if top_p < 1.0:
            reached = c >= top_p * np.add.accumulate(by_id)[-1]
            keep = int(np.argmax(reached)) + 1 if reached.any() else ids.size
            ids, c = ids[:keep], c[:keep]
    t = rng.uniform() * c[-1]
    above = c > t
    j = int(np.argmax(above)) if above.any() else c.size - 1
    return j if ids is None else int(ids[j])


__all__ = ["SplitMix64", "exp_spec", "sample", "EXP_MIN"]
