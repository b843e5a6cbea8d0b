"""Missing-dependency detection: a checker for wait masks.

Hardware compares no addresses (doc/isa.md section 5, rule 4): software must
set a wait bit for every dependency. The simulator applies effects in issue
order, so a missing wait would go unnoticed in the numbers; this checker
raises :class:`HazardError` instead, at the instruction that would race:

* read-after-write: an instruction starts reading a range another
  instruction (any unit, the same one included) writes and has not
  completed;
* write-after-read / write-after-write across units: it writes a range
  another unit's in-flight instruction reads or writes;
* host ``read_mem``/``write_mem`` of a range an in-flight instruction
  writes (or, for a host write, reads): the host forgot to ``wait()``.

Ranges are conservative: a 2-D operand counts as its whole span.
"""
from __future__ import annotations

from dataclasses import dataclass

from hw_models.errors import SimError
from dlavm.target.insn_model import Access


class HazardError(SimError):
    """Two accesses to the same bytes may race: a wait bit (or host wait) is missing."""


@dataclass
class _InFlight:
    index: int
    op: str
    unit: str
    busy_end: int
    done: int
    reads: list[tuple[int, int, str]]
    writes: list[tuple[int, int, str]]


def _ranges(accesses: list[Access], write: bool) -> list[tuple[int, int, str]]:
    return [(a.addr, a.addr + a.span, a.name) for a in accesses if a.write == write and a.nbytes]


def _overlap(xs, ys):
    for lo, hi, name in xs:
        for lo2, hi2, name2 in ys:
            if lo < hi2 and lo2 < hi:
                return max(lo, lo2), name, name2
    return None


class HazardChecker:
    """Tracks in-flight instructions' ranges; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.inflight: list[_InFlight] = []

    def _prune(self, t: int) -> None:
        self.inflight = [e for e in self.inflight if e.done > t]

    def check(self, index: int, op: str, unit: str, issue: int, start: int, busy_end: int, done: int,
              accesses: list[Access]) -> None:
        """Check one scheduled instruction against those still in flight, then record it."""
        self._prune(issue)
        reads, writes = _ranges(accesses, False), _ranges(accesses, True)
        for e in self.inflight:
            if e.done <= start:
                continue
            hit = _overlap(reads, e.writes)
            kind = "reads"
            if hit is None and e.unit != unit:
                hit = _overlap(writes, e.writes)
                kind = "writes"
                if hit is None and e.busy_end > start:
                    hit = _overlap(writes, e.reads)
            if hit is not None:
                addr, mine, theirs = hit
                raise HazardError(
                    f"#{index} {op}.{mine} {kind} {addr:#x}, which #{e.index} {e.op}.{theirs} ({e.unit}) "
                    f"still accesses until cycle {e.done}, but starts at cycle {start}: add wait={e.unit}")
        if reads or writes:
            self.inflight.append(_InFlight(index, op, unit, busy_end, done, reads, writes))

    def check_host(self, t: int, addr: int, nbytes: int, write: bool) -> None:
        """A host memory access at cycle ``t`` must not touch bytes an in-flight instruction uses."""
        self._prune(t)
        rng = [(addr, addr + nbytes, "host")]
        for e in self.inflight:
            hit = _overlap(rng, e.writes) or (_overlap(rng, e.reads) if write else None)
            if hit is not None:
                raise HazardError(
                    f"host {'write_mem' if write else 'read_mem'} at {hit[0]:#x} (cycle {t}) touches "
                    f"#{e.index} {e.op}.{hit[2]} ({e.unit}), in flight until cycle {e.done}: call wait() first")
