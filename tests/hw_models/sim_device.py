"""Test helper: a simulator plus bump allocators (a uniquely named module, so
test files can import it whatever other test folders' conftests are loaded)."""
from __future__ import annotations

import numpy as np

from dlavm.target.isa import INSN_BYTES, Instruction
from hw_models import Simulator


class Device:
    """A simulator plus a bump allocator in each memory region (64-byte aligned)."""

    def __init__(self, target: str = "tiny", **kwargs):
        self.sim = Simulator(target, **kwargs)
        self.t = self.sim.target
        self.next = {r.name: r.base for r in self.t.figures.regions}

    def alloc(self, nbytes: int, region: str = "sram") -> int:
        addr = self.next[region]
        self.next[region] = addr + max(64, -(-nbytes // 64) * 64)
        return addr

    def put(self, array: np.ndarray, region: str = "sram") -> int:
        addr = self.alloc(array.nbytes, region)
        self.sim.write_array(addr, array)
        return addr

    def get(self, addr: int, dtype, shape) -> np.ndarray:
        return self.sim.read_array(addr, dtype, shape)

    def run(self, *insns: Instruction) -> None:
        """Run the instructions as one AUX stream from DDR and wait."""
        self.sim.run_program(list(insns), self.alloc(len(insns) * INSN_BYTES, "ddr"))
