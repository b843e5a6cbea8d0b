"""Precise errors: out-of-range and unaligned accesses, uninitialised reads,
undefined registers, illegal instructions."""
from __future__ import annotations

import numpy as np
import pytest

from sim_device import Device
from dlavm.devlink import HALError
from dlavm.target import get_target, isa
from hw_models import (AddressError, HazardError, IllegalInstructionError, Simulator, UnalignedAccessError,
                       UndefinedRegisterError, UninitializedReadError)


def test_out_of_range_operand_names_field_and_address(dev):
    end = dev.t.figures.region("sram").end
    with pytest.raises(AddressError, match=r"eltwise\.dst.*past the end of sram"):
        dev.sim.issue(isa.make("eltwise", a=dev.put(np.zeros(64, np.float16)), b=dev.t.sram_base,
                               dst=end - 64, count=64))


def test_address_in_no_region(dev):
    with pytest.raises(AddressError, match=r"0x8000000000.*no memory region"):
        dev.sim.write_mem(1 << 39, b"\0" * 4)


def test_host_read_past_hbm_end(dev):
    hbm = dev.t.figures.region("hbm")
    with pytest.raises(AddressError, match="hbm"):
        dev.sim.read_mem(hbm.end - 2, 4)


@pytest.mark.parametrize("field", ["row_bytes", "src_stride", "dst_stride"])
def test_unaligned_dma_fields(dev, field):
    values = dict(src=0, dst=dev.t.sram_base, row_bytes=64, rows=2, src_stride=64, dst_stride=64)
    values[field] = 48
    with pytest.raises(UnalignedAccessError, match=f"dma.{field} = 48"):
        dev.sim.issue(isa.make("dma", **values))


def test_unaligned_register_and_aux_base(dev):
    with pytest.raises(UnalignedAccessError, match="0x41"):
        dev.sim.write_reg(0x41, 1)
    dev.sim.write_reg(isa.reg("AUX_BASE_LO"), 32)
    dev.sim.write_reg(isa.reg("AUX_COUNT"), 1)
    with pytest.raises(UnalignedAccessError, match="AUX stream base 0x20"):
        dev.sim.write_reg(isa.reg("AUX_START"), 1)


def test_unaligned_address_cannot_be_encoded():
    with pytest.raises(isa.UnalignedAddressError, match=r"dma.src: address 0x11"):
        isa.encode(isa.make("dma", src=0x11))


def test_uninitialised_read_names_first_address(dev):
    x = dev.alloc(256)
    dev.sim.write_mem(x, b"\1" * 100)
    with pytest.raises(UninitializedReadError, match=f"rmsnorm.src.*{x + 100:#x}"):
        dev.sim.issue(isa.make("rmsnorm", src=x, dst=x, gamma=x, rows=1, cols=128, eps=1e-5))


def test_uninitialised_check_can_be_disabled():
    dev = Device("tiny", check_uninit=False)
    x = dev.alloc(256)
    dev.sim.issue(isa.make("eltwise", a=x, b=x, dst=x, count=128))
    dev.sim.wait()
    assert dev.get(x, np.float16, 128).tolist() == [0.0] * 128


@pytest.mark.parametrize("addr", [0x300, 0x0FC, 0x084])
def test_undefined_register(dev, addr):
    with pytest.raises(UndefinedRegisterError, match=f"no register at {addr:#x}"):
        dev.sim.read_reg(addr)


def test_register_access_modes(dev):
    with pytest.raises(UndefinedRegisterError, match="ID .* is read-only"):
        dev.sim.write_reg(isa.reg("ID"), 1)
    with pytest.raises(UndefinedRegisterError, match="INSN_PUSH .* is write-only"):
        dev.sim.read_reg(isa.reg("INSN_PUSH"))
    with pytest.raises(UndefinedRegisterError, match="32 bits"):
        dev.sim.write_reg(isa.reg("INSN0"), 1 << 32)


def test_unknown_opcode_pushed(dev):
    dev.sim.write_reg(isa.reg("INSN0"), 0x7F)
    with pytest.raises(IllegalInstructionError, match="unknown opcode 0x7f"):
        dev.sim.write_reg(isa.reg("INSN_PUSH"), 1)


def test_illegal_instruction_fields(dev):
    s = dev.t.sram_base
    cases = [
        (isa.make("kv_append", src=s, dst=s, m=2, kv_heads=1, d=16, pos=255, capacity=256), "overflows capacity"),
        (isa.make("mat_qk", q=s, kc=s, out=s, m=1, heads=3, kv_heads=2, l=4, d=16), "not a multiple of kv_heads"),
        (isa.make("mvm", x=s, w=s, out=s, m=64, k=1024, n=8), "exceeds act_buffer_bytes"),
        (isa.make("mvm", x=s, w=s, out=s, m=1, k=0, n=8), "field k must be > 0"),
        (isa.make("rope", src=s, dst=s, table=s, m=2, heads=1, d=16, pos0=255), "exceed max_seq_len"),
    ]
    for insn, msg in cases:
        with pytest.raises(IllegalInstructionError, match=msg):
            dev.sim.issue(insn)


def test_weight_format_must_be_supported_by_target():
    sim = Simulator(get_target("tiny").replace(weight_formats=("int8",)), functional=False)
    s = sim.target.sram_base
    with pytest.raises(IllegalInstructionError, match="int4 is not supported by target tiny"):
        sim.issue(isa.make("mvm", wfmt="int4", x=s, w=s, out=s, m=1, k=16, n=8))


def test_all_simulator_errors_are_hal_errors():
    for exc in (AddressError, UnalignedAccessError, UninitializedReadError, UndefinedRegisterError,
                IllegalInstructionError, HazardError):
        assert issubclass(exc, HALError)


def _two_step(dev, wait_second, unit_second="sfu"):
    """eltwise writes t; a second instruction (on sfu or mvm) reads t."""
    a = dev.put(np.ones(64, np.float16))
    t, out = dev.alloc(128), dev.alloc(256)
    first = isa.make("eltwise", a=a, b=a, dst=t, count=64)
    if unit_second == "sfu":
        second = isa.make("eltwise", a=t, b=a, dst=out, count=64, wait=wait_second)
    else:
        second = isa.make("mvm", wfmt="fp16", x=t, w=dev.put(np.ones((2, 64), np.float16), "hbm"), out=out,
                          m=1, k=64, n=2, wait=wait_second)
    return first, second


@pytest.mark.parametrize("unit", ["sfu", "mvm"])
def test_missing_wait_is_a_hazard(dev, unit):
    first, second = _two_step(dev, [], unit)
    with pytest.raises(HazardError, match=r"#1 .*reads .* #0 eltwise.dst \(sfu\).*add wait=sfu"):
        dev.run(first, second)


@pytest.mark.parametrize("unit", ["sfu", "mvm"])
def test_wait_bit_resolves_the_hazard(dev, unit):
    dev.run(*_two_step(dev, ["sfu"], unit))


def test_write_after_read_across_units_is_a_hazard(dev):
    x = dev.put(np.ones((1, 64), np.float16))
    w = dev.put(np.ones((64, 64), np.float16), "hbm")
    reader = isa.make("mvm", wfmt="fp16", x=x, w=w, out=dev.alloc(128), m=1, k=64, n=64)
    writer = isa.make("eltwise", a=dev.put(np.ones(64, np.float16)), b=x, dst=x, count=64)
    with pytest.raises(HazardError, match="eltwise.dst writes"):
        dev.run(reader, writer)


def test_host_must_wait_before_reading_results(dev):
    first, _ = _two_step(dev, [])
    dev.sim.issue(first)
    with pytest.raises(HazardError, match="call wait"):
        dev.get(first["dst"], np.float16, 64)
    dev.sim.wait()
    dev.get(first["dst"], np.float16, 64)


def test_hazard_check_can_be_disabled():
    dev = Device("tiny", check_hazards=False)
    dev.run(*_two_step(dev, []))


def test_errors_in_an_aux_stream_name_the_entry(dev):
    s = dev.t.sram_base
    prog = [isa.make("nop"), isa.make("kv_append", src=s, dst=s, m=2, kv_heads=1, d=16, pos=255, capacity=256)]
    with pytest.raises(IllegalInstructionError, match=r"aux stream entry 1 at 0x[0-9a-f]+: kv_append"):
        dev.run(*prog)
