"""cocotb bench of the SFU's rmsnorm, layernorm and softmax (hw_models/rtl/units/sfu_norm.sv, sfu_softmax.sv),
run on the ``sfu`` wrapper or on one sub-block directly (the ports are the same).

Cases come from $DLAVM_RTL_CASES (tests/rtl/test_sfu_norm.py draws them): each names an instruction (fields
with byte addresses), the memory writes before it, the byte ranges to compare afterwards, the port stall
fraction and read latency. The expected memory is hw_models.Simulator("tiny") executing the same instruction
on the same memory; an instruction the simulator refuses (doc/isa.md section 8) must end with err. fp16
ranges compare bit for bit except that any NaN matches any NaN (doc/isa.md section 1: NaN payloads are not
specified). Cycle counts (start to done) go to $DLAVM_RTL_CYCLES (JSON) with each case's compute-cycle formula.
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
    except SimError as e:
        return e, []
    return None, [sim.read_mem(a, n) for a, n in case["checks"]]


def _compare(case, i, got: bytes, want: bytes) -> str | None:
    a = case["checks"][i][0]
    g = np.frombuffer(got, np.uint16)
    w = np.frombuffer(want, np.uint16)
    gn = ((g & 0x7C00) == 0x7C00) & ((g & 0x03FF) != 0)
    wn = ((w & 0x7C00) == 0x7C00) & ((w & 0x03FF) != 0)
    bad = np.nonzero(~((g == w) | (gn & wn)))[0]
    if bad.size:
        j = int(bad[0])
        return (f"{case['name']}: range {i} at {a:#x}: {bad.size} fp16 element(s) differ, first index {j}: "
                f"got {int(g[j]):#06x} want {int(w[j]):#06x}")
    return None


@cocotb.test()
async def sfu_norm_cases(dut):
    cases = json.loads(open(os.environ["DLAVM_RTL_CASES"]).read())
    target = get_target(TARGET)
    pb = len(dut.wr_strb)
    mem = DeviceMemory(target, check_uninit=False)
    srv = PortServer(dut, mem, pb, stall=0.0)
    await start(dut, [srv])
    failures: list[str] = []
    cycles = []
    for case in cases:
        if "rtl_err" in case:   # an implementation limit (the simulator has none): err with that code
            r = await run_insn(dut, [srv], _make(case), timeout=1000)
            await FallingEdge(dut.clk)
            if not r["err"] or r["err_code"] != case["rtl_err"]:
                failures.append(f"{case['name']}: want err code {case['rtl_err']}, got err={r['err']} "
                                f"code {r['err_code']}")
            continue
        want_err, want = _expected(case)
        mem = DeviceMemory(target, check_uninit=False)
        for addr, hexdata in case["writes"]:
            mem.write(addr, bytes.fromhex(hexdata))
        srv.mem = mem
        srv.stall = case.get("stall", 0.0)
        srv.latency = case.get("latency", 3)
        srv.read_bytes = srv.write_bytes = 0
        insn = _make(case)
        r = await run_insn(dut, [srv], insn, timeout=400_000)
        await FallingEdge(dut.clk)
        if want_err is not None:
            if not r["err"]:
                failures.append(f"{case['name']}: the simulator refuses it ({want_err}) but the RTL gave no err")
            continue
        if r["err"]:
            failures.append(f"{case['name']}: RTL err code {r['err_code']} on a legal instruction")
            continue
        for i, (a, n) in enumerate(case["checks"]):
            msg = _compare(case, i, mem.read(a, n, check=False).tobytes(), want[i])
            if msg:
                failures.append(msg)
                break
        formula = insn_model.cycles(insn.op, insn.fields, target)
        cycles.append({"name": case["name"], "op": case["op"], "cycles": r["cycles"], "formula": formula,
                       "rows": case["fields"]["rows"], "cols": case["fields"]["cols"],
                       "stall": srv.stall, "read_bytes": srv.read_bytes, "write_bytes": srv.write_bytes})
    out = os.environ.get("DLAVM_RTL_CYCLES")
    if out:
        with open(out, "w") as f:
            json.dump(cycles, f, indent=1)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
