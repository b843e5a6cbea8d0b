"""DMA unit: 2-D copies between any two memory regions (doc/isa.md, ``dma``)."""
from __future__ import annotations

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.units import Access, OpModel, cdiv, register, require_aligned


def _accesses(i: Instruction, t: Target) -> list[Access]:
    require_aligned(i, t, row_bytes=i["row_bytes"], src_stride=i["src_stride"], dst_stride=i["dst_stride"])
    return [Access("src", i["src"], i["row_bytes"], i["rows"], i["src_stride"]),
            Access("dst", i["dst"], i["row_bytes"], i["rows"], i["dst_stride"], write=True)]


def _cycles(i: Instruction, t: Target) -> int:
    # The engine's datapath is as wide as all HBM channels together; for
    # off-chip transfers the per-channel time (timing.py) dominates.
    return cdiv(i["row_bytes"] * i["rows"], t.figures.hbm_bytes_per_cycle)


def _execute(i: Instruction, mem, t: Target) -> None:
    # Memmove semantics: the whole source is read before any byte is written.
    block = mem.read_rows(i["src"], i["row_bytes"], i["rows"], i["src_stride"], "dma.src")
    mem.write_rows(i["dst"], block, i["dst_stride"], "dma.dst")


register(OpModel("dma", _accesses, _cycles, lambda t: t.dma_latency, _execute))
