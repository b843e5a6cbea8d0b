"""The core's front end, DMA engine and top (doc/isa.md sections 3-5, 9 `dma`; doc/rtl.md).

* lint (``verilator --lint-only -Wall``) of frontend, dma_engine and dlavm_core, for tiny and vcu128;
* cocotb bench ``benches/cocotb_core.py`` on ``frontend_tb`` (front end + dma + stand-in units with known busy
  times) and on ``dlavm_core`` (once every unit exists): CSB registers and csb_err, DMA copies (hypothesis-drawn
  shapes, strides and regions, edges around PORT_BYTES) pushed through INSN0..15 + INSN_PUSH and through an
  AUX stream, compared with hw_models.Simulator; wait bits, fences, nops and queues, whose start/completion
  cycles must equal hw_models.timing.TimingModel's given the same unit busy times; STATUS bits; errors.
"""
from __future__ import annotations

import pytest

from hw_models.rtl.build import RTL_DIR, lint, rtl_sources, run_cocotb
from tests.rtl.conftest import BENCHES, draw_cases, st, write_cases

TARGETS = ("tiny", "vcu128")
UNIT_FILES = ("units/mvm_engine.sv", "units/mat_engine.sv", "units/sfu.sv")
WAIT_UNITS = ("dma", "mvm", "mat", "sfu")


def units_present() -> bool:
    return all((RTL_DIR / f).is_file() for f in UNIT_FILES)


@pytest.mark.parametrize("target", TARGETS)
def test_lint_frontend(target):
    lint("frontend", rtl_sources("core/frontend.sv"), target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_lint_dma_engine(target):
    lint("dma_engine", rtl_sources("units/dma_engine.sv"), target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_lint_core(target):
    if not units_present():
        pytest.skip(f"units not written yet: {[f for f in UNIT_FILES if not (RTL_DIR / f).is_file()]}")
    lint("dlavm_core", rtl_sources("fp", "units", "core"), target=target)


# ---------------------------------------------------------------- cases
PB = 64  # tiny's PORT_BYTES: the edges below sit around it
ROW_BYTES = [32, PB - 32, PB, PB + 32, 2 * PB, 3 * PB + 32, 1024 + 32]


@st.composite
def dma_case(draw):
    rb = draw(st.sampled_from(ROW_BYTES + [0]) if draw(st.integers(0, 9)) == 0 else st.sampled_from(ROW_BYTES))
    rows = draw(st.sampled_from([0, 1, 1, 2, 3, 5]))
    ss = draw(st.sampled_from([rb, rb, rb + 32, rb + 64, rb + 96, 0]))
    ds = draw(st.sampled_from([rb, rb, rb + 32, rb + 96]))
    return {"sreg": draw(st.sampled_from(["hbm", "ddr", "sram"])),
            "dreg": draw(st.sampled_from(["hbm", "ddr", "sram"])),
            "soff": 32 * draw(st.integers(0, 500)), "doff": 32 * draw(st.integers(0, 500)),
            "row_bytes": rb, "rows": rows, "src_stride": ss, "dst_stride": ds}


FIXED_DMA = [  # large contiguous copies (one request), a strided block, a broadcast row
    {"sreg": "hbm", "dreg": "sram", "soff": 0, "doff": 0, "row_bytes": 8192, "rows": 1, "src_stride": 0,
     "dst_stride": 0},
    {"sreg": "ddr", "dreg": "hbm", "soff": 64, "doff": 32, "row_bytes": 512, "rows": 16, "src_stride": 512,
     "dst_stride": 512},
    {"sreg": "sram", "dreg": "ddr", "soff": 96, "doff": 0, "row_bytes": 160, "rows": 12, "src_stride": 256,
     "dst_stride": 192},
    {"sreg": "sram", "dreg": "sram", "soff": 0, "doff": 0, "row_bytes": 96, "rows": 4, "src_stride": 0,
     "dst_stride": 96},
]


@st.composite
def timing_program(draw):
    n = draw(st.integers(4, 16))
    out = []
    for _ in range(n):
        op = draw(st.sampled_from(["sfu", "sfu", "mat", "mvm", "dma", "dma", "nop", "fence"]))
        wait = sorted(draw(st.sets(st.sampled_from(WAIT_UNITS), max_size=3)))
        out.append([op, draw(st.integers(1, 12)), wait])
    return out


def core_cases() -> dict:
    return {"dma": FIXED_DMA + draw_cases(dma_case()),
            "programs": [[["sfu", 9, []], ["sfu", 3, []], ["dma", 4, ["sfu"]], ["mvm", 2, ["dma"]],
                          ["fence", 1, ["mvm"]], ["mat", 5, []], ["nop", 1, ["mat"]], ["sfu", 1, ["sfu"]]]]
            + draw_cases(timing_program())}


def test_frontend_bench(tmp_path):
    """frontend_tb: front end + dma_engine + stand-in units (always available)."""
    run_cocotb("frontend_tb", rtl_sources("core/frontend.sv", "units/dma_engine.sv", "tb/frontend_tb.sv"),
               "cocotb_core", test_dir=BENCHES, name="frontend_tb", extra_env=write_cases(tmp_path, core_cases()))


def test_core_bench(tmp_path):
    """dlavm_core with the real units: the same bench (DMA paths, registers, errors)."""
    if not units_present():
        pytest.skip(f"units not written yet: {[f for f in UNIT_FILES if not (RTL_DIR / f).is_file()]}")
    run_cocotb("dlavm_core", rtl_sources("fp", "units", "core"), "cocotb_core", test_dir=BENCHES,
               name="dlavm_core", extra_env=write_cases(tmp_path, core_cases()))
