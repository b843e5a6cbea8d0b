"""cocotb bench of the core's front end and DMA engine (doc/isa.md sections 3-5, 9 `dma`).

Runs on ``dlavm_core`` or on the test top ``frontend_tb`` (front end + dma_engine + stand-in units that busy
themselves for word-5 cycles and touch no memory). The host side drives the CSB port from Python; every memory
port is served by ``unit_bench.PortServer`` from one ``hw_models.memory.DeviceMemory``. Expected memory is
``hw_models.Simulator`` on the same instructions; expected timing is ``hw_models.timing.TimingModel`` fed with
the RTL's issue cycles and the units' observed busy times (start to done): the front end must then give the
model's start and completion cycles exactly, and stall a host push exactly as long as the model's queue rule.
Cases come from $DLAVM_RTL_CASES (tests/rtl/test_core.py draws them with hypothesis).
"""
from __future__ import annotations

import json
import os
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, Timer

from dlavm.target import get_target, insn_model, isa
from hw_models import Simulator
from hw_models.memory import DeviceMemory
from hw_models.timing import TimingModel
from unit_bench import PortServer, start

TARGET = get_target(os.environ.get("DLAVM_RTL_TARGET", "tiny"))
UNITS = list(isa.WAIT_UNITS)
R = {r.name: r.addr for r in isa.REGISTERS}
A_AUX = TARGET.aux_cycles_per_insn
QD = TARGET.queue_depth
# working windows of the DMA cases (sources in the low half, destinations in the high half)
WIN = 1 << 16
STREAM_OFF = 1 << 19    # AUX streams live at DDR base + this


def cases() -> dict:
    p = os.environ.get("DLAVM_RTL_CASES")
    return json.loads(open(p).read()) if p else {}


def region_base(name: str) -> int:
    return TARGET.figures.region(name).base


class _NoSignal:
    value = 0


class ReadPortServer(PortServer):
    """PortServer for a read-only port (the front end's fe_*): the write signals do not exist."""

    def s(self, name):
        if name.startswith("wr_"):
            return _NoSignal()
        return super().s(name)

    def init(self):
        for n in ("rd_req_ready", "rd_rsp_valid", "rd_rsp_data", "rd_rsp_last"):
            self.s(n).value = 0


class Bench:
    """Clocked host + memory around the DUT; records per-cycle front-end events."""

    def __init__(self, dut, stall: float = 0.0, seed: int = 1):
        self.dut = dut
        self.core = hasattr(dut, "mvm_rd_req_valid")
        self.pb = len(dut.dma_wr_strb)
        self.mem = DeviceMemory(TARGET, check_uninit=False)
        self.servers = [ReadPortServer(dut, self.mem, self.pb, prefix="fe_", stall=stall, seed=seed),
                        PortServer(dut, self.mem, self.pb, prefix="dma_", stall=stall, seed=seed + 1)]
        if self.core:
            self.servers += [PortServer(dut, self.mem, self.pb, prefix=p, stall=stall, seed=seed + 2 + i)
                             for i, p in enumerate(("mvm_", "mat_", "sfu_"))]
        self.cycle = 0
        self.csb_q: deque = deque()
        self.csb_cur = None
        self.issues: list[tuple[int, int, str]] = []      # (cycle, opcode, issuer 'host'/'aux')
        self.push_req: list[int] = []                      # request cycle of each accepted host push
        self.starts = {u: [] for u in UNITS}
        self.dones = {u: [] for u in UNITS}
        self.comps = {u: [] for u in UNITS}
        self.status_reads: list[tuple[int, int]] = []      # (cycle, value)
        self.aux_starts: list[int] = []                    # AUX_START handshake cycles

    async def reset(self):
        d = self.dut
        d.csb_valid.value = 0
        d.csb_write.value = 0
        d.csb_addr.value = 0
        d.csb_wdata.value = 0
        await start(d, self.servers)

    async def step(self):
        d = self.dut
        for s in self.servers:
            s.drive(self.cycle)
        op = self.csb_cur
        if op is None and self.csb_q:
            op = self.csb_q.popleft()
            op["req"] = self.cycle
        if op is not None:
            d.csb_valid.value = 1
            d.csb_write.value = int(op["write"])
            d.csb_addr.value = op["addr"]
            d.csb_wdata.value = op["data"]
        else:
            d.csb_valid.value = 0
        await Timer(1, unit="ns")
        for s in self.servers:
            s.sample(self.cycle)
        pushed = False
        self.csb_cur = op
        if op is not None and int(d.csb_ready.value):
            op["rdata"] = int(d.csb_rdata.value)
            op["err"] = int(d.csb_err.value)
            op["cycle"] = self.cycle
            if op["write"] and op["addr"] == R["INSN_PUSH"] and not op["err"]:
                pushed = True
            if op["write"] and op["addr"] == R["AUX_START"] and not op["err"]:
                self.aux_starts.append(self.cycle)
            if not op["write"] and op["addr"] == R["STATUS"] and not op["err"]:
                self.status_reads.append((self.cycle, op["rdata"]))
            self.csb_cur = None
        if int(d.dbg_issue.value):
            issuer = "host" if pushed else "aux"
            self.issues.append((self.cycle, int(d.dbg_issue_op.value), issuer))
            if pushed:
                self.push_req.append(op["req"])
        st, dn, cp = int(d.dbg_start.value), int(d.dbg_done.value), int(d.dbg_complete.value)
        for i, u in enumerate(UNITS):
            if st >> i & 1:
                self.starts[u].append(self.cycle)
            if dn >> i & 1:
                self.dones[u].append(self.cycle)
            if cp >> i & 1:
                self.comps[u].append(self.cycle)
        await FallingEdge(d.clk)
        self.cycle += 1

    async def csb(self, write: bool, addr: int, data: int = 0, timeout: int = 100_000) -> dict:
        op = {"write": write, "addr": addr, "data": data}
        self.csb_q.append(op)
        for _ in range(timeout):
            await self.step()
            if "cycle" in op:
                return op
        raise AssertionError(f"CSB {'write' if write else 'read'} {addr:#x}: no csb_ready in {timeout} cycles")

    async def wr(self, name: str, value: int):
        op = await self.csb(True, R[name], value)
        assert not op["err"], f"write {name}: csb_err"

    async def rd(self, name: str) -> int:
        op = await self.csb(False, R[name])
        assert not op["err"], f"read {name}: csb_err"
        return op["rdata"]

    async def push(self, insn_or_words):
        words = insn_or_words if isinstance(insn_or_words, (list, tuple)) else isa.encode(insn_or_words)
        for i, w in enumerate(words):
            await self.wr(f"INSN{i}", w)
        await self.wr("INSN_PUSH", 1)

    async def idle(self, gap: int = 0, timeout: int = 200_000):
        """Poll STATUS until 0 (``gap`` idle cycles between polls)."""
        t0 = self.cycle
        while True:
            if await self.rd("STATUS") == 0:
                return
            for _ in range(gap):
                await self.step()
            assert self.cycle - t0 < timeout, f"device still busy after {timeout} cycles"

    async def run_stream(self, insns_or_raw, addr: int | None = None):
        addr = region_base("ddr") + STREAM_OFF if addr is None else addr
        raw = insns_or_raw if isinstance(insns_or_raw, bytes) else isa.encode_stream(insns_or_raw)
        self.mem.write(addr, raw, "stream")
        await self.wr("AUX_BASE_LO", addr & 0xFFFFFFFF)
        await self.wr("AUX_BASE_HI", addr >> 32)
        await self.wr("AUX_COUNT", len(raw) // 64)
        await self.wr("AUX_START", 1)

    # ---------------------------------------------------------------- checks
    def check_timing(self, insns: list, what: str, aux_first: frozenset = frozenset()):
        """Replay the issued instructions through hw_models.timing.TimingModel with the observed busy times."""
        assert len(self.issues) == len(insns), f"{what}: {len(self.issues)} issued, want {len(insns)}"
        tm = TimingModel(TARGET)
        per = {u: 0 for u in UNITS}
        host_k = 0
        prev_aux = None
        for k, (insn, (ti, opc, issuer)) in enumerate(zip(insns, self.issues)):
            fmt = insn.format
            assert opc == fmt.opcode, f"{what}: issue {k} opcode {opc:#x}, want {insn.op}"
            unit = fmt.unit
            if issuer == "host":
                want = tm.issue_ready(unit, self.push_req[host_k])
                host_k += 1
                assert ti == want, f"{what}: insn {k} ({insn.op}) pushed at {ti}, model accepts it at {want}"
                prev_aux = None
            else:
                if prev_aux is not None and k not in aux_first:
                    want = tm.issue_ready(unit, prev_aux + A_AUX)
                    assert ti == want, f"{what}: AUX insn {k} ({insn.op}) issued at {ti}, model: {want}"
                prev_aux = ti
            if unit == "seq":
                tm.schedule(insn.op, "seq", insn.wait, ti, [], 0, 0)
                continue
            i = per[unit]
            per[unit] += 1
            s, e, c = self.starts[unit][i], self.dones[unit][i], self.comps[unit][i]
            rec = tm.schedule(insn.op, unit, insn.wait, ti, [], e - s, insn_model.latency(insn.op, TARGET))
            assert (rec.start, rec.done) == (s, c), \
                f"{what}: insn {k} ({insn.op} wait={sorted(insn.wait)}) issue {ti}: RTL start {s} complete {c}, " \
                f"timing model start {rec.start} complete {rec.done} (busy {e - s})"
        for u in UNITS:
            assert len(self.starts[u]) == per[u], f"{what}: unit {u} started {len(self.starts[u])}, want {per[u]}"
        return tm

    def check_status_reads(self, insns: list, what: str):
        """Each STATUS read at cycle t against the recorded issue/start/complete cycles."""
        recs = []   # (unit, issue, start, complete)
        per = {u: 0 for u in UNITS}
        for insn, (ti, _, _) in zip(insns, self.issues):
            u = insn.format.unit
            if u == "seq":
                continue
            i = per[u]
            per[u] += 1
            recs.append((u, ti, self.starts[u][i], self.comps[u][i]))
        for t, v in self.status_reads:
            for j, u in enumerate(UNITS):
                busy = any(ru == u and ti < t < c for ru, ti, s, c in recs)
                assert (v >> j & 1) == busy, f"{what}: STATUS {v:#x} at {t}: unit {u} busy should be {busy}"
            full = any(sum(1 for ru, ti, s, c in recs if ru == u and ti < t and s > t) >= QD for u in UNITS)
            assert (v >> 5 & 1) == full, f"{what}: STATUS {v:#x} at {t}: queue-full bit should be {full}"


def random_fill(mem_list, seed: int):
    import numpy as np
    rng = np.random.default_rng(seed)
    for name in ("hbm", "ddr", "sram"):
        data = rng.integers(0, 256, WIN, dtype=np.uint8).tobytes()
        for m in mem_list:
            m.write(region_base(name), data)


def dma_insn(c: dict, wait=()) -> isa.Instruction:
    return isa.make("dma", wait=wait, src=region_base(c["sreg"]) + c["soff"],
                    dst=region_base(c["dreg"]) + WIN // 2 + c["doff"], row_bytes=c["row_bytes"], rows=c["rows"],
                    src_stride=c["src_stride"], dst_stride=c["dst_stride"])


def compare(bench: Bench, sim: Simulator, insns: list, what: str):
    for k, i in enumerate(insns):
        if i.op != "dma" or i["rows"] * i["row_bytes"] == 0:
            continue
        span = (i["rows"] - 1) * i["dst_stride"] + i["row_bytes"]
        got = bench.mem.read(i["dst"], span, check=False).tobytes()
        want = sim.mem.read(i["dst"], span, check=False).tobytes()
        if got != want:
            j = next(x for x in range(span) if got[x] != want[x])
            raise AssertionError(f"{what}: insn {k} {i.op} dst {i['dst']:#x}: first difference at byte {j} "
                                 f"(addr {i['dst'] + j:#x}): got {got[j]:#04x}, want {want[j]:#04x}")


def expected(insns: list) -> Simulator:
    sim = Simulator(TARGET, check_hazards=False, check_uninit=False, trace=False)
    random_fill([sim.mem], 7)
    for i in insns:
        sim.issue(i)
    return sim


# -------------------------------------------------------------------- tests
@cocotb.test()
async def test_registers(dut):
    b = Bench(dut)
    await b.reset()
    assert await b.rd("ID") == isa.DEVICE_ID, "ID"
    assert await b.rd("VERSION") == isa.ISA_VERSION, "VERSION"
    assert await b.rd("STATUS") == 0, "STATUS after reset"
    assert await b.rd("RETIRED") == 0, "RETIRED after reset"
    c0 = (await b.csb(False, R["CYCLE_LO"]))
    c1 = (await b.csb(False, R["CYCLE_LO"]))
    assert c1["rdata"] - c0["rdata"] == c1["cycle"] - c0["cycle"], "CYCLE_LO counts cycles"
    assert await b.rd("CYCLE_HI") == 0
    for i in range(16):
        await b.wr(f"INSN{i}", 0x1234567 * (i + 1) & 0xFFFFFFFF)
    for i in range(16):
        assert await b.rd(f"INSN{i}") == 0x1234567 * (i + 1) & 0xFFFFFFFF, f"INSN{i} readback"
    for n, v in (("AUX_BASE_LO", 0xDEADBEC0), ("AUX_BASE_HI", 0x17), ("AUX_COUNT", 0)):
        await b.wr(n, v)
        assert await b.rd(n) == v, f"{n} readback"
    # csb_err: unknown address, unaligned, write of ro, read of wo; no side effect
    bad = [(False, 0x020), (True, 0x020), (False, 0x084), (False, 0xFFC), (False, 0x002), (True, 0x041),
           (True, R["ID"]), (True, R["STATUS"]), (True, R["RETIRED"]), (True, R["CYCLE_LO"]),
           (False, R["INSN_PUSH"]), (False, R["AUX_START"])]
    for w, a in bad:
        op = await b.csb(w, a, 5)
        assert op["err"] == 1, f"{'write' if w else 'read'} {a:#x}: csb_err expected"
    for w, a in ((False, R["ID"]), (True, R["INSN3"]), (False, R["AUX_COUNT"]), (True, R["AUX_COUNT"])):
        op = await b.csb(w, a, 0)
        assert op["err"] == 0, f"{'write' if w else 'read'} {a:#x}: no csb_err expected"
    assert await b.rd("ID") == isa.DEVICE_ID
    assert await b.rd("RETIRED") == 0 and await b.rd("STATUS") == 0, "csb errors had an effect"
    assert int(dut.error.value) == 0, "csb errors must not set the instruction error"


@cocotb.test()
async def test_dma_push(dut):
    """Each DMA case pushed through INSN0..15 + INSN_PUSH, then polled to idle; memory vs the simulator."""
    cs = cases().get("dma", [])
    for stall in (0.0, 0.3):
        b = Bench(dut, stall=stall)
        await b.reset()
        random_fill([b.mem], 7)
        insns = [dma_insn(c) for c in cs]
        for k, i in enumerate(insns):
            await b.push(i)
            await b.idle()
            assert int(dut.error.value) == 0, f"case {k} {cs[k]}: error_info {int(dut.error_info.value):#x}"
        sim = expected(insns)
        compare(b, sim, insns, f"dma push (stall {stall})")
        assert await b.rd("RETIRED") == len(insns)
        b.check_timing(insns, f"dma push (stall {stall})")
        if stall == 0.0:   # unit busy cycles (start to done) vs the timing model's compute cycles
            for k, i in enumerate(insns):
                busy = b.dones["dma"][k] - b.starts["dma"][k]
                dut._log.info("dma %3d rows %3d row_bytes %5d strides %5d/%5d: busy %4d, model compute %4d",
                              k, i["rows"], i["row_bytes"], i["src_stride"], i["dst_stride"], busy,
                              insn_model.cycles("dma", i.fields, TARGET))


@cocotb.test()
async def test_dma_stream(dut):
    """The DMA cases as one AUX stream (wait bits on alternate instructions); memory and timing."""
    cs = cases().get("dma", [])
    b = Bench(dut)
    await b.reset()
    random_fill([b.mem], 7)
    insns = [dma_insn(c, wait=("dma",) if k % 2 else ()) for k, c in enumerate(cs)]
    insns.insert(len(insns) // 2, isa.make("fence", wait=("dma",)))
    insns.insert(1, isa.make("nop", wait=("dma",)))
    insns.append(isa.make("nop"))
    await b.run_stream(insns)
    await b.idle()
    assert int(dut.error.value) == 0, f"error_info {int(dut.error_info.value):#x}"
    compare(b, expected(insns), insns, "dma stream")
    assert await b.rd("RETIRED") == len(insns), "RETIRED counts every instruction incl. nop/fence"
    b.check_timing(insns, "dma stream")
    dut._log.info("dma stream: AUX_START handshake -> first issue %d cycles (fetch latency)",
                  b.issues[0][0] - b.aux_starts[0])


def program(spec: list) -> list:
    """Timing programs for frontend_tb: (op, busy, wait) -> instructions on the stand-in units / the dma."""
    sram = region_base("sram")
    out = []
    for op, dur, wait in spec:
        w = tuple(u for u in UNITS if u in wait)
        if op == "sfu":
            out.append(isa.make("eltwise", wait=w, a=sram, b=sram, dst=sram, count=dur))
        elif op == "mat":
            out.append(isa.make("mat_qk", wait=w, m=dur, heads=1, kv_heads=1, l=1, d=16))
        elif op == "mvm":
            out.append(isa.make("mvm", wait=w, out=32 * dur, m=1, k=1, n=1))
        elif op == "dma":
            out.append(isa.make("dma", wait=w, src=sram, dst=sram + WIN // 2, row_bytes=32 * dur, rows=1))
        else:
            out.append(isa.make(op, wait=w))
    return out


@cocotb.test()
async def test_start_rule(dut):
    """Wait bits, fences, nops, queues: start/complete cycles vs the timing model (frontend_tb only)."""
    if Bench(dut).core:
        dut._log.info("dlavm_core: the stand-in timing programs run on frontend_tb only")
        return
    progs = cases().get("programs", [])
    for n, spec in enumerate(progs):
        insns = program(spec)
        for how in ("aux", "host"):
            b = Bench(dut)
            await b.reset()
            b.mem.write(region_base("sram"), bytes(WIN))
            what = f"program {n} via {how}"
            if how == "aux":
                await b.run_stream(insns)
                for _ in range(len(insns) * 3):
                    await b.csb(False, R["STATUS"])
            else:
                for i in insns:
                    await b.push(i)
            await b.idle()
            assert int(dut.error.value) == 0, f"{what}: error_info {int(dut.error_info.value):#x}"
            b.check_timing(insns, what)
            b.check_status_reads(insns, what)
            assert await b.rd("RETIRED") == len(insns), f"{what}: RETIRED"


@cocotb.test()
async def test_queue_full(dut):
    """A stream of 3*QUEUE_DEPTH long instructions on one unit: the issuer stalls, STATUS bit 5 is seen."""
    tb = not Bench(dut).core
    b = Bench(dut)
    await b.reset()
    sram = region_base("sram")
    b.mem.write(sram, bytes(WIN))
    if tb:
        insns = [isa.make("eltwise", a=sram, b=sram, dst=sram, count=40) for _ in range(3 * QD)]
    else:
        insns = [isa.make("dma", src=sram, dst=sram + WIN // 2, row_bytes=32 * 40, rows=1) for _ in range(3 * QD)]
    await b.run_stream(insns)
    for _ in range(20):
        await b.csb(False, R["STATUS"])
    await b.idle()
    assert any(v >> 5 & 1 for _, v in b.status_reads), "STATUS bit 5 (queue full) never seen"
    assert any(v >> 4 & 1 for _, v in b.status_reads), "STATUS bit 4 (AUX busy) never seen"
    b.check_timing(insns, "queue full")
    b.check_status_reads(insns, "queue full")


@cocotb.test()
async def test_aux_back_to_back(dut):
    """AUX_START while a stream runs: the second stream starts when the first ends (max(t, aux_free))."""
    b = Bench(dut)
    await b.reset()
    sram = region_base("sram")
    b.mem.write(sram, bytes(range(256)) * 16)
    b.mem.write(sram + 4096, bytes(4096))
    s1 = [isa.make("dma", src=sram + 256 * k, dst=sram + 4096 + 256 * k, row_bytes=256, rows=1) for k in range(4)]
    s2 = [isa.make("dma", wait=("dma",), src=sram + 4096 + 256 * k, dst=sram + 6144 + 256 * k, row_bytes=256,
                   rows=1) for k in range(4)]
    ddr = region_base("ddr") + STREAM_OFF
    b.mem.write(ddr + 4096, isa.encode_stream(s2))
    await b.run_stream(s1, ddr)
    await b.wr("AUX_BASE_LO", (ddr + 4096) & 0xFFFFFFFF)
    await b.wr("AUX_START", 1)
    t_second = b.cycle - 1
    await b.idle()
    assert int(dut.error.value) == 0, f"error_info {int(dut.error_info.value):#x}"
    insns = s1 + s2
    b.check_timing(insns, "two streams", aux_first=frozenset({0, 4}))
    last1 = b.issues[3][0]
    assert b.issues[4][0] >= max(t_second, last1 + A_AUX), "second stream issued before the first ended"
    assert b.mem.read(sram + 6144, 1024, check=False).tobytes() == bytes(range(256)) * 4
    assert await b.rd("RETIRED") == 8


def _info(unit: int, code: int, opcode: int) -> int:
    return code << 16 | unit << 8 | opcode


@cocotb.test()
async def test_errors(dut):
    """Illegal instructions (decode), DMA legality, AUX errors: sticky error + error_info; later work dropped."""
    sram, ddr, hbm = region_base("sram"), region_base("ddr"), region_base("hbm")
    good = isa.make("dma", src=sram, dst=sram + 4096, row_bytes=64, rows=1)

    def patched(word, bit, base=None):
        x = list(isa.encode(base or good))
        x[word] |= 1 << bit
        return x

    mvm = list(isa.encode(isa.make("mvm", m=1, k=1, n=1)))
    mvm[1] |= 3          # wfmt = 3
    elt = list(isa.encode(isa.make("eltwise", count=1)))
    elt[1] |= 3          # fn = 3
    unknown = [0x02] + [0] * 15
    hbm_end = hbm + TARGET.figures.region("hbm").size
    cases_ = [
        ("unknown opcode", unknown, _info(4, 1, 0x02)),
        ("wait bits past the units", patched(0, 12), _info(4, 2, 0x08)),
        ("word 1 reserved", patched(1, 0), _info(4, 2, 0x08)),
        ("word 15 reserved", patched(15, 31), _info(4, 2, 0x08)),
        ("mvm wfmt=3", mvm, _info(4, 3, 0x10)),
        ("eltwise fn=3", elt, _info(4, 3, 0x23)),
        ("dma unaligned row_bytes", isa.encode(isa.make("dma", src=sram, dst=sram, row_bytes=48, rows=1)),
         _info(0, 1, 0x08)),
        ("dma unaligned stride", isa.encode(isa.make("dma", src=sram, dst=sram, row_bytes=64, rows=2,
                                                     src_stride=64, dst_stride=80)), _info(0, 1, 0x08)),
        ("dma src past HBM", isa.encode(isa.make("dma", src=hbm_end - 32, dst=sram, row_bytes=64, rows=1)),
         _info(0, 2, 0x08)),
        ("dma dst across rows", isa.encode(isa.make("dma", src=sram, dst=hbm_end - 256, row_bytes=64, rows=4,
                                                    src_stride=64, dst_stride=128)), _info(0, 3, 0x08)),
    ]
    for name, words, info in cases_:
        b = Bench(dut)
        await b.reset()
        b.mem.write(sram, b"\xAA" * 4096 + bytes(4096))
        await b.push(list(words))
        await b.idle()
        assert int(dut.error.value) == 1, f"{name}: no error"
        assert int(dut.error_info.value) == info, \
            f"{name}: error_info {int(dut.error_info.value):#x}, want {info:#x}"
        # later instructions are dropped
        await b.push(good)
        await b.idle()
        got = b.mem.read(sram + 4096, 64, check=False).tobytes()
        assert got == bytes(64), f"{name}: a dma pushed after the error ran"
        assert int(dut.error_info.value) == info, f"{name}: error_info changed by a later instruction"
        assert await b.rd("STATUS") == 0
    # AUX: unaligned base, stream outside the regions, an illegal entry mid-stream
    b = Bench(dut)
    await b.reset()
    await b.wr("AUX_BASE_LO", (ddr + 32) & 0xFFFFFFFF)
    await b.wr("AUX_BASE_HI", (ddr + 32) >> 32)
    await b.wr("AUX_COUNT", 1)
    await b.wr("AUX_START", 1)
    await b.idle()
    assert int(dut.error_info.value) == _info(4, 4, 0) and int(dut.error.value), \
        f"AUX unaligned: error_info {int(dut.error_info.value):#x}"
    b = Bench(dut)
    await b.reset()
    end = ddr + TARGET.figures.region("ddr").size
    await b.wr("AUX_BASE_LO", (end - 128) & 0xFFFFFFFF)
    await b.wr("AUX_BASE_HI", (end - 128) >> 32)
    await b.wr("AUX_COUNT", 3)
    await b.wr("AUX_START", 1)
    await b.idle()
    assert int(dut.error_info.value) == _info(4, 5, 0), f"AUX range: error_info {int(dut.error_info.value):#x}"
    b = Bench(dut)
    await b.reset()
    b.mem.write(sram, b"\xAA" * 4096 + bytes(4096))
    ok = [isa.make("dma", src=sram + 64 * k, dst=sram + 4096 + 64 * k, row_bytes=64, rows=1) for k in range(4)]
    raw = isa.encode_stream(ok[:2]) + b"".join(x.to_bytes(4, "little") for x in unknown) + isa.encode_stream(ok[2:])
    await b.run_stream(raw)
    await b.idle()
    assert int(dut.error_info.value) == _info(4, 1, 2), f"AUX entry: error_info {int(dut.error_info.value):#x}"
    data = b.mem.read(sram + 4096, 256, check=False).tobytes()
    assert data[:128] == b"\xAA" * 128, "entries before the illegal one must run"
    assert data[128:] == bytes(128), "entries after the illegal one must not run"
    assert await b.rd("RETIRED") == 2
    if not b.core:   # a unit's err (stand-in sfu, err_code 0x5A) with the opcode of its instruction
        b = Bench(dut)
        await b.reset()
        await b.push(isa.make("eltwise", count=4096 + 3))
        await b.idle()
        assert int(dut.error_info.value) == _info(3, 0x5A, 0x23), f"unit err: {int(dut.error_info.value):#x}"


@cocotb.test()
async def test_result_regs(dut):
    """RESULT_IDX/VAL latch the mvm engine's res_* outputs (frontend_tb stand-in: idx = busy time)."""
    b = Bench(dut)
    if b.core:
        return
    await b.reset()
    await b.push(isa.make("mvm", out=32 * 9, m=1, k=1, n=1))
    await b.idle()
    assert await b.rd("RESULT_IDX") == 9 and await b.rd("RESULT_VAL") == 0x3F800000
