"""What each execution unit refuses and computes, per instruction, as a table.

For one mnemonic a :class:`UnitOp` holds the legality check (``check``:
what the device refuses, doc/isa.md section 8) and the semantics
(``execute``: how it transforms memory, functional mode only). Both are
written here from doc/isa.md, independently of the compiler. Which bytes an
instruction touches, its compute cycles and its latency are *not* here: they
are shared with the compiler as data in :mod:`dlavm.target.insn_model`, and
a conformance test checks those declared accesses against the bytes
``execute`` actually touched. The simulator looks instructions up in
:data:`UNIT_OPS`; adding an instruction is adding a row here and a model there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.errors import IllegalInstructionError, UnalignedAccessError


@dataclass(frozen=True)
class UnitOp:
    """Legality check and semantics of one mnemonic on its unit."""

    op: str
    check: Callable[[Instruction, Target], None]
    execute: Callable[[Instruction, Any, Target], dict | None]


UNIT_OPS: dict[str, UnitOp] = {}


def register(op: UnitOp) -> UnitOp:
    UNIT_OPS[op.op] = op
    return op


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


def _legal(i: Instruction, t: Target) -> None:
    return None


# nop and fence run in the issue stage: nothing to refuse, no memory effect
# (fence's effect on later instructions is applied by the timing model).
for _op in ("nop", "fence"):
    register(UnitOp(_op, _legal, lambda i, mem, t: None))

from hw_models.units import dma, mat, mvm, sfu  # noqa: E402,F401  (registers the tables)
