"""DMA unit: 2-D copies between any two memory regions (doc/isa.md, ``dma``)."""
from __future__ import annotations

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.units import UnitOp, register, require_aligned


def _check(i: Instruction, t: Target) -> None:
    require_aligned(i, t, row_bytes=i["row_bytes"], src_stride=i["src_stride"], dst_stride=i["dst_stride"])


def _execute(i: Instruction, mem, t: Target) -> None:
    # Memmove semantics: the whole source is read before any byte is written.
    block = mem.read_rows(i["src"], i["row_bytes"], i["rows"], i["src_stride"], "dma.src")
    mem.write_rows(i["dst"], block, i["dst_stride"], "dma.dst")


register(UnitOp("dma", _check, _execute))
