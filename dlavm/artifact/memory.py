"""Named buffers of a manifest's memory map: which buffer of a persistent pool holds an address."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

#: Pools whose buffers never share bytes, so an address inside one names it.
NAMED_POOLS = ("weights", "kv")


@dataclass(frozen=True)
class BufferSpan:
    """One buffer of a named pool: ``[addr, addr + size)``."""

    pool: str
    name: str
    addr: int
    size: int


class NamedBuffers:
    """The non-empty buffers of :data:`NAMED_POOLS` of ``memory`` ({pool: Pool}), by address."""

    def __init__(self, memory: dict):
        spans = [BufferSpan(pool, name, b.addr, b.size) for pool in NAMED_POOLS if pool in memory
                 for name, b in memory[pool].buffers.items() if b.size > 0]
        self.spans = sorted(spans, key=lambda b: (b.addr, b.size))
        self._starts = [b.addr for b in self.spans]

    def at(self, addr: int) -> BufferSpan | None:
        """The buffer holding ``addr`` (buffers of named pools never overlap), or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.spans[i].addr + self.spans[i].size:
            return self.spans[i]
        return None


__all__ = ["NAMED_POOLS", "BufferSpan", "NamedBuffers"]
