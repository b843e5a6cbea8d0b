"""Per-instruction semantics of every execution unit, as a table.

Each :class:`OpModel` says, for one mnemonic, which memory ranges it touches
(:class:`Access`; used for bounds checks and channel traffic), how many
cycles its unit is occupied computing, its pipeline latency, and how it
transforms memory (functional mode only). The simulator looks instructions
up in :data:`OP_MODELS`; adding an instruction is adding a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.errors import IllegalInstructionError, UnalignedAccessError


@dataclass(frozen=True)
class Access:
    """A 2-D memory range an instruction reads or writes: ``rows`` rows of
    ``row_bytes`` bytes, ``stride`` bytes apart, starting at ``addr``."""

    name: str
    addr: int
    row_bytes: int
    rows: int = 1
    stride: int = 0
    write: bool = False

    @property
    def nbytes(self) -> int:
        return self.row_bytes * self.rows

    @property
    def span(self) -> int:
        """Bytes from the first to one past the last byte touched."""
        return 0 if self.nbytes == 0 else (self.rows - 1) * self.stride + self.row_bytes


@dataclass(frozen=True)
class OpModel:
    op: str
    accesses: Callable[[Instruction, Target], list[Access]]
    cycles: Callable[[Instruction, Target], int]
    latency: Callable[[Target], int]
    execute: Callable[[Instruction, Any, Target], dict | None]
    macs: Callable[[Instruction], int] = lambda insn: 0


OP_MODELS: dict[str, OpModel] = {}


def register(model: OpModel) -> OpModel:
    OP_MODELS[model.op] = model
    return model


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def require(cond: bool, insn: Instruction, msg: str) -> None:
    """Raise :class:`IllegalInstructionError` naming the instruction unless ``cond``."""
    if not cond:
        raise IllegalInstructionError(f"{insn.op}: {msg}")


def require_aligned(insn: Instruction, t: Target, **values: int) -> None:
    """Strides and sizes that address memory must be multiples of ``mem_align_bytes``."""
    for name, v in values.items():
        if v % t.mem_align_bytes:
            raise UnalignedAccessError(f"{insn.op}.{name} = {v} is not a multiple of "
                                       f"{t.mem_align_bytes} bytes")


def require_positive(insn: Instruction, *names: str) -> None:
    for n in names:
        require(insn[n] > 0, insn, f"field {n} must be > 0, got {insn[n]}")


def _no_accesses(i: Instruction, t: Target) -> list[Access]:
    return []


# nop and fence run in the issue stage: no memory, no cycles (fence's effect
# on later instructions is applied by the timing model).
for _op in ("nop", "fence"):
    register(OpModel(_op, _no_accesses, lambda i, t: 0, lambda t: 0, lambda i, mem, t: None))

from hw_models.units import dma, mat, mvm, sfu  # noqa: E402,F401  (registers the tables)
