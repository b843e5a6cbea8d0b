"""cocotb bench of the attention matrix unit (hw_models/rtl/units/mat_engine.sv): mat_qk and mat_pv.

Cases come from $DLAVM_RTL_CASES (tests/rtl/test_mat.py draws them): each names an instruction (fields with
byte addresses), the memory writes before it, the byte ranges to compare afterwards (with their element size),
the port stall fraction and read latency. The expected memory is hw_models.Simulator("tiny") executing the
same instruction on the same memory; an instruction the simulator refuses (doc/isa.md section 8) must end with
err. Ranges compare bit for bit (fp32 or fp16 elements) except that any NaN matches any NaN (doc/isa.md
section 1: NaN payloads are not specified). Cycle counts (start to done) go to $DLAVM_RTL_CYCLES (JSON) with
each case's compute-cycle formula, the bytes read and written, and the number of read requests.
"""
from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from dlavm.target import get_target, insn_model, isa
from hw_models import Simulator
from hw_models.errors import SimError
from hw_models.memory import DeviceMemory

from unit_bench import PortServer, run_insn, start

TARGET = os.environ.get("DLAVM_RTL_TARGET", "tiny")


def _make(case) -> isa.Instruction:
    return isa.make(case["op"], **case["fields"])


def _expected(case):
    """(error or None, [bytes per checked range]) from the simulator."""
    sim = Simulator(TARGET, check_hazards=False, trace=False)
    for addr, hexdata in case["writes"]:
        sim.write_mem(addr, bytes.fromhex(hexdata))
    try:
        sim.issue(_make(case))
        sim.wait()
    except SimError as e:
        return e, []
    return None, [sim.read_mem(a, n) for a, n, _ in case["checks"]]


def _compare(case, i, got: bytes, want: bytes) -> str | None:
    a, _, esz = case["checks"][i]
    if esz == 4:
        g, w = np.frombuffer(got, np.uint32), np.frombuffer(want, np.uint32)
        gn = ((g & 0x7F800000) == 0x7F800000) & ((g & 0x007FFFFF) != 0)
        wn = ((w & 0x7F800000) == 0x7F800000) & ((w & 0x007FFFFF) != 0)
        width = 10
    else:
        g, w = np.frombuffer(got, np.uint16), np.frombuffer(want, np.uint16)
        gn = ((g & 0x7C00) == 0x7C00) & ((g & 0x03FF) != 0)
        wn = ((w & 0x7C00) == 0x7C00) & ((w & 0x03FF) != 0)
        width = 6
    bad = np.nonzero(~((g == w) | (gn & wn)))[0]
    if bad.size and os.environ.get("DLAVM_MAT_DEBUG"):
        print(f"DEBUG {case['name'][:40]} bad indices: {bad.tolist()[:400]}")
    if bad.size:
        j = int(bad[0])
        return (f"{case['name']}: range {i} at {a:#x}: {bad.size} fp{8 * esz} element(s) differ, first index "
                f"{j}: got {int(g[j]):#0{width}x} want {int(w[j]):#0{width}x}")
    return None


@cocotb.test()
async def mat_cases(dut):
    cases = json.loads(open(os.environ["DLAVM_RTL_CASES"]).read())
    target = get_target(TARGET)
    pb = len(dut.wr_strb)
    mem = DeviceMemory(target, check_uninit=False)
    srv = PortServer(dut, mem, pb, stall=0.0)
    await start(dut, [srv])
    failures: list[str] = []
    cycles = []
    nreq = [0]

    def count_requests(_cycle):
        if int(dut.rd_req_valid.value) and int(dut.rd_req_ready.value):
            nreq[0] += 1

    for case in cases:
        want_err, want = _expected(case)
        mem = DeviceMemory(target, check_uninit=False)
        for addr, hexdata in case["writes"]:
            mem.write(addr, bytes.fromhex(hexdata))
        srv.mem = mem
        srv.stall = case.get("stall", 0.0)
        srv.latency = case.get("latency", 3)
        srv.read_bytes = srv.write_bytes = 0
        nreq[0] = 0
        insn = _make(case)
        r = await run_insn(dut, [srv], insn, timeout=400_000, on_cycle=count_requests)
        await FallingEdge(dut.clk)
        if want_err is not None:
            if not r["err"]:
                failures.append(f"{case['name']}: the simulator refuses it ({want_err}) but the RTL gave no err")
            elif case.get("err_code") is not None and r["err_code"] != case["err_code"]:
                failures.append(f"{case['name']}: err_code {r['err_code']}, want {case['err_code']} ({want_err})")
            continue
        if r["err"]:
            failures.append(f"{case['name']}: RTL err code {r['err_code']} on a legal instruction")
            continue
        for i, (a, n, _) in enumerate(case["checks"]):
            msg = _compare(case, i, mem.read(a, n, check=False).tobytes(), want[i])
            if msg:
                failures.append(msg)
                break
        f = insn.fields
        cycles.append({"name": case["name"], "op": case["op"], "cycles": r["cycles"],
                       "formula": insn_model.cycles(insn.op, f, target),
                       "heads": f["heads"], "kv_heads": f["kv_heads"], "m": f["m"], "l": f["l"], "d": f["d"],
                       "stall": srv.stall, "latency": srv.latency, "read_bytes": srv.read_bytes,
                       "write_bytes": srv.write_bytes, "read_requests": nreq[0], "perf": case.get("perf", False)})
    out = os.environ.get("DLAVM_RTL_CYCLES")
    if out:
        with open(out, "w") as fh:
            json.dump(cycles, fh, indent=1)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
