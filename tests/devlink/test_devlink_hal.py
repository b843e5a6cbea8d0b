"""DeviceHAL's conveniences, defined once over the primitives, against a register-only fake device."""
from __future__ import annotations

import pytest

from dlavm.devlink import DeviceHAL
from dlavm.target.isa import reg


class RunningCounter(DeviceHAL):
    """A device whose cycle counter advances ``step`` cycles per host register read (as a real one
    runs while the host reads it); memory and streams are not modelled."""

    def __init__(self, start: int, step: int):
        self.now, self.step = start, step
        self.reads: list[str] = []

    def read_reg(self, addr: int) -> int:
        self.now += self.step
        if addr == reg("CYCLE_LO"):
            self.reads.append("lo")
            return self.now & 0xFFFF_FFFF
        if addr == reg("CYCLE_HI"):
            self.reads.append("hi")
            return self.now >> 32
        raise AssertionError(f"unexpected register read {addr:#x}")

    def write_reg(self, addr, value):
        raise AssertionError("no register writes expected")

    def write_mem(self, addr, data):
        raise AssertionError("no memory access expected")

    def read_mem(self, addr, nbytes):
        raise AssertionError("no memory access expected")

    def wait(self, timeout_cycles=None):
        pass

    def stats(self):
        return {}


@pytest.mark.parametrize("start", [
    (1 << 32) - 250,            # the low word wraps between the two reads of a plain lo-then-hi pair
    (1 << 32) - 150,            # ... between the first high read and the low read
    (5 << 32) - 250,
    123_456,                    # no carry near: one pass
])
def test_cycles_is_consistent_across_a_carry_into_the_high_word(start):
    dev = RunningCounter(start, step=200)     # one host round trip is about 1 us = 200 cycles at 200 MHz
    got = dev.cycles()
    assert start < got <= dev.now, (hex(start), hex(got), hex(dev.now))


def test_cycles_reads_three_registers_when_no_carry_happens():
    dev = RunningCounter(1000, step=200)
    dev.cycles()
    assert dev.reads == ["hi", "lo", "hi"]
