"""The simulator through the DeviceHAL interface: registers, AUX streams with
patched dynamic fields, status and counters."""
from __future__ import annotations

import numpy as np

from sim_device import Device
from dlavm.devlink import DeviceHAL
from dlavm.target import asm, isa


def test_simulator_is_a_device_hal(dev):
    assert isinstance(dev.sim, DeviceHAL)
    assert dev.sim.read_reg(isa.reg("ID")) == isa.DEVICE_ID
    assert dev.sim.read_reg(isa.reg("VERSION")) == isa.ISA_VERSION


def test_push_and_aux_give_the_same_result(rng):
    results = []
    a = rng.standard_normal(40).astype(np.float16)
    for via_aux in (False, True):
        dev = Device("tiny")
        aa, dst = dev.put(a), dev.alloc(80)
        insn = isa.make("eltwise", fn="mul", a=aa, b=aa, dst=dst, count=40)
        if via_aux:
            dev.run(insn)
        else:
            dev.sim.push(insn)
            dev.sim.wait()
        results.append(dev.get(dst, np.float16, 40))
    np.testing.assert_array_equal(*results)


def test_patch_a_dynamic_field_of_a_packed_stream(dev, rng):
    """The driver pattern: pre-pack once, patch the token-count word, run."""
    a = rng.standard_normal(64).astype(np.float16)
    aa, dst = dev.put(a), dev.alloc(128)
    dev.sim.write_mem(dst, np.zeros(64, np.float16))
    prog = [isa.make("nop"), isa.make("eltwise", fn="add", a=aa, b=aa, dst=dst, count=8)]
    base = dev.alloc(len(prog) * isa.INSN_BYTES, "ddr")
    dev.sim.load_stream(base, prog)
    offset = base + 1 * isa.INSN_BYTES + isa.op_format("eltwise").field_offset("count")
    dev.sim.write_mem(offset, np.array([24], dtype="<u4"))
    dev.sim.run_stream(base, len(prog))
    dev.sim.wait()
    got = dev.get(dst, np.float16, 64)
    np.testing.assert_array_equal(got[:24], (a[:24].astype(np.float32) * 2).astype(np.float16))
    assert not got[24:].any()
    # Debug tooling reads the patched stream back and disassembles it.
    text = asm.disassemble(dev.sim.read_mem(base, len(prog) * isa.INSN_BYTES), offsets=True, base=base)
    assert "count=24" in text.splitlines()[1]


def test_status_cycles_and_retired_counters(dev):
    s = dev.t.sram_base
    dev.sim.write_mem(s, np.zeros(4096, np.float16))
    dev.sim.push(isa.make("eltwise", a=s, b=s, dst=s, count=4096))
    status = dev.sim.read_reg(isa.reg("STATUS"))
    assert status & (1 << isa.WAIT_UNITS.index("sfu"))
    c0 = dev.sim.cycles()
    dev.sim.wait()
    assert dev.sim.read_reg(isa.reg("STATUS")) == 0
    assert dev.sim.read_reg(isa.reg("RETIRED")) == 1
    assert dev.sim.cycles() > c0


def test_stats_report_units_and_channels(dev, rng):
    w = dev.put(rng.standard_normal((8, 64)).astype(np.float16), "hbm")
    x = dev.put(rng.standard_normal((1, 64)).astype(np.float16))
    dev.run(isa.make("mvm", wfmt="fp16", x=x, w=w, out=dev.alloc(16), m=1, k=64, n=8))
    st = dev.sim.stats()
    assert st["macs"] == 64 * 8 and st["unit_instructions"]["mvm"] == 1
    assert sum(st["hbm_channel_bytes"]) == 8 * 64 * 2
    assert st["ddr_bytes"] == 0 and st["cycles"] >= st["unit_busy_cycles"]["mvm"]
    assert dev.sim.trace()["traceEvents"]
