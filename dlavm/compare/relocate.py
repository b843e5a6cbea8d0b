"""Relocation: a device address as (pool or buffer, offset), from an artifact's memory map.

The manifest's ``memory`` section (doc/backend.md) lists pools with their
buffers. Persistent pools (``weights``, ``kv``) never reuse bytes, so an
address inside one of their buffers is named by that buffer:
``weights:model.layers.0.mlp.up_proj.weight.int4`` (``+0x40`` when not at
its start). The activation arena reuses slots by lifetime, so one address
belongs to several buffers over a run; without the instruction's operand
value the owner is ambiguous, and an activation address is written as its
offset into the arena of the stream's function: ``act+0x20000``. Anything
else is an offset into its pool (``streams+0x40``) or region (``ddr+0x...``),
or stays hex.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

#: Pools whose buffers never share bytes: addresses are named by buffer.
NAMED_POOLS = ("weights", "kv")


@dataclass(frozen=True)
class BufferSpan:
    """One buffer of the memory map: ``[addr, addr + size)`` in pool ``pool``."""

    pool: str
    name: str
    addr: int
    size: int

    @property
    def label(self) -> str:
        return f"{self.pool}:{self.name}"


@dataclass
class MemoryMap:
    """Pools and named buffers of an artifact; :meth:`label` relocates an address."""

    pools: dict = field(default_factory=dict)       # pool name -> (base, used, region)
    buffers: list = field(default_factory=list)     # BufferSpan of NAMED_POOLS, sorted by addr
    regions: dict = field(default_factory=dict)     # region name -> (base, size)
    _start_list: list = field(default_factory=list, repr=False)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "MemoryMap":
        mm = cls()
        for pool, p in manifest.get("memory", {}).items():
            mm.pools[pool] = (int(p["base"]), int(p["used"]), p.get("region", ""))
            if pool in NAMED_POOLS:
                for name, (addr, size) in p.get("buffers", {}).items():
                    if int(size) > 0:
                        mm.buffers.append(BufferSpan(pool, _token(name), int(addr), int(size)))
        mm.buffers.sort(key=lambda b: (b.addr, b.size))
        try:
            from dlavm.runtime.loader import artifact_target
            fig = artifact_target(manifest).figures
            for r in ("hbm", "ddr", "sram"):
                reg = fig.region(r)
                mm.regions[r] = (int(reg.base), int(reg.size))
        except Exception:  # noqa: BLE001 - a manifest without a usable target: no region names
            pass
        return mm

    def label(self, addr: int, function: str = "") -> str:
        """``pool:buffer[+0xOFF]``, ``act+0xOFF``, ``pool+0xOFF``, ``region+0xOFF`` or hex."""
        # named buffers never overlap (persistent pools), so the candidate is the last one starting <= addr
        i = bisect.bisect_right(self._starts(), addr) - 1
        if i >= 0 and addr < self.buffers[i].addr + self.buffers[i].size:
            b = self.buffers[i]
            return b.label + (f"+{addr - b.addr:#x}" if addr != b.addr else "")
        act = f"activations.{function}"
        order = ([act] if act in self.pools else []) + [p for p in self.pools if p != act]
        for pool in order:
            base, used, _ = self.pools[pool]
            if base <= addr < base + max(used, 1):
                short = "act" if pool.startswith("activations.") else pool
                return f"{short}+{addr - base:#x}"
        for r, (base, size) in self.regions.items():
            if base <= addr < base + size:
                return f"{r}+{addr - base:#x}"
        return f"{addr:#x}"

    def _starts(self) -> list:
        if len(self._start_list) != len(self.buffers):
            self._start_list = [b.addr for b in self.buffers]
        return self._start_list

    def starts(self) -> dict:
        """Absolute start address -> buffer label (to name literals in address expressions)."""
        return {b.addr: b.label for b in self.buffers}

    def describe(self) -> list:
        """``[(label, addr, size)]`` of the named buffers (the golden header's memory map)."""
        return [(b.label, b.addr, b.size) for b in self.buffers]


def _token(name: str) -> str:
    """A buffer name as one whitespace-free token."""
    return re.sub(r"\s+", "_", str(name))


_INT = re.compile(r"\b\d{6,}\b")


def relocate_expr(expr: str, starts: dict) -> str:
    """``expr`` with every integer literal that is a buffer's start replaced by ``[label]``."""
    return _INT.sub(lambda m: f"[{starts[int(m.group())]}]" if int(m.group()) in starts else m.group(), expr)


__all__ = ["MemoryMap", "BufferSpan", "relocate_expr", "NAMED_POOLS"]
