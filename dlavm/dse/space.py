"""The sweep space: axes, sampling and points (doc/dse.md, "The sweep").

A sweep is a MODEL, a base target and a list of :class:`Axis`. An axis is a
numeric field of :class:`~dlavm.target.Target` or one of the run axes
(:data:`RUN_AXES`): ``weights`` (a weight format), ``ctx`` (the compiled
context) and ``seq`` (the tokens of the measured call). A :class:`SweepSpec`
expands its axes into :class:`Point` s: the full grid, a random subset of it or
a Latin hypercube sample.

Everything here is checked and deterministic:

* values are typed from the Target dataclass's fields (an ``int`` field takes
  integers only, a ``float`` field finite numbers, normalised to ``float`` so
  ``150`` and ``150.0`` are the same point); whether a derived target is
  *valid* (``Target.replace`` raising) is not checked here: that is a result
  of the point;
* a bad value raises :class:`SweepError`, one line naming the option or file,
  the field, the value and the rule;
* the point list is a pure function of the spec: sampling draws from
  SHA-256 in counter mode keyed by the seed, not from :mod:`random`, so a
  sweep expands to the same points on every Python version and machine, which
  is what lets a store resume it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from dlavm.target import Target
from dlavm.target.schema import KNOWN_WEIGHT_FORMATS

#: The axes of a run (not target fields), in the order their defaults are appended.
RUN_AXES = ("weights", "ctx", "seq")
#: Value of a run axis a sweep does not name.
DEFAULTS = {"weights": "int4", "ctx": 512, "seq": 1}
#: Most values one axis may hold (a list, or a range with a step once expanded).
MAX_AXIS_VALUES = 10_000
#: Most points a sweep may have (the grid, or N of random:N / lhs:N).
MAX_POINTS = 1_000_000
#: Sampling methods; grid takes no N.
SAMPLE_METHODS = ("grid", "random", "lhs")
#: Keys of a sweep's definition (:meth:`SweepSpec.to_json`).
SPEC_KEYS = ("model", "target", "axes", "sample", "n", "seed", "llm")
#: Keys a sweep file may hold.
FILE_KEYS = ("model", "target", "vary", "seq", "ctx", "sample", "llm")
#: Within a Latin hypercube stratum, a continuous sample sits on one of this many evenly spaced
#: sub-cell centres, so it never lands on (or rounds onto) a stratum boundary.
_LHS_SUBCELLS = 1 << 20


class SweepError(ValueError):
    """A sweep is malformed: one line naming the option or file, the field, the value and the rule."""


class _KeyedError(SweepError):
    """A SweepSpec refusal tied to one key (``sample`` or an axis name), so a caller that knows where
    that key came from (the command line or a sweep file) can say so."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------- value kinds

def _field_kind(f: dataclasses.Field) -> str:
    """"int", "float", ... whether the schema's annotations are strings (postponed) or types."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


#: Target field -> "int" | "float" for every field that can vary.
TARGET_AXES = {f.name: _field_kind(f) for f in dataclasses.fields(Target) if _field_kind(f) in ("int", "float")}
#: Axis name -> kind: "int", "float", "posint" (ctx, seq: integers >= 1) or "format" (weights).
_KINDS = {**TARGET_AXES, "weights": "format", "ctx": "posint", "seq": "posint"}


def varying_names() -> list[str]:
    """Every name ``--vary`` accepts: the run axes, then the numeric target fields in schema order."""
    return list(RUN_AXES) + list(TARGET_AXES)


def _kind_of(name: object) -> str:
    if not isinstance(name, str) or name not in _KINDS:
        nonnumeric = [f.name for f in dataclasses.fields(Target) if f.name not in TARGET_AXES]
        why = ("is a non-numeric target field" if name in nonnumeric else "is not a target field or run axis")
        raise SweepError(f"{name!r} cannot vary: it {why}; names that can vary: {', '.join(varying_names())}")
    return _KINDS[name]


def _rule(kind: str) -> str:
    return {"int": "an integer (an integer target field)", "float": "a finite number (a float target field)",
            "posint": "an integer >= 1", "format": f"one of {', '.join(KNOWN_WEIGHT_FORMATS)}"}[kind]


def _typed(name: str, kind: str, value: object) -> int | float | str:
    """``value`` (already a Python value: JSON data or a parsed token) checked and normalised for ``kind``."""
    def refuse() -> None:
        raise SweepError(f"{name} = {value!r} must be {_rule(kind)}")

    if kind == "format":
        if not isinstance(value, str) or value not in KNOWN_WEIGHT_FORMATS:
            refuse()
        return value
    if isinstance(value, bool):
        refuse()
    if kind in ("int", "posint"):
        if not isinstance(value, int) or (kind == "posint" and value < 1):
            refuse()
        return int(value)
    if not isinstance(value, (int, float)):
        refuse()
    try:
        number = float(value)
    except OverflowError:       # an integer too large for a float
        refuse()
    if not math.isfinite(number):
        refuse()
    return number


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _parse_token(name: str, kind: str, token: str) -> int | float | str:
    """One value of ``--vary`` text, typed for ``kind``; an integer kind takes decimal digits only."""
    token = token.strip()
    if not token:
        raise SweepError(f"{name}: an empty value; give values separated by single commas")
    if kind in ("int", "posint"):
        if not _INT_TEXT.fullmatch(token):
            raise SweepError(f"{name} = {token!r} must be {_rule(kind)}")
        return _typed(name, kind, int(token))
    if kind == "float":
        try:
            number = float(token)
        except ValueError:
            raise SweepError(f"{name} = {token!r} must be {_rule(kind)}") from None
        if not math.isfinite(number):
            raise SweepError(f"{name} = {token!r} must be {_rule(kind)}")
        return number
    return _typed(name, kind, token)


def _exact(x: int | float) -> Fraction:
    """``x`` as the decimal it was written as (0.1 -> 1/10), so float ranges step without drift."""
    return Fraction(x) if isinstance(x, int) else Fraction(repr(x))


# ---------------------------------------------------------------- axes and points

@dataclass(frozen=True)
class Axis:
    """One swept name: a list of ``values``, or a range ``lo..hi`` (both ends included).

    A range with a ``step`` is ``lo, lo+step, ...`` up to ``hi``; without one it is continuous
    (an integer field: every integer in ``[lo, hi]``) and only random/lhs sampling can use it.
    Guarantees after construction: the name can vary, every value and bound has its kind's type
    (float fields hold floats), list values are distinct, ``lo <= hi``, ``step > 0``, and the axis
    holds at most :data:`MAX_AXIS_VALUES` values once expanded. A violation raises SweepError.
    """

    name: str
    values: tuple = ()
    lo: int | float | None = None
    hi: int | float | None = None
    step: int | float | None = None

    def __post_init__(self) -> None:
        kind = _kind_of(self.name)
        if not isinstance(self.values, (tuple, list)):
            raise SweepError(f"{self.name}: values = {self.values!r} must be a list")
        is_range = self.lo is not None or self.hi is not None or self.step is not None
        if is_range:
            self._check_range(kind)
            return
        if not self.values:
            raise SweepError(f"{self.name}: no values; give at least one")
        if len(self.values) > MAX_AXIS_VALUES:
            raise SweepError(f"{self.name}: {len(self.values):,} values, more than {MAX_AXIS_VALUES:,} in one axis")
        values = tuple(_typed(self.name, kind, v) for v in self.values)
        seen: set = set()
        for v in values:
            if v in seen:
                raise SweepError(f"{self.name} = {v!r} is given twice; each value of an axis must be distinct")
            seen.add(v)
        object.__setattr__(self, "values", values)

    def _check_range(self, kind: str) -> None:
        name = self.name
        if kind == "format":
            raise SweepError(f"{name}: a range cannot vary weights; list formats ({', '.join(KNOWN_WEIGHT_FORMATS)})")
        if self.values:
            raise SweepError(f"{name}: give values or a range, not both")
        if self.lo is None or self.hi is None:
            raise SweepError(f"{name}: a range needs both ends, got lo={self.lo!r} hi={self.hi!r}")
        lo, hi = _typed(f"{name} range start", kind, self.lo), _typed(f"{name} range end", kind, self.hi)
        if lo > hi:
            raise SweepError(f"{name}: range {lo}:{hi} starts above its end; give LO <= HI")
        step = None
        if self.step is not None:
            step = _typed(f"{name} range step", "int" if kind == "posint" else kind, self.step)
            if step <= 0:
                raise SweepError(f"{name}: range step {step} must be > 0")
            count = int((_exact(hi) - _exact(lo)) // _exact(step)) + 1
            if count > MAX_AXIS_VALUES:
                raise SweepError(f"{name}: range {lo}:{hi}:{step} expands to {count:,} values, "
                                 f"more than {MAX_AXIS_VALUES:,} in one axis")
        object.__setattr__(self, "values", ())
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "step", step)

    @property
    def is_range(self) -> bool:
        return self.lo is not None

    @property
    def continuous(self) -> bool:
        """A range without a step."""
        return self.is_range and self.step is None

    @property
    def kind(self) -> str:
        return _KINDS[self.name]

    def size(self) -> int | None:
        """How many values the axis holds; None for a continuous float range (infinitely many)."""
        return self._size

    @cached_property
    def _size(self) -> int | None:
        if not self.is_range:
            return len(self.values)
        if self.step is not None:
            return int((_exact(self.hi) - _exact(self.lo)) // _exact(self.step)) + 1
        if self.kind == "float":
            return None
        return self.hi - self.lo + 1

    def value_at(self, i: int) -> int | float | str:
        """The ``i``-th value (0-based) of a finite axis, in ascending order for a range."""
        if not self.is_range:
            return self.values[i]
        if self.step is None:
            return self.lo + i
        if self.kind == "float":
            return float(_exact(self.lo) + i * _exact(self.step))
        return self.lo + i * self.step

    def grid_values(self) -> tuple:
        """Every value, in order: the list as given, or the stepped range ascending.

        Raises SweepError for a continuous range (no step): only random/lhs can sample it.
        """
        if self.continuous:
            raise SweepError(f"{self.name}: the range {self.lo}:{self.hi} has no step, so the grid cannot "
                             "enumerate it; give LO:HI:STEP or sample it with random:N or lhs:N")
        return tuple(self.value_at(i) for i in range(self.size()))

    def text(self) -> str:
        """The axis as ``--vary`` text (``tin=64,128``, ``clock_mhz=150.0:300.0:50.0``)."""
        if self.is_range:
            step = "" if self.step is None else f":{self.step}"
            return f"{self.name}={self.lo}:{self.hi}{step}"
        return f"{self.name}={','.join(str(v) for v in self.values)}"

    def to_json(self) -> dict:
        """``{"name", "values"}`` for a list, ``{"name", "lo", "hi", "step"}`` for a range (step null: continuous)."""
        if not self.is_range:
            return {"name": self.name, "values": list(self.values)}
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "step": self.step}


def point_id(params: dict) -> str:
    """SHA-256 hex of the canonical JSON of ``params`` (sorted keys, no spaces): independent of key order."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Point:
    """One assignment of every axis of a sweep (run axes included, defaults filled)."""

    index: int
    params: dict
    point_id: str

    @property
    def target_fields(self) -> dict:
        """The target fields to change on the base target (``base.replace(**p.target_fields)``)."""
        return {k: v for k, v in self.params.items() if k not in RUN_AXES}

    @property
    def weights(self) -> str:
        return self.params["weights"]

    @property
    def ctx(self) -> int | None:
        """The compiled context; None in a ``llm=False`` sweep, which has no ctx axis."""
        return self.params.get("ctx")

    @property
    def seq(self) -> int:
        return self.params["seq"]


# ---------------------------------------------------------------- deterministic randomness

class _Stream:
    """Pseudo-random integers from SHA-256 in counter mode, keyed by any JSON-able key.

    Unlike :mod:`random`, whose algorithms may change between Python versions, a stream gives the
    same numbers everywhere, so a seeded sweep always expands to the same points.
    """

    def __init__(self, *key: object):
        self._key = json.dumps(key, sort_keys=True).encode()
        self._counter = 0
        self._pool = 0
        self._avail = 0

    def bits(self, k: int) -> int:
        while self._avail < k:
            block = hashlib.sha256(self._key + self._counter.to_bytes(8, "little")).digest()
            self._counter += 1
            self._pool |= int.from_bytes(block, "little") << self._avail
            self._avail += 256
        out = self._pool & ((1 << k) - 1)
        self._pool >>= k
        self._avail -= k
        return out

    def below(self, n: int) -> int:
        """Uniform in ``[0, n)`` (rejection sampling: no modulo bias)."""
        k = max(1, (n - 1).bit_length())
        while True:
            r = self.bits(k)
            if r < n:
                return r

    def permutation(self, n: int) -> list[int]:
        order = list(range(n))
        for i in range(n - 1, 0, -1):       # Fisher-Yates
            j = self.below(i + 1)
            order[i], order[j] = order[j], order[i]
        return order

    def distinct(self, total: int, n: int) -> list[int]:
        """``n`` distinct integers of ``[0, total)``, ascending (Floyd's algorithm: O(n) for any total)."""
        chosen: set[int] = set()
        for j in range(total - n, total):
            t = self.below(j + 1)
            chosen.add(j if t in chosen else t)
        return sorted(chosen)

    def unit(self) -> float:
        """Uniform in ``[0, 1)`` with 53 bits."""
        return self.bits(53) / (1 << 53)


def _lhs_index(stream: _Stream, stratum: int, n: int, k: int) -> int:
    """The index (of ``k`` values) that stratum ``stratum`` of ``n`` picks.

    Index ``i`` covers ``[i, i+1)`` of the index range ``[0, k)``, cut into ``n`` equal strata; ``i``
    belongs to the stratum holding its centre ``i + 1/2``. With ``n <= k`` every stratum holds at least
    one index and draws one of its own uniformly (so the ``n`` indices are distinct, one per stratum);
    with ``n > k`` a stratum takes the index its centre falls in, so every value is used ``n // k`` or
    ``n // k + 1`` times.
    """
    if n > k:
        return (2 * stratum + 1) * k // (2 * n)
    first = -((2 * stratum * k - n) // -(2 * n))          # ceil((2jk - n) / 2n): first i with centre in j
    end = -((2 * (stratum + 1) * k - n) // -(2 * n))
    first, end = max(first, 0), min(end, k)
    return first + stream.below(end - first)


# ---------------------------------------------------------------- the spec

@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: what to compile (``model`` on the base ``target``) at which points.

    ``axes`` keep their given order (the grid varies the last fastest); the run axes ``weights`` and
    ``seq`` are always present, ``ctx`` exactly when ``llm`` (missing run axes are appended with
    :data:`DEFAULTS`). ``sample``: ``grid`` (every point; refuses a continuous range), ``random`` (``n``
    distinct points of the grid, in grid order; refused when ``n`` exceeds the grid, never clipped,
    since a sweep that silently ran fewer points than asked would be misread) or ``lhs`` (a Latin
    hypercube of ``n`` samples, see :meth:`points`). ``seed`` makes both reproducible.
    """

    model: str
    target: str = "vcu128"
    axes: tuple = ()
    sample: str = "grid"
    n: int | None = None
    seed: int = 0
    llm: bool = True

    def __post_init__(self) -> None:
        for name in ("model", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise _KeyedError(name, f"{name} = {value!r} must be a non-empty string")
        if not isinstance(self.llm, bool):
            raise _KeyedError("llm", f"llm = {self.llm!r} must be true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise _KeyedError("seed", f"seed = {self.seed!r} must be an integer")
        if not isinstance(self.axes, (tuple, list)) or not all(isinstance(a, Axis) for a in self.axes):
            raise SweepError(f"axes = {self.axes!r} must be a list of Axis")
        names = [a.name for a in self.axes]
        for name in names:
            if names.count(name) > 1:
                raise _KeyedError(name, f"axis {name} is given twice; name each axis once")
        if not self.llm and "ctx" in names:
            raise _KeyedError("ctx", "ctx cannot vary in a --no-llm sweep (llm false): only LLM artifacts "
                                     "have a compiled context; vary seq instead")
        missing = [Axis(n, (DEFAULTS[n],)) for n in RUN_AXES if n not in names and (self.llm or n != "ctx")]
        object.__setattr__(self, "axes", tuple(self.axes) + tuple(missing))
        self._check_sample()

    def _check_sample(self) -> None:
        label = self.sample if self.n is None else f"{self.sample}:{self.n}"
        if self.sample not in SAMPLE_METHODS:
            raise _KeyedError("sample", f"sample {self.sample!r} is not a method; use grid, random:N or lhs:N")
        if self.sample == "grid":
            if self.n is not None:
                raise _KeyedError("sample", f"sample {label!r}: the grid takes no N; use grid, random:N or lhs:N")
            for a in self.axes:
                if a.continuous:
                    raise _KeyedError(a.name, f"{a.name}: the range {a.lo}:{a.hi} has no step, so the grid "
                                              "cannot enumerate it; give LO:HI:STEP or sample with random:N or lhs:N")
            if self.grid_size() > MAX_POINTS:
                raise _KeyedError("sample", f"sample grid: the grid has {self.grid_size():,} points, more than "
                                            f"{MAX_POINTS:,}; sample it with random:N or lhs:N")
            return
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_POINTS:
            raise _KeyedError("sample", f"sample {label!r}: N = {self.n!r} must be an integer in [1, {MAX_POINTS:,}]")
        total = self.grid_size()
        if self.sample == "random" and total is not None and self.n > total:
            raise _KeyedError("sample", f"sample {label!r}: asks for {self.n} distinct points but the space has "
                                        f"only {total:,}; use N <= {total:,} or the grid")

    def grid_size(self) -> int | None:
        """How many distinct points the axes span; None when a continuous float range makes it infinite."""
        sizes = [a.size() for a in self.axes]
        return None if None in sizes else math.prod(sizes)

    def points(self) -> list[Point]:
        """The points, deterministic for the spec (seed included); ``index`` is the list position.

        * grid: every combination, the last axis varying fastest;
        * random: ``n`` distinct points of the space, in grid order (a continuous float range is
          drawn uniformly);
        * lhs: ``n`` samples; each axis's range is cut into ``n`` equal strata, each stratum used
          once (a finite axis stratifies its value indices, see ``_lhs_index``; a continuous float
          range draws within the stratum), paired across axes by a permutation per axis. Samples
          equal to an earlier one are dropped, so a discrete space may yield fewer than ``n`` points.
        """
        return list(self._points)

    @cached_property
    def _points(self) -> tuple[Point, ...]:
        if self.sample == "grid":
            combos = itertools.product(*(a.grid_values() for a in self.axes))
        elif self.sample == "random":
            combos = self._random()
        else:
            combos = self._lhs()
        out: list[Point] = []
        seen: set[str] = set()
        for values in combos:
            params = dict(zip((a.name for a in self.axes), values))
            pid = point_id(params)
            if pid not in seen:
                seen.add(pid)
                out.append(Point(len(out), params, pid))
        return tuple(out)

    def _random(self) -> list[tuple]:
        total = self.grid_size()
        if total is not None:
            rows = []
            for flat in _Stream("random", self.seed).distinct(total, self.n):
                idx = []
                for a in reversed(self.axes):       # last axis fastest, as in the grid
                    flat, i = divmod(flat, a.size())
                    idx.append(a.value_at(i))
                rows.append(tuple(reversed(idx)))
            return rows
        stream = _Stream("random", self.seed)

        def draw(a: Axis) -> int | float | str:
            return a.lo + (a.hi - a.lo) * stream.unit() if a.size() is None else a.value_at(stream.below(a.size()))

        rows, seen = [], set()
        for _ in range(100 * self.n):                # a continuous float axis: collisions are negligible
            row = tuple(draw(a) for a in self.axes)
            if row not in seen:
                seen.add(row)
                rows.append(row)
                if len(rows) == self.n:
                    break
        return rows

    def _lhs(self) -> list[tuple]:
        n = self.n
        columns = []
        for a in self.axes:
            stream = _Stream("lhs", self.seed, a.name)
            strata = stream.permutation(n)
            k = a.size()
            if k is None:
                width = (a.hi - a.lo) / n
                columns.append([a.lo + width * (j + (stream.below(_LHS_SUBCELLS) + 0.5) / _LHS_SUBCELLS)
                                for j in strata])
            else:
                columns.append([a.value_at(_lhs_index(stream, j, n, k)) for j in strata])
        return list(zip(*columns))

    def varied(self) -> list[str]:
        """Names of the axes holding more than one value, in axis order (what plots draw)."""
        return [a.name for a in self.axes if (a.lo < a.hi if a.size() is None else a.size() > 1)]

    def describe(self) -> str:
        """One line: how many points, how they are drawn, over which axes, and what is fixed."""
        count = len(self._points)
        head = f"{count} point{'s' if count != 1 else ''} of {self.model} on {self.target}"
        parts = []
        for a in self.axes:
            if a.name not in self.varied():
                continue
            parts.append(f"{a.name} [{a.lo}, {a.hi}]" if a.size() is None else f"{a.name} ({a.size()})")
        over = " x ".join(parts) if parts else "nothing varied"
        if self.sample == "grid":
            how = f"grid over {over}"
        else:
            size = self.grid_size()
            space = "" if size is None else f" of {size:,}"
            dropped = self.n - count if self.sample == "lhs" else 0
            extra = f", {dropped} duplicate{'s' if dropped != 1 else ''} dropped" if dropped else ""
            how = f"{self.sample}:{self.n} (seed {self.seed}{extra}){space} over {over}"
        fixed = ", ".join(f"{a.name}={a.value_at(0)}" for a in self.axes if a.name not in self.varied())
        return f"{head}: {how}" + (f"; fixed {fixed}" if fixed else "")

    def to_json(self) -> dict:
        """Canonical JSON-ready form: ``from_json(to_json(s)) == s``; equal specs give equal dicts."""
        return {"model": self.model, "target": self.target, "axes": [a.to_json() for a in self.axes],
                "sample": self.sample, "n": self.n, "seed": self.seed, "llm": self.llm}

    @classmethod
    def from_json(cls, d: dict) -> "SweepSpec":
        """The spec of :meth:`to_json`'s data, checked as strictly as a sweep file."""
        where = "sweep definition"
        if not isinstance(d, dict):
            raise SweepError(f"{where}: must be an object, not {type(d).__name__}")
        _refuse_unknown(where, d, SPEC_KEYS)
        if "model" not in d:
            raise SweepError(f"{where}: lacks 'model'")
        axes = d.get("axes", [])
        if not isinstance(axes, list):
            raise SweepError(f"{where}: axes = {axes!r} must be a list")
        parsed = []
        for i, a in enumerate(axes):
            if not isinstance(a, dict) or not isinstance(a.get("name"), str):
                raise SweepError(f"{where}: axes[{i}] = {a!r} must be an object with a 'name'")
            _refuse_unknown(f"{where}: axes[{i}]", a, ("name", "values", "lo", "hi", "step"))
            with _prefixed(f"{where}: axes[{i}]"):
                if "values" in a:
                    if any(k in a for k in ("lo", "hi", "step")):
                        raise SweepError(f"{a['name']}: give values or lo/hi/step, not both")
                    if not isinstance(a["values"], list):
                        raise SweepError(f"{a['name']}: values = {a['values']!r} must be a list")
                    parsed.append(Axis(a["name"], tuple(a["values"])))
                else:
                    parsed.append(Axis(a["name"], lo=a.get("lo"), hi=a.get("hi"), step=a.get("step")))
        with _prefixed(where):
            return cls(model=d["model"], target=d.get("target", "vcu128"), axes=tuple(parsed),
                       sample=d.get("sample", "grid"), n=d.get("n"), seed=d.get("seed", 0), llm=d.get("llm", True))


# ---------------------------------------------------------------- shared with dlavm.dse.sweep_input

class _prefixed:
    """Context manager: a SweepError raised inside gets ``prefix: `` in front (one line still)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ, exc, tb) -> bool:
        if isinstance(exc, SweepError):
            raise SweepError(f"{self.prefix}: {exc}") from None
        return False


def _refuse_unknown(where: str, data: dict, known: tuple) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(known)}")


__all__ = ["RUN_AXES", "DEFAULTS", "MAX_AXIS_VALUES", "MAX_POINTS", "SAMPLE_METHODS", "FILE_KEYS", "SPEC_KEYS",
           "SweepError",
           "Axis", "Point", "SweepSpec", "point_id", "varying_names"]
