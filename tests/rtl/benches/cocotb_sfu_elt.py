"""cocotb bench of the SFU's eltwise, act, rope and kv_append (hw_models/rtl/units/sfu_elt.sv, sfu_rope.sv,
sfu_kv.sv), run on the ``sfu`` wrapper or on one sub-block directly (the ports are the same).

Cases come from $DLAVM_RTL_CASES (tests/rtl/test_sfu_elt.py draws them): each names an instruction (fields
with byte addresses), the memory writes before it, the byte ranges to compare afterwards and the port stall
fraction. The expected memory is hw_models.Simulator("tiny") executing the same instruction on the same
memory; an instruction the simulator refuses (doc/isa.md section 8) must end with err. fp16 ranges compare
bit for bit except that any NaN matches any NaN (doc/isa.md section 1: NaN payloads are not specified).
Cycle counts (start to done) go to $DLAVM_RTL_CYCLES (JSON) with the compute-cycle formula of each case;
$SFU_ELT_TIMEOUT (cycles, default 400000) bounds one instruction, and a timeout names the case and, on a
sub-block toplevel, its internal counters.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from dlavm.target import get_target, isa
from dlavm.target import insn_model
from hw_models import Simulator
from hw_models.errors import SimError
from hw_models.memory import DeviceMemory

from unit_bench import PortServer, run_insn, start

TARGET = os.environ.get("DLAVM_RTL_TARGET", "tiny")


def _make(case) -> isa.Instruction:
    return isa.make(case["op"], **case["fields"])


def _expected(case):
    """(error or None, {range index: bytes}) from the simulator."""
    sim = Simulator(TARGET, check_hazards=False, trace=False)
    for addr, hexdata in case["writes"]:
        sim.write_mem(addr, bytes.fromhex(hexdata))
    try:
        with np.errstate(all="ignore"):   # specials (inf - inf, overflow) are part of the cases
            sim.issue(_make(case))
    except SimError as e:
        return e, {}
    return None, {i: sim.read_mem(a, n) for i, (a, n, _kind) in enumerate(case["checks"])}


def _compare(case, i, got: bytes, want: bytes, kind: str) -> str | None:
    name = case["name"]
    a = case["checks"][i][0]
    if kind == "f16":
        g = np.frombuffer(got, np.uint16)
        w = np.frombuffer(want, np.uint16)
        gn = (g & 0x7C00) == 0x7C00
        gn &= (g & 0x03FF) != 0
        wn = (w & 0x7C00) == 0x7C00
        wn &= (w & 0x03FF) != 0
        bad = np.nonzero(~((g == w) | (gn & wn)))[0]
        if bad.size:
            j = int(bad[0])
            return (f"{name}: range {i} at {a:#x}: {bad.size} fp16 element(s) differ, first index {j}: "
                    f"got {int(g[j]):#06x} want {int(w[j]):#06x}")
    else:
        if got != want:
            j = next(k for k in range(len(got)) if got[k] != want[k])
            return f"{name}: range {i} at {a:#x}: byte {j} (address {a + j:#x}) got {got[j]:#04x} want {want[j]:#04x}"
    return None


def _state(dut) -> str:
    """Internal counters of a hung sub-block (when the toplevel is one), for the failure message."""
    out = []
    for n in ("st", "a_left", "b_left", "fa_n", "fb_n", "tq_n", "a_cred", "b_cred", "bg_v", "sc", "b_rowl",
              "b_off", "a_req_left", "b_row_req_left", "b_rows_elems", "wv_q", "comp_rows", "fill_rows",
              "rows_left", "rq_left"):
        try:
            out.append(f"{n}={int(getattr(dut, n).value)}")
        except (AttributeError, ValueError):
            pass
    return " ".join(out)


@cocotb.test()
async def sfu_elt_cases(dut):
    cases = json.loads(Path(os.environ["DLAVM_RTL_CASES"]).read_text())
    target = get_target(TARGET)
    pb = len(dut.wr_strb)
    mem = DeviceMemory(target, check_uninit=False)
    srv = PortServer(dut, mem, pb, stall=0.0)
    await start(dut, [srv])
    failures: list[str] = []
    cycles = []
    for case in cases:
        want_err, want = _expected(case)
        mem = DeviceMemory(target, check_uninit=False)
        for addr, hexdata in case["writes"]:
            mem.write(addr, bytes.fromhex(hexdata))
        srv.mem = mem
        srv.stall = case.get("stall", 0.0)
        srv.latency = case.get("latency", 3)
        insn = _make(case)
        dut._log.info(f"case {case['name']}")
        try:
            r = await run_insn(dut, [srv], insn, timeout=int(os.environ.get("SFU_ELT_TIMEOUT", "400000")))
        except AssertionError as e:
            raise AssertionError(f"{case['name']}: {e}; {_state(dut)}") from None
        await FallingEdge(dut.clk)
        if want_err is not None:
            if not r["err"]:
                failures.append(f"{case['name']}: the simulator refuses it ({want_err}) but the RTL gave no err")
            continue
        if r["err"]:
            failures.append(f"{case['name']}: RTL err code {r['err_code']} on a legal instruction")
            continue
        for i, (a, n, kind) in enumerate(case["checks"]):
            msg = _compare(case, i, mem.read(a, n, check=False).tobytes(), want[i], kind)
            if msg:
                failures.append(msg)
                break
        formula = insn_model.cycles(insn.op, insn.fields, target)
        cycles.append({"name": case["name"], "op": case["op"], "cycles": r["cycles"], "formula": formula,
                       "stall": srv.stall, "read_bytes": srv.read_bytes, "write_bytes": srv.write_bytes})
        srv.read_bytes = srv.write_bytes = 0
    out = os.environ.get("DLAVM_RTL_CYCLES")
    if out:
        with open(out, "w") as f:
            json.dump(cycles, f, indent=1)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
