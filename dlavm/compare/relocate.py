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

import re
from dataclasses import dataclass, field

from dlavm.artifact import ArtifactError, Manifest
from dlavm.artifact.memory import NAMED_POOLS, BufferSpan, NamedBuffers


def _label(b: BufferSpan) -> str:
    return f"{b.pool}:{_token(b.name)}"


@dataclass
class MemoryMap:
    """Pools and named buffers of an artifact; :meth:`label` relocates an address."""

    pools: dict = field(default_factory=dict)       # pool name -> (base, used, region)
    named: NamedBuffers = field(default_factory=lambda: NamedBuffers({}))  # buffers of NAMED_POOLS
    regions: dict = field(default_factory=dict)     # region name -> (base, size)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "MemoryMap":
        mm = cls(named=NamedBuffers(manifest.memory))
        for pool, p in manifest.memory.items():
            mm.pools[pool] = (p.base, p.used, p.region)
        try:
            fig = manifest.target.load().figures
        except ArtifactError:  # a description this version cannot load: no region names
            fig = None
        for r in ("hbm", "ddr", "sram") if fig is not None else ():
            reg = fig.region(r)
            mm.regions[r] = (int(reg.base), int(reg.size))
        return mm

    @property
    def buffers(self) -> list:
        """The :class:`BufferSpan` of the named pools, by address."""
        return self.named.spans

    def label(self, addr: int, function: str = "") -> str:
        """``pool:buffer[+0xOFF]``, ``act+0xOFF``, ``pool+0xOFF``, ``region+0xOFF`` or hex."""
        b = self.named.at(addr)
        if b is not None:
            return _label(b) + (f"+{addr - b.addr:#x}" if addr != b.addr else "")
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

    def starts(self) -> dict:
        """Absolute start address -> buffer label (to name literals in address expressions)."""
        return {b.addr: _label(b) for b in self.buffers}

    def describe(self) -> list:
        """``[(label, addr, size)]`` of the named buffers (the golden header's memory map)."""
        return [(_label(b), b.addr, b.size) for b in self.buffers]


def _token(name: str) -> str:
    """A buffer name as one whitespace-free token."""
    return re.sub(r"\s+", "_", str(name))


_INT = re.compile(r"\b\d{6,}\b")


def relocate_expr(expr: str, starts: dict, mm: "MemoryMap | None" = None, function: str = "") -> str:
    """``expr`` with every integer literal that is a buffer's start replaced by ``[label]``, and with ``mm``
    every literal inside an activations pool by ``[act+0xOFF]`` (a loop's tile address ``i*K + base``)."""
    def sub(m):
        v = int(m.group())
        if v in starts:
            return f"[{starts[v]}]"
        if mm is not None:
            text = mm.label(v, function)
            if text.startswith("act+"):
                return f"[{text}]"
        return m.group()
    return _INT.sub(sub, expr)


__all__ = ["MemoryMap", "relocate_expr", "NAMED_POOLS"]
