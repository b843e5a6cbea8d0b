"""Run one instruction on one unit from cocotb (doc/rtl.md: the unit interface and the memory port).

Shared by the unit benches (``cocotb_<unit>.py``). The clock has a 10 ns period; the bench drives the
unit's inputs at each falling edge, lets the design settle 1 ns, then samples its outputs: a handshake
(valid and ready both high) then completes at the next rising edge, whatever combinational paths the
unit has. The memory ports are served from a ``hw_models.memory.DeviceMemory`` (the simulator's own
memory model: the same regions, and an address outside them fails the test naming it). Read data is
taken at request time, returned ``latency`` cycles later, one beat per cycle; writes are committed when
accepted. ``stall`` > 0 withholds ready/valid on that fraction of cycles (seeded), to exercise flow
control. This is a functional harness: cycle counts here are not the HBM model's (core_harness.cc is).
"""
from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from dlavm.target import isa

CLK_NS = 10


def _sig(dut, name):
    return getattr(dut, name)


class PortServer:
    """Serve the read and write port of a unit whose signals start with ``prefix`` (``rd_req_valid`` ...)."""

    def __init__(self, dut, mem, port_bytes: int, prefix: str = "", latency: int = 3, outstanding: int = 4,
                 stall: float = 0.0, seed: int = 1):
        self.dut, self.mem, self.pb, self.p = dut, mem, port_bytes, prefix
        self.latency, self.outstanding, self.stall = latency, outstanding, stall
        self.rng = random.Random(seed)
        self.reqs: deque = deque()   # [ready_cycle, addr, nbytes, next_beat, nbeats, data]
        self.read_bytes = 0
        self.write_bytes = 0
        self.writes: list[tuple[int, int]] = []   # (addr, nbytes) runs written, for range checks

    def s(self, name):
        return _sig(self.dut, self.p + name)

    def init(self):
        for n in ("rd_req_ready", "rd_rsp_valid", "rd_rsp_data", "rd_rsp_last", "wr_ready"):
            self.s(n).value = 0

    def _go(self) -> bool:
        return not (self.stall and self.rng.random() < self.stall)

    def drive(self, cycle: int):
        """Falling edge: present this cycle's response beat and the ready signals."""
        self.s("rd_req_ready").value = int(len(self.reqs) < self.outstanding and self._go())
        self.s("wr_ready").value = int(self._go())
        head = self.reqs[0] if self.reqs else None
        if head is not None and head[0] <= cycle and self._go():
            _, addr, nbytes, beat, nbeats, data = head
            chunk = data[beat * self.pb:(beat + 1) * self.pb]
            self.s("rd_rsp_data").value = int.from_bytes(bytes(chunk) + bytes(self.pb - len(chunk)), "little")
            self.s("rd_rsp_last").value = int(beat == nbeats - 1)
            self.s("rd_rsp_valid").value = 1
        else:
            self.s("rd_rsp_valid").value = 0
            self.s("rd_rsp_last").value = 0

    def sample(self, cycle: int):
        """1 ns after the falling edge: complete the handshakes that the next rising edge performs."""
        if int(self.s("rd_rsp_valid").value) and int(self.s("rd_rsp_ready").value):
            head = self.reqs[0]
            head[3] += 1
            if head[3] == head[4]:
                self.reqs.popleft()
        if int(self.s("rd_req_ready").value) and int(self.s("rd_req_valid").value):
            addr, nbytes = int(self.s("rd_req_addr").value), int(self.s("rd_req_bytes").value)
            assert addr % 32 == 0 and nbytes > 0 and nbytes % 32 == 0, \
                f"{self.p}read request addr {addr:#x} bytes {nbytes}: must be > 0 and multiples of 32"
            data = self.mem.read(addr, nbytes, what=f"{self.p}read request", check=False)
            self.read_bytes += nbytes
            self.reqs.append([cycle + self.latency, addr, nbytes, 0, -(-nbytes // self.pb), data])
        if int(self.s("wr_ready").value) and int(self.s("wr_valid").value):
            addr = int(self.s("wr_addr").value)
            assert addr % 32 == 0, f"{self.p}write beat address {addr:#x} is not a multiple of 32"
            strb = int(self.s("wr_strb").value)
            data = int(self.s("wr_data").value).to_bytes(self.pb, "little")
            j = 0
            while j < self.pb:   # commit each run of set strobe bits
                if strb >> j & 1:
                    k = j
                    while k < self.pb and strb >> k & 1:
                        k += 1
                    self.mem.write(addr + j, data[j:k], what=f"{self.p}write beat")
                    self.writes.append((addr + j, k - j))
                    self.write_bytes += k - j
                    j = k
                else:
                    j += 1


async def start(dut, servers: list[PortServer]):
    """Start the clock and reset the unit (``rst_n`` low for 3 cycles), inputs idle."""
    cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
    dut.rst_n.value = 0
    if hasattr(dut, "start"):
        dut.start.value = 0
        dut.insn.value = 0
    for s in servers:
        s.init()
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    await FallingEdge(dut.clk)


def insn_value(insn: isa.Instruction) -> int:
    """The 512-bit instruction word as an int (word i in bits 32i+31 .. 32i)."""
    return sum(w << (32 * i) for i, w in enumerate(isa.encode(insn)))


async def run_insn(dut, servers: list[PortServer], insn: isa.Instruction, timeout: int = 200_000,
                   on_cycle=None) -> dict:
    """Pulse ``start`` with ``insn`` and serve the ports until ``done``; returns cycles (start to done),
    err, err_code. Fails on a timeout naming the instruction."""
    cycle = 0
    dut.insn.value = insn_value(insn)
    dut.start.value = 1
    out = None
    while cycle < timeout:
        for s in servers:
            s.drive(cycle)
        await Timer(1, unit="ns")
        for s in servers:
            s.sample(cycle)
        if on_cycle is not None:
            on_cycle(cycle)
        if cycle > 0 and int(dut.done.value):
            out = {"cycles": cycle, "err": int(dut.err.value), "err_code": int(dut.err_code.value)}
        await FallingEdge(dut.clk)
        dut.start.value = 0
        cycle += 1
        if out is not None:
            for s in servers:   # idle the ports for the next instruction
                s.init()
            return out
    raise AssertionError(f"{insn.op}: no done within {timeout} cycles")
