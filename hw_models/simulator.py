"""The cycle-level simulator: a :class:`~dlavm.devlink.hal.DeviceHAL` backend.

It executes host register writes/reads, memory copies and AUX streams
against :class:`~hw_models.memory.DeviceMemory`, computes exact numerics
with the unit models in :mod:`hw_models.units` (legality and numerics) and
keeps every timeline in :class:`~hw_models.timing.TimingModel`. Which bytes
an instruction touches, its compute cycles and its latency come from the
shared instruction models (:mod:`dlavm.target.insn_model`).

Ordering guarantee: instructions take effect on memory in issue order, at
issue. The timing model says *when* they would run on the device; a
program whose wait masks omit a true dependency still computes the
program-order result here (doc/simulator.md, "What is not modelled").
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from dlavm.devlink.hal import DeviceHAL
from dlavm.target import Target, get_target, insn_model
from dlavm.target.isa import (DEVICE_ID, INSN_BYTES, INSN_WORDS, ISA_VERSION, REGS_BY_ADDR, WAIT_UNITS,
                              EncodingError, Instruction, decode, encode)
from hw_models.errors import IllegalInstructionError, SimError, UnalignedAccessError, UndefinedRegisterError
from hw_models.hazards import HazardChecker
from hw_models.memory import DERIVED_BYTES, DeviceMemory
from hw_models.timing import TimingModel
from hw_models.trace import build_trace, write_trace
from hw_models.units import UNIT_OPS

_MASK32 = 0xFFFFFFFF


class Simulator(DeviceHAL):
    """Cycle-level model of one accelerator described by ``target``.

    ``functional``: compute numerics (else timing only: units touch no data,
    which makes billion-parameter shapes fast). ``check_uninit``: raise on a
    read of never-written memory. ``check_hazards``: raise
    :class:`~hw_models.hazards.HazardError` where a missing wait bit (or a
    missing host ``wait()``) would let two accesses race. ``trace``: record
    host/AUX spans for :meth:`trace`. ``trace_channels``: also one trace
    thread per channel. ``record_accesses``: keep, per executed instruction,
    the byte ranges its unit actually read and wrote (:attr:`touched`;
    functional mode), to check the declared accesses against them.
    ``weight_cache_bytes``: budget of the MVM's integer weights kept in the float32 layout of its
    numerics (:meth:`DeviceMemory.derived`; dropped when their bytes are written), so that a
    functional decode step does not unpack every weight again; 0 keeps none.
    """

    def __init__(self, target: str | Target = "vcu128", functional: bool = True,
                 check_uninit: bool = True, check_hazards: bool = True, trace: bool = True,
                 trace_channels: bool = False, record_accesses: bool = False,
                 weight_cache_bytes: int = DERIVED_BYTES):
        self.target = get_target(target)
        self.functional = functional
        self.mem = DeviceMemory(self.target, check_uninit=check_uninit and functional,
                                derived_bytes=weight_cache_bytes)
        self.timing = TimingModel(self.target)
        self.timing.record_channels = trace_channels
        self.record_trace = trace
        self.hazards = HazardChecker() if check_hazards else None
        self.rtt = self.target.figures.host_rtt_cycles
        self.t_host = 0
        self.aux_free = 0
        self.staging = [0] * INSN_WORDS
        self.aux_regs = {"AUX_BASE_LO": 0, "AUX_BASE_HI": 0, "AUX_COUNT": 0}
        self.result_idx = 0
        self.result_val = 0
        self.host_events: list[tuple[str, int, int]] = []
        self.aux_events: list[tuple[str, int, int]] = []
        self.host_reg_accesses = 0
        self.record_accesses = record_accesses
        #: per executed instruction (``record_accesses``): (index, op, read ranges, write ranges)
        self.touched: list[tuple[int, str, list[tuple[int, int]], list[tuple[int, int]]]] = []

    # ------------------------------------------------------------ host clock
    def _host(self, name: str, cycles: int) -> None:
        start = self.t_host
        self.t_host += cycles
        if self.record_trace:
            if self.host_events and self.host_events[-1][0] == name and self.host_events[-1][2] == start:
                self.host_events[-1] = (name, self.host_events[-1][1], self.t_host)
            else:
                self.host_events.append((name, start, self.t_host))

    def _register(self, addr: int, access: str):
        if addr % 4:
            raise UnalignedAccessError(f"register address {addr:#x} is not 4-byte aligned")
        r = REGS_BY_ADDR.get(addr)
        if r is None:
            raise UndefinedRegisterError(f"no register at {addr:#x} (see doc/isa.md, 'Register map')")
        if access == "write" and r.access == "ro":
            raise UndefinedRegisterError(f"register {r.name} ({addr:#x}) is read-only")
        if access == "read" and r.access == "wo":
            raise UndefinedRegisterError(f"register {r.name} ({addr:#x}) is write-only")
        return r

    # ------------------------------------------------------------ HAL: registers
    def write_reg(self, addr: int, value: int) -> None:
        r = self._register(addr, "write")
        if not 0 <= int(value) <= _MASK32:
            raise UndefinedRegisterError(f"register {r.name}: value {value} does not fit in 32 bits")
        self.host_reg_accesses += 1
        self._host("csb", self.rtt)
        value = int(value)
        if r.name.startswith("INSN") and r.name != "INSN_PUSH":
            self.staging[int(r.name[4:])] = value
        elif r.name == "INSN_PUSH":
            self._issue_words(self.staging, "host")
        elif r.name in self.aux_regs:
            self.aux_regs[r.name] = value
        elif r.name == "AUX_START":
            self._run_aux()

    def read_reg(self, addr: int) -> int:
        r = self._register(addr, "read")
        self.host_reg_accesses += 1
        self._host("csb", self.rtt)
        t = self.t_host
        if r.name.startswith("INSN"):
            return self.staging[int(r.name[4:])]
        if r.name in self.aux_regs:
            return self.aux_regs[r.name]
        if r.name == "STATUS":
            return (sum(1 << i for i, u in enumerate(WAIT_UNITS) if u in self.timing.busy_units(t))
                    | (int(self.aux_free > t) << 4) | (int(self.timing.queue_full(t)) << 5))
        if r.name == "RETIRED":   # computed only when read
            return self.timing.retired(t) & _MASK32
        return {"ID": DEVICE_ID, "VERSION": ISA_VERSION, "CYCLE_LO": t & _MASK32, "CYCLE_HI": t >> 32 & _MASK32,
                "RESULT_IDX": self.result_idx, "RESULT_VAL": self.result_val}[r.name]

    # ------------------------------------------------------------ HAL: memory
    def write_mem(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = data if isinstance(data, (bytes, bytearray, memoryview)) else np.ascontiguousarray(data).view(np.uint8)
        nbytes = len(buf) if isinstance(buf, (bytes, bytearray, memoryview)) else buf.size
        if self.hazards:
            self.hazards.check_host(self.t_host, addr, nbytes, write=True)
        self.mem.write(addr, buf, "host write_mem")
        self._host("mem", self.rtt + -(-nbytes // self.target.host_bytes_per_cycle))

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        if self.hazards:
            self.hazards.check_host(self.t_host, addr, nbytes, write=False)
        out = self.mem.read(addr, nbytes, "host read_mem").tobytes()
        self._host("mem", self.rtt + -(-nbytes // self.target.host_bytes_per_cycle))
        return out

    def wait(self, timeout_cycles: int | None = None) -> None:
        """Poll STATUS (one round trip each) until the device is idle.

        Raises TimeoutError if that would take more than ``timeout_cycles``.
        """
        idle = max(self.timing.idle_at(), self.aux_free)
        polls = max(1, -(-(idle - self.t_host) // self.rtt))
        if timeout_cycles is not None and polls * self.rtt > timeout_cycles:
            raise TimeoutError(f"device busy until cycle {idle}; timeout of {timeout_cycles} cycles "
                               f"from cycle {self.t_host}")
        self.host_reg_accesses += polls
        self._host("poll", polls * self.rtt)

    # ------------------------------------------------------------ issue
    def _issue_words(self, words, issuer: str, at: int | None = None) -> int:
        """Decode and issue one instruction; returns the cycle it was accepted."""
        try:
            insn = decode(words)
        except EncodingError as exc:
            raise IllegalInstructionError(f"{issuer} issued an undecodable instruction: {exc}") from None
        return self.issue(insn, at)

    def issue(self, insn: Instruction, at: int | None = None) -> int:
        """Issue a decoded instruction at cycle ``at`` (default: host time, no register cost).

        Checks fields and every operand's address range, runs the numerics
        (functional mode) and schedules it; returns the accept cycle.
        """
        unit_op = UNIT_OPS.get(insn.op)
        if unit_op is None:
            raise IllegalInstructionError(f"{insn.op}: no execution unit implements this instruction")
        fmt = insn.format
        unit_op.check(insn, self.target)
        accesses = insn_model.accesses(insn.op, insn.fields, self.target)
        for a in accesses:
            if a.nbytes:
                self.mem.check_range(a.addr, a.span, f"{insn.op}.{a.name}")
        t_issue = self.timing.issue_ready(fmt.unit, self.t_host if at is None else at)
        rec = self.timing.schedule(insn.op, fmt.unit, insn.wait, t_issue, accesses,
                                   insn_model.cycles(insn.op, insn.fields, self.target),
                                   insn_model.latency(insn.op, self.target), insn_model.macs(insn.op, insn.fields),
                                   insn_model.tail(insn.op, insn.fields, self.target),
                                   insn_model.tail_after(insn.op))
        if self.hazards:
            self.hazards.check(rec.index, insn.op, fmt.unit, rec.issue, rec.start, rec.busy_end, rec.done,
                               accesses)
        if self.functional:
            if self.record_accesses:
                self.mem.start_recording()
            try:
                result = unit_op.execute(insn, self.mem, self.target)
            finally:
                if self.record_accesses:
                    reads, writes = self.mem.stop_recording()
                    self.touched.append((rec.index, insn.op, reads, writes))
            if result:
                self.result_idx = result["argmax_index"] & _MASK32
                self.result_val = result["argmax_value_bits"]
        if at is None and t_issue > self.t_host:
            self._host("stall", t_issue - self.t_host)   # the host push blocked on a full queue
        return t_issue

    def _run_aux(self) -> None:
        base = self.aux_regs["AUX_BASE_HI"] << 32 | self.aux_regs["AUX_BASE_LO"]
        count = self.aux_regs["AUX_COUNT"]
        if base % INSN_BYTES:
            raise UnalignedAccessError(f"AUX stream base {base:#x} is not {INSN_BYTES}-byte aligned")
        t = max(self.t_host, self.aux_free)
        start = t
        if count:
            raw = self.mem.read(base, count * INSN_BYTES, "aux fetch", check=self.mem.check_uninit)
            words = raw.view("<u4").reshape(count, INSN_WORDS)
            # the fetch reads the stream from its memory (a channel read like any other, doc/simulator.md);
            # an entry issues once it is on chip
            ready = (self.timing.fetch(t, base, count * self.target.aux_fetch_bytes, count)
                     if self.target.aux_fetch_bytes else None)
            for k in range(count):
                if ready is not None:
                    t = max(t, ready[k])
                try:
                    t = self._issue_words(words[k], "aux", at=t)
                except SimError as exc:   # name the stream entry: that is what a driver author looks up
                    raise type(exc)(f"aux stream entry {k} at {base + k * INSN_BYTES:#x}: {exc}") from None
                t += self.target.aux_cycles_per_insn
        self.aux_free = t
        if self.record_trace:
            self.aux_events.append((f"stream {count}", start, t))

    # ------------------------------------------------------------ convenience
    def load_stream(self, addr: int, insns: list[Instruction]) -> None:
        """Write an instruction stream into device memory (costs host memory time)."""
        self.write_mem(addr, b"".join(struct.pack(f"<{INSN_WORDS}I", *encode(i)) for i in insns))

    def run_program(self, insns: list[Instruction], addr: int | None = None) -> None:
        """Load ``insns`` at ``addr`` (default: start of DDR), run them on AUX and wait."""
        addr = self.target.figures.region("ddr").base if addr is None else addr
        self.load_stream(addr, insns)
        self.run_stream(addr, len(insns))
        self.wait()

    @property
    def records(self):
        return self.timing.records

    @property
    def cycles_now(self) -> int:
        """Total simulated cycles so far: host time or device completion, whichever is later."""
        return max(self.t_host, self.timing.idle_at(), self.aux_free)

    def stats(self) -> dict[str, Any]:
        tm = self.timing
        fig = self.target.figures
        cycles = self.cycles_now
        hbm = tm.chan_bytes[: tm.n_hbm]
        return {
            "target": self.target.name,
            "functional": self.functional,
            "cycles": cycles,
            "time_us": fig.cycles_to_us(cycles),
            "host_cycles": self.t_host,
            "host_reg_accesses": self.host_reg_accesses,
            "instructions": len(tm.records),
            "unit_busy_cycles": {u: tm.unit_busy[u] for u in WAIT_UNITS},
            "unit_instructions": {u: tm.unit_count[u] for u in WAIT_UNITS},
            "hbm_channel_bytes": hbm.tolist(),
            "hbm_channel_busy_cycles": tm.chan_busy[: tm.n_hbm].tolist(),
            "ddr_bytes": int(tm.chan_bytes[tm.n_hbm]),
            "hbm_bytes": int(hbm.sum()),
            "macs": tm.macs,
        }

    def trace(self) -> dict[str, Any]:
        tm = self.timing
        return build_trace(self.target.clock_mhz, tm.records, self.host_events, self.aux_events,
                           tm.channel_events, tm.n_hbm)

    def write_trace(self, path: str | Path) -> Path:
        """Write the Chrome/Perfetto trace JSON to ``path``."""
        return write_trace(self.trace(), path)


__all__ = ["Simulator"]
