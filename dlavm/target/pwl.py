"""Piecewise-linear activation tables (data written to device memory / ROM).

A table has ``nseg`` interior segments of equal width over ``[lo, hi)``
plus two exterior entries: entry 0 applies left of ``lo`` and entry
``nseg + 1`` right of ``hi``. Each entry is an fp32 (slope, intercept) pair;
the ``act`` instruction and the softmax exponent evaluate them exactly as
doc/isa.md ("Piecewise-linear tables") specifies. Interior entries are the
chords through ``f`` at the breakpoints, computed in float64 and rounded
once to fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class PWLTable:
    """One activation table; ``entries`` is fp32 [nseg + 2, 2] (slope, intercept)."""

    name: str
    lo: float
    hi: float
    nseg: int
    entries: np.ndarray

    @property
    def inv_step(self) -> float:
        """fp32 value of nseg / (hi - lo): the ``inv_step`` instruction field."""
        return float(np.float32(self.nseg / (self.hi - self.lo)))

    @property
    def lo_f32(self) -> float:
        return float(np.float32(self.lo))

    def to_bytes(self) -> bytes:
        return np.ascontiguousarray(self.entries, dtype="<f4").tobytes()


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])


_FUNCS = {
    # name: (f, lo, hi, nseg, left (slope, icpt), right (slope, icpt) or None = extend last chord)
    "silu": (lambda x: x / (1.0 + np.exp(-x)), -16.0, 16.0, 512, (0.0, 0.0), (1.0, 0.0)),
    "gelu": (_gelu, -6.0, 6.0, 192, (0.0, 0.0), (1.0, 0.0)),
    "exp": (np.exp, -16.0, 0.0, 512, (0.0, 0.0), None),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), -12.0, 12.0, 384, (0.0, 0.0), (0.0, 1.0)),
}

TABLE_NAMES = tuple(sorted(_FUNCS))


def build_table(f, name: str, lo: float, hi: float, nseg: int,
                left: tuple[float, float], right: tuple[float, float] | None) -> PWLTable:
    """Chord table of ``f`` (a float64 vectorised function) over [lo, hi)."""
    xs = np.linspace(lo, hi, nseg + 1, dtype=np.float64)
    ys = f(xs)
    slope = (ys[1:] - ys[:-1]) / (xs[1:] - xs[:-1])
    icpt = ys[:-1] - slope * xs[:-1]
    entries = np.empty((nseg + 2, 2), dtype=np.float64)
    entries[0] = left
    entries[1:-1, 0], entries[1:-1, 1] = slope, icpt
    entries[-1] = right if right is not None else (slope[-1], icpt[-1])
    return PWLTable(name, lo, hi, nseg, entries.astype(np.float32))


@lru_cache(maxsize=None)
def table(name: str) -> PWLTable:
    """The built-in table ``name`` (one of :data:`TABLE_NAMES`)."""
    if name not in _FUNCS:
        raise KeyError(f"no activation table {name!r}; tables are {list(TABLE_NAMES)}")
    f, lo, hi, nseg, left, right = _FUNCS[name]
    return build_table(f, name, lo, hi, nseg, left, right)


#: The softmax unit's exponent ROM (doc/isa.md): the "exp" table.
SOFTMAX_EXP_TABLE = "exp"
