"""Device::cycles reads a running 64-bit counter through two 32-bit registers: the value it returns
is one the counter really held while it was reading, also when the low half carries in between."""
from __future__ import annotations

from clib_testing import run_program

CARRY = 1 << 32


def _cycles(cpp_programs, step: int, starts: list[int]) -> list[tuple[int, int, int, list[str]]]:
    out = run_program(cpp_programs["fake_counter_device"], step, *starts).stdout
    rows = []
    for line in out.splitlines():
        start, end, value, *reads = line.split()
        rows.append((int(start), int(end), int(value), reads))
    return rows


def test_cycles_is_a_value_the_counter_held_across_a_carry(cpp_programs):
    # starts just below each carry of the low half, and far from one; the counter moves 1..7 per read
    starts = [c * CARRY - d for c in (1, 2, 0xFFFF) for d in range(1, 12)] + [12345, 5 * CARRY + 99]
    for step in (1, 3, 7):
        for start, end, value, reads in _cycles(cpp_programs, step, starts):
            assert start <= value < end, (step, hex(start), hex(value), hex(end))
            assert reads[:3] == ["HI", "LO", "HI"] and len(reads) in (3, 5)


def test_cycles_reads_three_registers_when_the_high_half_holds_still(cpp_programs):
    ((start, end, value, reads),) = _cycles(cpp_programs, 2, [7 * CARRY + 100])
    assert reads == ["HI", "LO", "HI"] and value == start + 2 and end == start + 6
