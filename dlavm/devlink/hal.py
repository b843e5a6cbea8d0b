"""The device HAL: the one interface every execution backend implements.

The cycle-level simulator (``hw_models.Simulator``), the socket client
(:class:`dlavm.devlink.socket_client.SocketDevice`) and the C++ driver's
devices implement it, so a runtime written against :class:`DeviceHAL` runs
unchanged on each. Lives in ``dlavm.devlink`` (below both ``dlavm.runtime``
and ``hw_models``) so that neither imports the other. Needs only numpy and
``dlavm.target`` (no torch, no compiler).
"""
from __future__ import annotations

import abc
from typing import Any, Iterable

import numpy as np

from dlavm.target.isa import INSN_WORDS, Instruction, encode, reg


class HALError(RuntimeError):
    """A device operation failed; subclasses name the address, register or field."""


class DeviceHAL(abc.ABC):
    """Host view of one accelerator: registers, device memory, AUX streams.

    Guarantees every implementation gives: register and memory accesses are
    performed in call order; :meth:`wait` returns only when every issued
    instruction has completed; errors are :class:`HALError` subclasses.
    """

    @abc.abstractmethod
    def write_reg(self, addr: int, value: int) -> None:
        """Write a 32-bit host register (one host round trip)."""

    @abc.abstractmethod
    def read_reg(self, addr: int) -> int:
        """Read a 32-bit host register (one host round trip)."""

    @abc.abstractmethod
    def write_mem(self, addr: int, data: bytes | np.ndarray) -> None:
        """Copy host bytes (or an array's raw little-endian bytes) to device memory at ``addr``."""

    @abc.abstractmethod
    def read_mem(self, addr: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` of device memory at ``addr`` to the host."""

    @abc.abstractmethod
    def wait(self, timeout_cycles: int | None = None) -> None:
        """Block until the device is idle (every issued instruction completed)."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counters of the device (implementation-defined keys; see each backend's docs)."""

    def trace(self) -> dict[str, Any] | None:
        """Chrome/Perfetto trace JSON object of the unit timelines, if the backend records one."""
        return None

    # Conveniences defined once, in terms of the primitives above.

    def run_stream(self, addr: int, count: int) -> None:
        """Start the AUX sequencer on ``count`` instructions at device address ``addr``."""
        self.write_reg(reg("AUX_BASE_LO"), addr & 0xFFFFFFFF)
        self.write_reg(reg("AUX_BASE_HI"), addr >> 32)
        self.write_reg(reg("AUX_COUNT"), count)
        self.write_reg(reg("AUX_START"), 1)

    def push(self, insn: Instruction | Iterable[int]) -> None:
        """Issue one instruction through the staging registers (17 register writes)."""
        words = encode(insn) if isinstance(insn, Instruction) else tuple(insn)
        if len(words) != INSN_WORDS:
            raise HALError(f"an instruction is {INSN_WORDS} words, got {len(words)}")
        for i, w in enumerate(words):
            self.write_reg(reg(f"INSN{i}"), w)
        self.write_reg(reg("INSN_PUSH"), 1)

    def write_array(self, addr: int, array: np.ndarray) -> None:
        """Write a numpy array's bytes (C order, little-endian) at ``addr``."""
        self.write_mem(addr, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False))

    def read_array(self, addr: int, dtype: Any, shape: tuple[int, ...] | int) -> np.ndarray:
        """Read an array of ``dtype`` and ``shape`` stored C-order at ``addr``."""
        dt = np.dtype(dtype).newbyteorder("<")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        return np.frombuffer(self.read_mem(addr, n), dtype=dt).reshape(shape).copy()

    def cycles(self) -> int:
        """Device cycle counter, consistent across a carry into the high word.

        The counter runs while the host reads its two halves, so the high word
        is read before and after the low word and the pair is retried until
        both high reads agree (usually three register reads).
        """
        hi = self.read_reg(reg("CYCLE_HI"))
        while True:
            lo = self.read_reg(reg("CYCLE_LO"))
            hi_again = self.read_reg(reg("CYCLE_HI"))
            if hi_again == hi:
                return hi << 32 | lo
            hi = hi_again


__all__ = ["DeviceHAL", "HALError"]
