"""The Yosys resource flow (hw_models/rtl/synth.py, doc/rtl.md "Resources")."""
from __future__ import annotations

import pytest

from hw_models.rtl.synth import count, dedup_rtlil, split_plan, synth

_IL = """autoidx 9
attribute \\top 1
module \\top
  wire input 1 \\a
  wire output 2 \\y
  wire $tmp$3
  cell \\inv$top.u0 \\u0
    connect \\a \\a
    connect \\y $tmp$3
  end
  cell \\inv$top.u1 \\u1
    connect \\a $tmp$3
    connect \\y \\y
  end
  cell \\buf$top.u2 \\u2
    connect \\a \\a
  end
end
module \\inv$top.u0
  wire input 1 \\a
  wire output 2 \\y
  wire $not$7_Y
  cell $not $not$7
    connect \\A \\a
    connect \\Y $not$7_Y
  end
  connect \\y $not$7_Y
end
module \\inv$top.u1
  wire input 1 \\a
  wire output 2 \\y
  wire $not$12_Y
  cell $not $not$12
    connect \\A \\a
    connect \\Y $not$12_Y
  end
  connect \\y $not$12_Y
end
module \\buf$top.u2
  wire input 1 \\a
  wire output 2 \\y
  wire $pos$13_Y
  cell $pos $pos$13
    connect \\A \\a
    connect \\Y $pos$13_Y
  end
  connect \\y $pos$13_Y
end
"""


def test_dedup_merges_identical_modules():
    text, before, after = dedup_rtlil(_IL)
    assert (before, after) == (4, 3)
    assert "module \\inv$top.u1" not in text
    assert text.count("cell \\inv$top.u0 ") == 2          # both instances now name the kept module
    assert "module \\buf$top.u2" in text                   # same shape, different cell type: kept


def test_dedup_is_bottom_up():
    # two parents differing only in which (identical) child they instantiate merge once the children do
    il = _IL + "".join(f"""module \\wrap$top.w{i}
  wire input 1 \\a
  cell \\inv$top.u{i} \\u
    connect \\a \\a
  end
end
""" for i in (0, 1))
    _, before, after = dedup_rtlil(il)
    assert (before, after) == (6, 4)


_SYS = """module \\sys
  wire input 1 \\a
  cell \\top \\t0
    connect \\a \\a
  end
  cell \\top \\t1
    connect \\a \\a
  end
end
"""


def test_split_plan_counts_instances():
    text, _, _ = dedup_rtlil(_IL)
    assert split_plan(text, "top") == ({"\\top": 1}, {"\\inv$top.u0": 2, "\\buf$top.u2": 1})
    # two instances of top: split deep, top's own logic is one job standing for both
    sys_il = text + _SYS
    assert split_plan(sys_il, "sys") == ({"\\sys": 1}, {"\\top": 2})
    assert split_plan(sys_il, "sys", frozenset({"top"})) == (
        {"\\sys": 1, "\\top": 2}, {"\\inv$top.u0": 4, "\\buf$top.u2": 2})


def test_count_kinds():
    c = count({"LUT6": 3, "LUT2": 1, "RAM64M": 2, "SRLC32E": 1, "FDRE": 5, "FDCE": 1, "DSP48E2": 2,
               "RAMB36E2": 1, "RAMB18E2": 3, "URAM288": 4, "CARRY8": 9})
    assert c == {"lut": 3 + 1 + 2 * 4 + 1, "ff": 6, "dsp": 2, "bram36": 2.5, "uram": 4}   # a RAM64M is 4 LUTs


@pytest.mark.rtl_full
def test_synth_small_block():
    r = synth("fp16_to_fp32", target="tiny", timeout=600)
    assert r.lut > 0 and r.ff == 0 and r.dsp == 0


def test_coarse_ff_bits():
    from hw_models.rtl.synth import coarse_ff_bits
    assert coarse_ff_bits({"$dff_32": 2, "$adffe_8": 1, "$mux_32": 5, "$sdffce_3": 1}) == 64 + 8 + 3
