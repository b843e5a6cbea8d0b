"""Device descriptions: built-ins, derived figures, user files, validation."""
from __future__ import annotations

import json

import pytest

from dlavm.target import FIELD_NAMES, Target, TargetError, builtin_names, get_target, list_targets


def test_builtins_are_instances_of_one_schema():
    assert builtin_names() == ["tiny", "u280", "v80", "vcu128"]
    for t in list_targets():
        assert type(t) is Target
        assert set(t.to_dict()) == set(FIELD_NAMES)


def test_vcu128_is_the_reference():
    t = get_target("vcu128")
    f = t.figures
    assert (t.clock_mhz, t.hbm_channels, t.hbm_bits_per_cycle, t.tin, t.tout) == (200.0, 32, 256, 128, 32)
    assert t.int4_group == 128 and set(t.weight_formats) == {"int4", "int8", "fp16"}
    assert (t.int8_block, t.tree_lanes) == (64, 128)
    assert f.hbm_bytes_per_cycle == 32 * 32 == 1024
    assert f.hbm_gbytes_per_s == pytest.approx(204.8)
    assert f.peak_macs_per_cycle == 4096
    assert f.peak_tmacs_per_s == pytest.approx(0.8192)
    assert f.ridge_macs_per_byte == 4.0
    assert f.host_rtt_cycles == 200           # 1 us at 200 MHz
    assert f.attainable_macs_per_cycle(0.5) == 512 and f.attainable_macs_per_cycle(100) == 4096


def test_variants_override_only_what_differs():
    v80, ref = get_target("v80"), get_target("vcu128")
    assert v80.hbm_channels == 4 and v80.hbm_bits_per_cycle > ref.hbm_bits_per_cycle
    assert v80.tin == ref.tin and v80.int4_group == ref.int4_group     # inherited
    tiny = get_target("tiny")
    assert tiny.hbm_channels == 2 and tiny.tin < ref.tin


def test_derived_figures_follow_fields():
    t = get_target("vcu128").replace(hbm_channels=16, clock_mhz=100.0)
    assert t.figures.hbm_bytes_per_cycle == 512
    assert t.figures.hbm_gbytes_per_s == pytest.approx(51.2)
    assert t.figures.host_rtt_cycles == 100


def test_user_target_file_with_base(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"base": "vcu128", "name": "mine", "hbm_channels": 8}))
    child = tmp_path / "child.json"
    child.write_text(json.dumps({"base": "base.json", "name": "mine2", "clock_mhz": 250}))
    t = get_target(str(child))
    assert (t.name, t.hbm_channels, t.clock_mhz, t.tin) == ("mine2", 8, 250, 128)


def test_standalone_user_target_must_give_every_field(tmp_path):
    p = tmp_path / "solo.json"
    p.write_text(json.dumps({"name": "solo", "hbm_channels": 4}))
    with pytest.raises(TargetError, match=r"lacks field\(s\) \['clock_mhz'"):
        get_target(p)
    full = get_target("vcu128").to_dict() | {"name": "solo", "hbm_channels": 4}
    p.write_text(json.dumps(full))
    assert get_target(p).figures.hbm_bytes_per_cycle == 4 * 32


@pytest.mark.parametrize("data,msg", [
    ({"base": "vcu128", "name": "x", "hbm_chanels": 4}, "unknown target field.*hbm_chanels"),
    ({"base": "vcu128", "name": "x", "tin": 0}, r"field tin = 0 must be in \[1, 2\*\*63 - 1\]"),
    ({"base": "vcu128", "name": "x", "weight_formats": ["int3"]}, "weight format 'int3' unknown"),
    ({"base": "vcu128", "name": "x", "ddr_base": 4096}, "overlaps"),
    ({"base": "vcu128", "name": "x", "hbm_bits_per_cycle": 12}, "multiple of 8"),
    ({"base": "vcu128", "name": "x", "address_bits": 40, "sram_base": 1 << 38}, "exceeds what a 32-bit address field"),
    ({"hbm_channels": 4}, "needs a 'name'"),
    # numerics parameters: refused with the field, the value and the rule
    ({"base": "vcu128", "name": "x", "int4_group": 96}, r"int4_group=96 must be a power of two"),
    ({"base": "vcu128", "name": "x", "int4_group": 2048}, r"int4_group=2048 exceeds 1024: .* more than 53 bits"),
    ({"base": "tiny", "name": "x", "tin": 24, "int4_group": 64}, r"int4_group=64 and tin=24 must divide one another"),
    ({"base": "vcu128", "name": "x", "int8_block": 128}, r"int8_block=128 exceeds 64: .* more than 53 bits"),
    ({"base": "vcu128", "name": "x", "int8_block": 0}, r"field int8_block = 0 must be in \[1, "),
    ({"base": "vcu128", "name": "x", "tree_lanes": 48}, r"tree_lanes=48 must be a power of two"),
    ({"base": "vcu128", "name": "x", "tree_lanes": 1}, r"tree_lanes=1 must be a power of two >= 2"),
    # strict types: an int field takes a JSON integer only, a float field a finite number
    ({"base": "tiny", "name": "x", "hbm_channels": 2.5}, r"field hbm_channels = 2.5 must be an integer, not float"),
    ({"base": "tiny", "name": "x", "hbm_channels": 2.0}, r"field hbm_channels = 2.0 must be an integer, not float"),
    ({"base": "tiny", "name": "x", "hbm_channels": True}, r"field hbm_channels = True must be an integer, not bool"),
    ({"base": "tiny", "name": "x", "tin": 16.5}, r"field tin = 16.5 must be an integer, not float"),
    ({"base": "tiny", "name": "x", "sram_bytes": -1}, r"field sram_bytes = -1 must be in \[1, "),
    ({"base": "tiny", "name": "x", "tout": 2**64}, r"field tout = 18446744073709551616 must be in \[1, 2\*\*63 - 1\]"),
    ({"base": "tiny", "name": "x", "clock_mhz": float("inf")}, r"field clock_mhz = inf must be a finite number > 0"),
    ({"base": "tiny", "name": "x", "clock_mhz": float("nan")}, r"field clock_mhz = nan must be a finite number > 0"),
    ({"base": "tiny", "name": "x", "host_rtt_us": "0.1"}, r"field host_rtt_us = '0.1' must be a number, not str"),
    ({"base": "tiny", "name": "x", "clock_mhz": False}, r"field clock_mhz = False must be a number, not bool"),
    ({"base": "tiny", "name": 5}, r"field name = 5 must be a string, not int"),
    ({"base": "tiny", "name": " "}, r"field name = ' ' must not be empty"),
    ({"base": "tiny", "name": "x", "description": [1]}, r"field description = \[1\] must be a string, not list"),
    ({"base": "tiny", "name": "x", "weight_formats": "int4"}, r"field weight_formats = 'int4' must be a list"),
    ({"base": "tiny", "name": "x", "weight_formats": []}, r"field weight_formats is empty"),
    ({"base": 7, "name": "x"}, r"field base = 7 must be a string"),
])
def test_bad_target_files_name_the_field(tmp_path, data, msg):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(TargetError, match=msg) as info:
        get_target(p)
    assert str(info.value).startswith(f"target file '{p}': "), "the refusal names the file"


def test_json_text_quirks_are_refused(tmp_path):
    """JSON's Infinity, numbers past float64 (parsed as inf) and repeated keys never reach a Target."""
    for text, msg in (('{"base": "tiny", "name": "x", "clock_mhz": Infinity}', "clock_mhz = inf"),
                      ('{"base": "tiny", "name": "x", "mvm_latency": 1e400}', "mvm_latency = inf must be an integer"),
                      ('{"base": "tiny", "name": "x", "tin": 16, "tin": 32}', r"key\(s\) \['tin'\] given more than once")):
        p = tmp_path / "quirk.json"
        p.write_text(text)
        with pytest.raises(TargetError, match=msg):
            get_target(p)


def test_base_refusal_names_both_files(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps({"base": "tiny", "name": "b", "tin": 16.5}))
    (tmp_path / "top.json").write_text(json.dumps({"base": "base.json", "name": "t"}))
    with pytest.raises(TargetError, match=r"top.json': base 'base.json': target file '.*base.json': .*tin = 16.5"):
        get_target(tmp_path / "top.json")


def test_unknown_target_and_missing_file():
    with pytest.raises(TargetError, match="unknown target 'nope'.*tiny"):
        get_target("nope")
    with pytest.raises(TargetError, match="does not exist"):
        get_target("/no/such/target.json")


def test_base_cycle_is_reported(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"base": "b.json", "name": "a"}))
    (tmp_path / "b.json").write_text(json.dumps({"base": "a.json", "name": "b"}))
    with pytest.raises(TargetError, match="loops"):
        get_target(tmp_path / "a.json")


def test_targets_are_frozen():
    with pytest.raises(Exception):
        get_target("tiny").tin = 3


def test_yaml_target_loads_or_says_pyyaml_is_missing(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("base: vcu128\nname: y\nhbm_channels: 16\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(TargetError, match="PyYAML is not installed"):
            get_target(p)
        return
    assert get_target(p).hbm_channels == 16


def test_numerics_limits_follow_the_exactness_argument():
    """doc/isa.md 7.2: fp16 x int4 products take 43 bits, fp16 x int8 47; float64 sums 53 exactly."""
    from dlavm.target.schema import exact_block_limit
    assert exact_block_limit("int4") == 1024 and exact_block_limit("int8") == 64
    t = get_target("tiny").replace(name="edge", int4_group=1024, int8_block=64, tree_lanes=2)
    assert (t.int4_group, t.int8_block, t.tree_lanes) == (1024, 64, 2)
