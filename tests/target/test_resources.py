"""The resource estimate (dlavm/target/resources.py; doc/targets.md and doc/dse.md, "Resource estimate").

Properties over valid variants of the built-in targets: every count is non-decreasing in each size field,
the MVM's DSPs are exactly the MAC lanes over two, memories are the smallest block counts that hold their
bytes at their port width, and the total is the sum of the units. Then the parts table, the coefficient
table (each coefficient used, labelled and documented) and ``dlavm targets --resources``.
"""
from __future__ import annotations

import math
import pathlib
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dlavm.cli.targets import targets
from dlavm.target import FIELD_NAMES, Target, TargetError, builtin_names, get_target
from dlavm.target import resources
from dlavm.target.resources import (BRAM36_BYTES, COEFFICIENTS, KINDS, PARTS, URAM_BYTES, Resources, bram36,
                                    estimate, exceeded, part_capacity, total, uram, utilisation)

ROOT = pathlib.Path(__file__).resolve().parents[2]
POW2 = [1 << i for i in range(11)]
KIB, MIB = 1024, 1024 * 1024

#: A strategy per field the model reads, wide enough to cross every rounding edge.
FIELD_VALUES = {
    "tin": st.sampled_from(POW2 + [384, 768, 2048]),
    "tout": st.integers(1, 96),
    "mvm_groups": st.integers(1, 4),
    "int4_group": st.sampled_from(POW2[1:]),
    "mat_tin": st.integers(1, 96),
    "mat_tout": st.integers(1, 48),
    "sfu_lanes": st.integers(1, 96),
    "tree_lanes": st.sampled_from(POW2[1:]),
    "hbm_channels": st.integers(1, 48),
    "hbm_bits_per_cycle": st.integers(1, 320).map(lambda v: 8 * v),
    "ddr_bits_per_cycle": st.integers(1, 160).map(lambda v: 8 * v),
    "dma_burst_bytes": st.integers(1, 9 * KIB),
    "sram_bytes": st.integers(1, 24 * MIB),
    "act_buffer_bytes": st.integers(1, 3 * MIB),
    "queue_depth": st.integers(1, 40),
}
#: Fields the model does not read, and values to set them to.
OTHER_VALUES = {
    "clock_mhz": st.floats(50, 800),
    "mvm_latency": st.integers(0, 64),
    "mat_latency": st.integers(0, 64),
    "sfu_latency": st.integers(0, 64),
    "dma_latency": st.integers(0, 64),
    "dma_setup_cycles": st.integers(0, 100),
    "burst_overhead_cycles": st.integers(0, 8),
    "host_rtt_us": st.floats(0.01, 10),
    "host_bytes_per_cycle": st.integers(1, 128),
    "aux_cycles_per_insn": st.integers(1, 16),
    "max_seq_len": st.integers(1, 32768),
    "int8_block": st.integers(1, 64),
    "hbm_interleave_bytes": st.integers(1, 64).map(lambda v: 32 * v),
}


def _valid(base: Target, changes: dict) -> Target:
    try:
        return base.replace(**changes)
    except TargetError:
        assume(False)


@st.composite
def variants(draw) -> Target:
    """A valid target: a built-in with some of the model's fields changed (invalid draws are rejected)."""
    base = get_target(draw(st.sampled_from(builtin_names())))
    changes = {f: draw(s) for f, s in FIELD_VALUES.items() if draw(st.booleans())}
    return _valid(base, changes)


def _lanes(t: Target) -> int:
    return t.tin * t.tout * t.mvm_groups


PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.filter_too_much])


# ---------------------------------------------------------------- properties

def test_size_fields_are_target_fields():
    assert set(resources.INPUT_FIELDS) <= set(FIELD_NAMES)
    assert set(resources.SIZE_FIELDS) == set(resources.INPUT_FIELDS) - {"int4_group"}
    assert set(FIELD_VALUES) == set(resources.INPUT_FIELDS)


@PROPERTY
@given(t=variants(), field=st.sampled_from(resources.SIZE_FIELDS), data=st.data())
def test_every_count_is_monotone_in_each_size_field(t, field, data):
    bigger_value = data.draw(FIELD_VALUES[field], label="bigger")
    assume(bigger_value > getattr(t, field))
    bigger = _valid(t, {field: bigger_value})
    small, large = estimate(t), estimate(bigger)
    for unit in small:
        for kind in KINDS:
            assert getattr(large[unit], kind) >= getattr(small[unit], kind), (field, unit, kind)


@PROPERTY
@given(t=variants(), data=st.data())
def test_a_larger_int4_group_never_costs_more(t, data):
    group = data.draw(FIELD_VALUES["int4_group"], label="int4_group")
    assume(group > t.int4_group)
    coarser = _valid(t, {"int4_group": group})
    for kind in KINDS:
        assert getattr(total(coarser), kind) <= getattr(total(t), kind), kind


@PROPERTY
@given(t=variants(), field=st.sampled_from(sorted(OTHER_VALUES)), data=st.data())
def test_fields_outside_the_model_do_not_change_it(t, field, data):
    assert field not in resources.INPUT_FIELDS
    other = _valid(t, {field: data.draw(OTHER_VALUES[field], label=field)})
    assert estimate(other) == estimate(t)


@PROPERTY
@given(t=variants(), k=st.integers(2, 4))
def test_mvm_dsp_is_the_mac_lanes_over_two(t, k):
    dsp = estimate(t)["mvm"].dsp
    assert dsp == math.ceil(_lanes(t) / 2)           # an odd last product takes a DSP of its own
    if _lanes(t) % 2 == 0:
        assert 2 * dsp == _lanes(t)
        scaled = _valid(t, {"mvm_groups": t.mvm_groups * k})
        assert estimate(scaled)["mvm"].dsp == k * dsp  # exactly proportional


@PROPERTY
@given(t=variants())
def test_total_is_the_sum_of_the_units(t):
    est = estimate(t)
    assert list(est) == [*resources.UNITS, "total"]
    assert est["total"] == sum((est[u] for u in resources.UNITS), Resources(0, 0, 0, 0, 0))
    assert total(t) == est["total"]
    for res in est.values():
        assert all(isinstance(v, int) and v >= 0 for v in res.as_dict().values())


# ---------------------------------------------------------------- memories: exact counts

@pytest.mark.parametrize("nbytes,width,brams,urams", [
    (0, 64, 0, 0),
    (1, 64, 1, 1),
    (4096, 64, 1, 1),
    (4097, 64, 2, 1),
    (32 * KIB, 64, 8, 1),
    (32 * KIB + 1, 64, 9, 2),
    (2048, 256, 4, 4),                # a 256-bit FIFO of 2 KiB: width-bound, 4 columns
    (8 * MIB, 2048, 2048, 256),       # vcu128's SRAM at the MVM's activation width
    (64 * KIB, 256, 16, 4),           # tiny's activation buffer: URAM width-bound, BRAM capacity-bound
    (4112, 64, 2, 1),                 # the largest PWL table: 514 entries of 8 bytes
])
def test_memory_counts_for_known_sizes(nbytes, width, brams, urams):
    assert bram36(nbytes, width) == brams
    assert uram(nbytes, width) == urams


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(nbytes=st.integers(1, 1 << 30), width=st.integers(1, 8192), kind=st.sampled_from(["bram36", "uram"]))
def test_memory_count_is_the_fewest_blocks_that_hold_the_bytes_at_the_width(nbytes, width, kind):
    count, block = (bram36, BRAM36_BYTES) if kind == "bram36" else (uram, URAM_BYTES)
    n = count(nbytes, width)
    assert n * block >= nbytes and n * 64 >= width
    assert (n - 1) * block < nbytes or (n - 1) * 64 < width


def test_a_wider_buffer_port_never_needs_fewer_urams():
    # A width x depth array count (columns x rows) would drop here: 96 x 2 URAMs at tin 384, 128 x 1 at 512.
    sram = 3 * MIB + 32
    narrow, wide = (get_target("vcu128").replace(tin=tin, sram_bytes=sram) for tin in (384, 512))
    assert estimate(narrow)["buffers"].uram <= estimate(wide)["buffers"].uram


def test_reference_memories_counted_exactly():
    vcu = estimate(get_target("vcu128"))
    assert vcu["buffers"].uram == 8 * MIB // URAM_BYTES + 1 * MIB // URAM_BYTES == 288
    # 32 HBM ports x (read + write FIFO of 2 x 1 KiB at 256 bit: 4 BRAM) + the 512-bit DDR port (8 each)
    assert vcu["dma"].bram36 == 32 * 2 * 4 + 2 * 8 == 272
    # 16 lane pairs x (act table + exp ROM) x 2 BRAM36 (514 x 8 bytes = 4112 bytes)
    assert vcu["sfu"].bram36 == 16 * 2 * 2 == 64
    assert vcu["total"].uram == 288 and vcu["total"].bram36 == 336
    tiny = estimate(get_target("tiny"))
    assert tiny["buffers"].uram == 1 * MIB // URAM_BYTES + 256 // 64 == 36


# ---------------------------------------------------------------- parts

def test_parts_capacities_and_sources():
    cap = Resources(lut=1_303_680, ff=2_607_360, dsp=9_024, bram36=2_016, uram=960)
    assert PARTS["xcvu37p"][0] == cap and "DS890" in PARTS["xcvu37p"][1]
    assert PARTS["xcu280"][0] == cap and "DS963" in PARTS["xcu280"][1]
    assert part_capacity("XCVU37P") == cap


def test_unknown_part_is_refused_naming_the_known_ones():
    with pytest.raises(TargetError, match=r"unknown FPGA part 'xc7z020'; known parts: xcu280, xcvu37p"):
        exceeded(Resources(0, 0, 0, 0, 0), "xc7z020")
    with pytest.raises(TargetError, match="known parts"):
        utilisation(Resources(0, 0, 0, 0, 0), "")


@pytest.mark.parametrize("kind", KINDS)
def test_exceeded_names_exactly_the_kinds_over_capacity(kind):
    cap = part_capacity("xcu280")
    assert exceeded(cap, "xcu280") == []                          # at capacity still fits
    over = Resources(**{**cap.as_dict(), kind: getattr(cap, kind) + 1})
    assert exceeded(over, "xcu280") == [kind]
    assert exceeded(cap + cap, "xcu280") == list(KINDS)


def test_vcu128_fits_its_device_with_room_to_route():
    res = total(get_target("vcu128"))
    assert exceeded(res, "xcvu37p") == []
    frac = utilisation(res, "xcvu37p")
    assert max(frac.values()) < 0.7           # a design that would not route at 200 MHz is a wrong coefficient
    assert frac["lut"] > 0.2 and frac["dsp"] > 0.2   # the MAC arrays are most of a real core


def test_a_target_past_the_device_is_reported():
    big = get_target("vcu128").replace(tin=512, tout=64, mvm_groups=2)
    assert {"dsp", "lut"} <= set(exceeded(total(big), "xcvu37p"))


def test_resources_add_and_as_dict():
    a, b = Resources(1, 2, 3, 4, 5), Resources(10, 20, 30, 40, 50)
    assert a + b == Resources(11, 22, 33, 44, 55)
    assert list(a.as_dict()) == list(KINDS) == ["lut", "ff", "dsp", "bram36", "uram"]
    with pytest.raises(TypeError):
        a + 1


# ---------------------------------------------------------------- the coefficient table

def _names_per_kind(name: str) -> set[str]:
    return set(name.split("_"))


def test_every_coefficient_is_positive_and_reasoned():
    for name, (value, why) in COEFFICIENTS.items():
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name
        assert len(why) > 30, name
        if _names_per_kind(name) & {"lut", "ff"}:
            assert why.startswith("Uncalibrated estimate"), name


@pytest.mark.parametrize("name", sorted(COEFFICIENTS))
def test_every_coefficient_enters_the_reference_estimate(name, monkeypatch):
    before = estimate(get_target("vcu128"))
    value, why = COEFFICIENTS[name]
    monkeypatch.setitem(COEFFICIENTS, name, (value * 10 + 1, why))
    assert estimate(get_target("vcu128")) != before, f"{name} does not change the estimate"


def test_doc_lists_every_coefficient_and_no_other():
    text = (ROOT / "doc" / "targets.md").read_text()
    section = text.split("## Resource estimate", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            listed |= set(re.findall(r"`([a-z0-9_]+)`", line.rstrip("|").rsplit("|", 1)[-1]))
    listed.discard("coefficients")
    assert listed == set(COEFFICIENTS)
    for value, _ in COEFFICIENTS.values():   # the values live in the code only
        assert not re.search(rf"\b{value:g}\s*(LUT|FF|DSP)", section)


# ---------------------------------------------------------------- dlavm targets --resources

def _table(output: str, name: str) -> dict[str, list[str]]:
    block = output.split(f"{name}: resource estimate", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[1:]:
        cells = line.split()
        if cells and not set(cells[0]) <= {"-"}:
            rows[" ".join(cells[:-5])] = cells[-5:]
    return rows


def test_cli_prints_each_unit_of_each_selected_target():
    res = CliRunner().invoke(targets, ["--resources", "--name", "vcu128", "--name", "tiny"])
    assert res.exit_code == 0, res.output
    assert "uncalibrated" in res.output
    for name in ("vcu128", "tiny"):
        rows = _table(res.output, name)
        assert rows["unit"] == ["LUT", "FF", "DSP", "BRAM36", "URAM"]
        for unit, r in estimate(get_target(name)).items():
            assert rows[unit] == [str(v) for v in r.as_dict().values()]
    assert "xcvu37p" not in res.output


def test_cli_part_shows_the_utilisation():
    res = CliRunner().invoke(targets, ["--name", "vcu128", "--part", "XCVU37P"])   # --part implies --resources
    assert res.exit_code == 0, res.output
    rows = _table(res.output, "vcu128")
    frac = utilisation(total(get_target("vcu128")), "xcvu37p")
    assert rows["% of xcvu37p"] == [f"{100 * frac[k]:.1f}" for k in KINDS]
    assert rows["xcvu37p"] == [str(v) for v in PARTS["xcvu37p"][0].as_dict().values()]
    assert res.output.rstrip().endswith("fits xcvu37p")


def test_cli_reports_a_target_over_the_part(tmp_path):
    p = tmp_path / "huge.json"
    p.write_text('{"base": "vcu128", "name": "huge", "tin": 512, "tout": 64, "mvm_groups": 2}')
    res = CliRunner().invoke(targets, ["--file", str(p), "--name", "huge", "--part", "xcu280"])
    assert res.exit_code == 0, res.output
    over = exceeded(total(get_target(str(p))), "xcu280")
    assert res.output.rstrip().endswith(f"exceeds xcu280: {', '.join(over)}")


def test_cli_refuses_an_unknown_part():
    from dlavm.cli.main import main
    res = CliRunner().invoke(main, ["targets", "--resources", "--part", "vu9p"])
    assert res.exit_code == 2
    assert res.stderr == "error: unknown FPGA part 'vu9p'; known parts: xcu280, xcvu37p\n"


def test_cli_without_resources_keeps_the_figures_table():
    res = CliRunner().invoke(targets, ["--name", "vcu128"])
    assert res.exit_code == 0 and "peak TMAC/s" in res.output and "BRAM36" not in res.output
