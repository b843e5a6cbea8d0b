"""cocotb bench of the MVM unit (hw_models/rtl/units/mvm_engine.sv).

Cases come from $DLAVM_RTL_CASES (tests/rtl/test_mvm.py draws them): each names an ``mvm`` instruction (fields
with byte addresses), the memory writes before it, the byte ranges to compare afterwards, the port stall
fraction and read latency. Expected = hw_models.Simulator("tiny", check_hazards=False) executing the same
instruction on the same memory (and its RESULT_IDX/RESULT_VAL for argmax, compared with the unit's
res_idx/res_val at its res_valid pulse); an instruction the simulator refuses (doc/isa.md section 8) must
end with err. fp16/fp32 elements compare bit for bit except that any NaN matches any NaN (doc/isa.md
section 1: NaN payloads are not specified); argmax records compare the index exactly and the value likewise.
Every write beat must lie inside the output operand. Cycle counts (start to done) with the compute-cycle
formula go to $DLAVM_RTL_CYCLES (JSON).
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
    return isa.make("mvm", **case["fields"])


def _expected(case):
    sim = Simulator(TARGET, check_hazards=False, trace=False)
    for addr, hexdata in case["writes"]:
        sim.write_mem(addr, bytes.fromhex(hexdata))
    try:
        sim.issue(_make(case))
    except SimError as e:
        return e, {}, None
    return None, {i: sim.read_mem(a, n) for i, (a, n, _k) in enumerate(case["checks"])}, \
        (sim.result_idx, sim.result_val)


def _nan(v: np.ndarray, bits: int) -> np.ndarray:
    if bits == 16:
        return ((v & 0x7C00) == 0x7C00) & ((v & 0x03FF) != 0)
    return ((v & 0x7F800000) == 0x7F800000) & ((v & 0x007FFFFF) != 0)


def _compare(case, i, got: bytes, want: bytes, kind: str) -> str | None:
    name, a = case["name"], case["checks"][i][0]
    if kind in ("f16", "f32", "rec"):
        dt, bits = (np.uint16, 16) if kind == "f16" else (np.uint32, 32)
        g, w = np.frombuffer(got, dt), np.frombuffer(want, dt)
        ok = g == w
        if kind == "rec":   # (index, value) pairs: NaN rule on the values only
            ok[1::2] |= _nan(g[1::2], 32) & _nan(w[1::2], 32)
        else:
            ok |= _nan(g, bits) & _nan(w, bits)
        bad = np.nonzero(~ok)[0]
        if bad.size:
            j = int(bad[0])
            what = (f"row {j // 2} {'index' if j % 2 == 0 else 'value'}" if kind == "rec"
                    else f"element {j} (row {j // case['fields']['n']}, col {j % case['fields']['n']})")
            return (f"{name}: {bad.size} {kind} word(s) differ, first {what}: got {int(g[j]):#x} "
                    f"want {int(w[j]):#x}")
    elif got != want:
        j = next(k for k in range(len(got)) if got[k] != want[k])
        return f"{name}: range {i} at {a:#x}: byte {j} got {got[j]:#04x} want {want[j]:#04x} (outside the output?)"
    return None


@cocotb.test()
async def mvm_cases(dut):
    cases = json.loads(open(os.environ["DLAVM_RTL_CASES"]).read())
    target = get_target(TARGET)
    pb = len(dut.wr_strb)
    srv = PortServer(dut, DeviceMemory(target, check_uninit=False), pb)
    await start(dut, [srv])
    failures: list[str] = []
    cycles = []
    res = {}

    def watch(_cycle):
        if int(dut.res_valid.value):
            res["idx"] = int(dut.res_idx.value)
            res["val"] = int(dut.res_val.value)

    for case in cases:
        want_err, want, want_res = _expected(case)
        mem = DeviceMemory(target, check_uninit=False)
        for addr, hexdata in case["writes"]:
            mem.write(addr, bytes.fromhex(hexdata))
        srv.mem = mem
        srv.stall = case.get("stall", 0.0)
        srv.latency = case.get("latency", 3)
        srv.writes = []
        res.clear()
        insn = _make(case)
        try:
            r = await run_insn(dut, [srv], insn, timeout=400_000, on_cycle=watch)
        except Exception as e:  # noqa: BLE001 - a memory error or a timeout fails this case only
            failures.append(f"{case['name']}: {type(e).__name__}: {e}")
            break
        await FallingEdge(dut.clk)
        if want_err is not None:
            if not r["err"]:
                failures.append(f"{case['name']}: the simulator refuses it ({want_err}) but the RTL gave no err")
            continue
        if r["err"]:
            failures.append(f"{case['name']}: RTL err code {r['err_code']} on a legal instruction")
            continue
        f = case["fields"]
        out_lo = f["out"]
        out_hi = out_lo + (f["m"] * 8 if f["argmax"] else f["m"] * f["n"] * (4 if f["out_fp32"] else 2))
        stray = [(a, n) for a, n in srv.writes if a < out_lo or a + n > out_hi]
        if stray:
            failures.append(f"{case['name']}: write outside the output [{out_lo:#x}, {out_hi:#x}): {stray[0]}")
            continue
        msg = None
        for i, (a, n, kind) in enumerate(case["checks"]):
            msg = _compare(case, i, mem.read(a, n, check=False).tobytes(), want[i], kind)
            if msg:
                failures.append(msg)
                break
        if msg is None and f["argmax"]:
            wi, wv = want_res
            gi, gv = res.get("idx"), res.get("val")
            nan = lambda v: v is not None and (v & 0x7F800000) == 0x7F800000 and (v & 0x7FFFFF) != 0  # noqa: E731
            if gi != wi or not (gv == wv or (nan(gv) and nan(wv))):
                failures.append(f"{case['name']}: res_idx/res_val {gi}/{gv} want {wi}/{wv:#x}"
                                f"{'' if res else ' (no res_valid pulse)'}")
        formula = insn_model.cycles("mvm", insn.fields, target)
        cycles.append({"name": case["name"], "cycles": r["cycles"], "formula": formula, "stall": srv.stall,
                       "read_bytes": srv.read_bytes, "write_bytes": srv.write_bytes, "port_bytes": pb,
                       "m": f["m"], "k": f["k"], "n": f["n"], "wfmt": f["wfmt"]})
        srv.read_bytes = srv.write_bytes = 0
    out = os.environ.get("DLAVM_RTL_CYCLES")
    if out:
        with open(out, "w") as fh:
            json.dump(cycles, fh, indent=1)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
