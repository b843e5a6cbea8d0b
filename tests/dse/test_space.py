"""The sweep space (doc/dse.md, "The sweep"): --vary typing and refusals, sweep files, precedence,
grid order, random and Latin hypercube sampling, point identity, the spec's JSON form."""
from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlavm.dse.space import DEFAULTS, MAX_AXIS_VALUES, RUN_AXES, Axis, SweepError, SweepSpec, point_id
from dlavm.dse.sweep_input import build_spec, parse_vary
from dlavm.target import get_target

BASE = get_target("vcu128")


def spec_of(*vary, model="m", target=None, seq=None, ctx=None, sample=None, seed=None, llm=None, sweep_file=None):
    return build_spec(model, target, list(vary), seq, ctx, sample, seed, llm, sweep_file)


def refusal(fn, *args, **kwargs) -> str:
    """The message of the SweepError ``fn`` raises; it must be one line."""
    with pytest.raises(SweepError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- --vary: lists and ranges, typed

def test_a_list_of_an_integer_field_holds_ints():
    axis = parse_vary("tin=64,128", BASE)
    assert axis == Axis("tin", (64, 128))
    assert all(type(v) is int for v in axis.values)
    assert axis.grid_values() == (64, 128)


def test_a_float_field_holds_floats_so_150_and_150_0_are_one_point():
    axis = parse_vary("clock_mhz=150,200.5,1e3", BASE)
    assert axis.values == (150.0, 200.5, 1000.0)
    assert all(type(v) is float for v in axis.values)
    a, b = spec_of("clock_mhz=150"), spec_of("clock_mhz=150.0")
    assert a.points()[0].point_id == b.points()[0].point_id


@pytest.mark.parametrize("text, values", [
    ("tin=64:256:64", (64, 128, 192, 256)),
    ("tin=1:10:4", (1, 5, 9)),                                  # hi not on a step: stops below it
    ("tin=7:7:3", (7,)),
    ("clock_mhz=150:300:50", (150.0, 200.0, 250.0, 300.0)),
    ("clock_mhz=0.1:0.3:0.1", (0.1, 0.2, 0.3)),                 # decimal steps do not drift
    ("host_rtt_us=0.5:1.5:0.25", (0.5, 0.75, 1.0, 1.25, 1.5)),
    ("ctx=512:2048:512", (512, 1024, 1536, 2048)),
])
def test_a_range_with_a_step_expands_both_ends_included(text, values):
    axis = parse_vary(text, BASE)
    assert axis.grid_values() == values
    assert [type(v) for v in axis.grid_values()] == [type(v) for v in values]


def test_a_range_without_a_step_is_continuous_and_the_grid_refuses_it():
    axis = parse_vary("clock_mhz=150:300", BASE)
    assert axis.continuous and (axis.lo, axis.hi) == (150.0, 300.0) and axis.size() is None
    assert "no step" in refusal(axis.grid_values)
    assert parse_vary("tin=64:127", BASE).size() == 64          # an integer field: every integer in [lo, hi]
    msg = refusal(spec_of, "clock_mhz=150:300")
    assert msg.startswith("--vary 'clock_mhz=150:300': clock_mhz") and "random:N or lhs:N" in msg


def test_run_axes_take_their_own_values():
    assert parse_vary("weights=int4,int8,fp16", BASE).values == ("int4", "int8", "fp16")
    assert parse_vary("seq=1,4", BASE).values == (1, 4)
    assert parse_vary(" ctx = 512 , 2048 ", BASE).values == (512, 2048)


def test_the_largest_range_allowed_has_max_axis_values():
    assert parse_vary(f"tin=1:{MAX_AXIS_VALUES}:1", BASE).size() == MAX_AXIS_VALUES


@pytest.mark.parametrize("text, fragments", [
    ("foo=1", ["'foo' cannot vary", "not a target field", "names that can vary: weights, ctx, seq", "hbm_channels"]),
    ("name=x", ["'name' cannot vary", "non-numeric target field", "clock_mhz"]),
    ("weight_formats=int4", ["non-numeric target field"]),
    ("description=x", ["non-numeric target field"]),
    ("=64", ["'' cannot vary"]),
    ("tin", ["NAME=V1,V2"]),
    ("tin=1.5", ["tin = '1.5' must be an integer"]),
    ("tin=2.0", ["tin = '2.0' must be an integer"]),
    ("tin=1e3", ["must be an integer"]),
    ("tin=0x40", ["must be an integer"]),
    ("tin=abc", ["must be an integer"]),
    ("clock_mhz=nan", ["clock_mhz = 'nan' must be a finite number"]),
    ("clock_mhz=inf", ["finite number"]),
    ("clock_mhz=-Infinity", ["finite number"]),
    ("clock_mhz=1e400", ["finite number"]),
    ("clock_mhz=fast", ["finite number"]),
    ("tin=", ["empty value"]),
    ("tin=64,,128", ["empty value"]),
    ("tin=64,", ["empty value"]),
    ("tin=64,64", ["tin = 64 is given twice"]),
    ("clock_mhz=150,150.0", ["clock_mhz = 150.0 is given twice"]),
    ("weights=int4,int4", ["given twice"]),
    ("tin=1:2:3:4", ["range '1:2:3:4' must be LO:HI or LO:HI:STEP"]),
    ("tin=1:", ["must be LO:HI"]),
    ("tin=:5", ["must be LO:HI"]),
    ("tin=1::2", ["must be LO:HI"]),
    ("tin=1,2:3", ["not both"]),
    ("tin=1:10:0", ["range step 0 must be > 0"]),
    ("tin=1:10:-2", ["range step -2 must be > 0"]),
    ("clock_mhz=100:200:0.0", ["must be > 0"]),
    ("tin=1:10:0.5", ["tin range step = '0.5' must be an integer"]),
    ("tin=10:1:1", ["range 10:1 starts above its end"]),
    ("clock_mhz=300:150", ["starts above its end"]),
    (f"tin=1:{MAX_AXIS_VALUES + 1}:1", [f"expands to {MAX_AXIS_VALUES + 1:,} values", "more than 10,000"]),
    ("clock_mhz=0:1000:0.01", ["expands to 100,001 values"]),
    ("weights=int4:int8", ["a range cannot vary weights"]),
    ("weights=int2", ["weights = 'int2' must be one of int4, int8, fp16"]),
    ("ctx=0", ["ctx = 0 must be an integer >= 1"]),
    ("seq=-1", ["seq = -1 must be an integer >= 1"]),
    ("seq=1.5", ["must be an integer >= 1"]),
    ("ctx=0:64:8", ["ctx range start = 0 must be an integer >= 1"]),
])
def test_a_bad_vary_is_refused_naming_the_option_the_field_the_value_and_the_rule(text, fragments):
    msg = refusal(parse_vary, text, BASE)
    assert msg.startswith(f"--vary {text!r}: ")
    for fragment in fragments:
        assert fragment in msg


def test_the_derived_targets_validity_is_not_checked_here():
    """tin=0 or a clock of 0 are well-typed: Target.replace refuses them per point, as a result."""
    assert parse_vary("tin=0,-64", BASE).values == (0, -64)
    assert parse_vary("clock_mhz=0", BASE).values == (0.0,)


@given(st.lists(st.integers(-2**70, 2**70), min_size=1, max_size=20, unique=True))
def test_any_distinct_integers_parse_back_exactly(values):
    assert parse_vary("tin=" + ",".join(map(str, values)), BASE).values == tuple(values)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20,
                unique_by=lambda f: f + 0.0))
def test_any_distinct_finite_floats_parse_back_exactly(values):
    assert parse_vary("clock_mhz=" + ",".join(map(repr, values)), BASE).values == tuple(values)


# ---------------------------------------------------------------- the spec: axes, order, defaults

def test_missing_run_axes_get_their_defaults_and_no_llm_has_no_ctx():
    assert [a.name for a in SweepSpec("m").axes] == list(RUN_AXES)
    assert [a.values for a in SweepSpec("m").axes] == [(DEFAULTS[n],) for n in RUN_AXES]
    spec = SweepSpec("m", llm=False)
    assert [a.name for a in spec.axes] == ["weights", "seq"]
    p = spec.points()[0]
    assert p.params == {"weights": "int4", "seq": 1} and p.ctx is None


def test_the_grid_varies_the_last_axis_fastest_and_indexes_points_by_position():
    spec = spec_of("hbm_channels=16,24,32", "tin=64,128", "weights=int4,int8", ctx=[512, 2048], seq=[1])
    assert [a.name for a in spec.axes] == ["hbm_channels", "tin", "weights", "ctx", "seq"]
    points = spec.points()
    assert len(points) == 24
    expected = itertools.product([16, 24, 32], [64, 128], ["int4", "int8"], [512, 2048], [1])
    assert [tuple(p.params.values()) for p in points] == list(expected)
    assert [p.index for p in points] == list(range(24))
    p = points[5]
    assert p.params == {"hbm_channels": 16, "tin": 128, "weights": "int4", "ctx": 2048, "seq": 1}
    assert p.target_fields == {"hbm_channels": 16, "tin": 128}
    assert (p.weights, p.ctx, p.seq) == ("int4", 2048, 1)
    assert p.point_id == point_id(p.params)


def test_describe_and_varied():
    spec = spec_of("hbm_channels=16,24,32", "tin=64,128", "weights=int4,int8", ctx=[512, 2048], seq=[1],
                   model="llama2-7b-shape")
    assert spec.describe() == ("24 points of llama2-7b-shape on vcu128: grid over hbm_channels (3) x tin (2) x "
                               "weights (2) x ctx (2); fixed seq=1")
    assert spec.varied() == ["hbm_channels", "tin", "weights", "ctx"]
    one = SweepSpec("m")
    assert one.describe() == "1 point of m on vcu128: grid over nothing varied; fixed weights=int4, ctx=512, seq=1"
    assert one.varied() == []
    rnd = spec_of("tin=1:100:1", sample="random:5", seed=7)
    assert rnd.describe() == ("5 points of m on vcu128: random:5 (seed 7) of 100 over tin (100); "
                              "fixed weights=int4, ctx=512, seq=1")
    lhs = spec_of("clock_mhz=100:200", "weights=int4,int8", sample="lhs:3", llm=False)
    assert lhs.describe() == ("3 points of m on vcu128: lhs:3 (seed 0) over clock_mhz [100.0, 200.0] x weights (2); "
                              "fixed seq=1")
    assert lhs.varied() == ["clock_mhz", "weights"]
    assert parse_vary("clock_mhz=100:100", BASE).lo == 100.0
    assert spec_of("clock_mhz=100:100", sample="lhs:2").varied() == []


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(axes=(Axis("tin", (1,)), Axis("tin", (2,)))), ["axis tin is given twice"]),
    (dict(llm=False, axes=(Axis("ctx", (512,)),)), ["ctx cannot vary in a --no-llm sweep"]),
    (dict(sample="sobol"), ["sample 'sobol' is not a method"]),
    (dict(sample="grid", n=3), ["the grid takes no N"]),
    (dict(sample="lhs"), ["N = None must be an integer in [1, 1,000,000]"]),
    (dict(sample="lhs", n=0), ["N = 0"]),
    (dict(sample="random", n=True), ["N = True"]),
    (dict(sample="lhs", n=2_000_000), ["N = 2000000"]),
    (dict(sample="random", n=3, axes=(Axis("tin", (1, 2)),)), ["asks for 3 distinct points but the space has only 2"]),
    (dict(axes=(Axis("clock_mhz", lo=1.0, hi=2.0),)), ["clock_mhz: the range 1.0:2.0 has no step"]),
    (dict(axes=(Axis("tin", lo=1, hi=10_000, step=1), Axis("tout", lo=1, hi=10_000, step=1),
                Axis("sfu_lanes", (1, 2)))), ["the grid has 200,000,000 points, more than 1,000,000"]),
    (dict(model=""), ["model = '' must be a non-empty string"]),
    (dict(target=None), ["target = None"]),
    (dict(llm="yes"), ["llm = 'yes' must be true or false"]),
    (dict(seed=1.5), ["seed = 1.5 must be an integer"]),
    (dict(axes=("tin=1",)), ["must be a list of Axis"]),
])
def test_a_malformed_spec_is_refused(kwargs, fragments):
    kwargs = {"model": "m", **kwargs}
    msg = refusal(SweepSpec, **kwargs)
    for fragment in fragments:
        assert fragment in msg


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(values=()), ["tin: no values"]),
    (dict(values=(64, 64.0)), ["tin = 64.0 must be an integer"]),
    (dict(values=(True,)), ["tin = True must be an integer"]),
    (dict(values="64"), ["must be a list"]),
    (dict(values=(1,), lo=1, hi=2), ["not both"]),
    (dict(lo=1), ["needs both ends"]),
    (dict(step=1), ["needs both ends"]),
    (dict(values=tuple(range(MAX_AXIS_VALUES + 1))), ["10,001 values, more than 10,000"]),
])
def test_an_axis_checks_itself(kwargs, fragments):
    msg = refusal(Axis, "tin", **kwargs)
    for fragment in fragments:
        assert fragment in msg


def test_a_float_axis_normalises_integers_to_floats():
    assert Axis("clock_mhz", (150, 200)) == Axis("clock_mhz", (150.0, 200.0))
    assert Axis("clock_mhz", lo=150, hi=300, step=50).to_json() == {"name": "clock_mhz", "lo": 150.0, "hi": 300.0,
                                                                    "step": 50.0}
    assert "must be a finite number" in refusal(Axis, "clock_mhz", (10**400,))


# ---------------------------------------------------------------- the command line

def test_the_command_line_refuses_repeats_and_conflicts():
    assert "tin is varied twice" in refusal(spec_of, "tin=1", "tin=2")
    assert refusal(spec_of, "seq=1,2", seq=[4]).startswith("--seq: seq is also given as --vary seq")
    assert refusal(spec_of, ctx=[0]).startswith("--ctx 0: ctx = 0 must be an integer >= 1")
    assert refusal(spec_of, ctx=[512], llm=False).startswith("--ctx: ctx cannot vary in a --no-llm sweep")
    assert refusal(spec_of, "ctx=512", llm=False).startswith("--vary 'ctx=512': ctx cannot vary")
    assert refusal(spec_of, model=None).startswith("no MODEL")
    assert refusal(spec_of, target="nowhere").startswith("--target: unknown target 'nowhere'")
    assert refusal(spec_of, seed="1").startswith("--seed: seed = '1' must be an integer")
    assert refusal(spec_of, "tin=1,2", sample="random:3").startswith("--sample: sample 'random:3': asks for 3")
    assert refusal(spec_of, "tin=1:10000:1", "tout=1:10000:1").startswith("sweep: sample grid: the grid has")


@pytest.mark.parametrize("sample", ["grid:3", "random", "random:", "random:0", "random:-1", "lhs:x", "lhs:1.5",
                                    "sobol:4", ""])
def test_a_bad_sample_is_refused(sample):
    msg = refusal(spec_of, "tin=1:100:1", sample=sample)
    assert msg.startswith("--sample: sample ")


@pytest.mark.parametrize("sample, method, n", [("grid", "grid", None), ("random:4", "random", 4),
                                               ("lhs:64", "lhs", 64)])
def test_samples_parse(sample, method, n):
    spec = spec_of("tin=1:100:1", sample=sample)
    assert (spec.sample, spec.n) == (method, n)


# ---------------------------------------------------------------- sweep files and precedence

DOC_EXAMPLE = {
    "model": "llama2-7b-shape",
    "target": "vcu128",
    "vary": {"hbm_channels": [16, 24, 32], "clock_mhz": {"range": [150, 300], "step": 50},
             "weights": ["int4", "int8"]},
    "seq": [1], "ctx": [512, 2048],
    "sample": {"method": "lhs", "n": 64, "seed": 1},
}


def write(tmp_path, data, name="sweep.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def from_file(path, **kwargs):
    return spec_of(*kwargs.pop("vary", ()), sweep_file=path, **kwargs)


def test_the_doc_example_file_reads_as_written(tmp_path):
    spec = from_file(write(tmp_path, DOC_EXAMPLE), model=None)
    assert (spec.model, spec.target, spec.sample, spec.n, spec.seed, spec.llm) == ("llama2-7b-shape", "vcu128",
                                                                                    "lhs", 64, 1, True)
    assert spec.axes == (Axis("hbm_channels", (16, 24, 32)), Axis("clock_mhz", lo=150.0, hi=300.0, step=50.0),
                         Axis("weights", ("int4", "int8")), Axis("ctx", (512, 2048)), Axis("seq", (1,)))
    # 64 samples of a 48-point discrete space: every axis is balanced, but combinations repeat and are dropped
    points = spec.points()
    assert len(points) == len({p.point_id for p in points}) == 40
    assert spec.describe().startswith("40 points of llama2-7b-shape on vcu128: lhs:64 (seed 1, 24 duplicates "
                                      "dropped) of 48 over hbm_channels (3) x clock_mhz (4) x weights (2) x ctx (2)")


def test_a_yaml_file_reads_like_json(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = write(tmp_path, yaml.safe_dump(DOC_EXAMPLE, sort_keys=False), "sweep.yaml")
    assert from_file(path, model=None) == from_file(write(tmp_path, DOC_EXAMPLE), model=None)


def test_a_yaml_file_without_pyyaml_is_refused_naming_it(tmp_path, monkeypatch):
    path = write(tmp_path, "model: m\n", "sweep.yml")
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert refusal(from_file, path) == (f"sweep file {path!r} is YAML but PyYAML is not installed; "
                                        "use JSON or install pyyaml")


def test_scalars_and_ranges_in_a_file(tmp_path):
    spec = from_file(write(tmp_path, {"model": "m", "vary": {"tin": 64, "weights": "int8", "ctx": {"range": [1, 9]}},
                                      "seq": 2, "sample": "lhs:3", "llm": True}))
    assert spec.axes[:3] == (Axis("tin", (64,)), Axis("weights", ("int8",)), Axis("ctx", lo=1, hi=9))
    assert spec.axes[3] == Axis("seq", (2,))


@pytest.mark.parametrize("data, fragments", [
    ({"model": "m", "seqs": [1]}, ["unknown key(s) 'seqs'", "known keys: model, target, vary"]),
    ([1, 2], ["must hold an object", "not list"]),
    ("null", ["not NoneType"]),
    ({"model": 5}, ["model = 5 must be a non-empty string"]),
    ({"model": "m", "target": ["vcu128"]}, ["target = ['vcu128']"]),
    ({"model": "m", "llm": "yes"}, ["llm = 'yes' must be true or false"]),
    ({"model": "m", "vary": [["tin", 64]]}, ["vary = [['tin', 64]] must be an object"]),
    ({"model": "m", "vary": {"tin": "64"}}, ["vary.tin: tin = '64' must be an integer"]),
    ({"model": "m", "vary": {"tin": [64.0]}}, ["vary.tin: tin = 64.0 must be an integer"]),
    ({"model": "m", "vary": {"tin": [True]}}, ["tin = True must be an integer"]),
    ({"model": "m", "vary": {"tin": None}}, ["vary.tin: tin = None must be a list of values"]),
    ({"model": "m", "vary": {"tin": []}}, ["vary.tin: tin: no values"]),
    ({"model": "m", "vary": {"tin": [[64]]}}, ["must be an integer"]),
    ({"model": "m", "vary": {"tin": {"range": [1]}}}, ["vary.tin: tin: range = [1] must be a list [LO, HI]"]),
    ({"model": "m", "vary": {"tin": {"range": [1, 8], "stp": 1}}}, ["unknown key(s) 'stp'"]),
    ({"model": "m", "vary": {"tin": {"range": [8, 1], "step": 1}}}, ["range 8:1 starts above its end"]),
    ({"model": "m", "vary": {"tin": {"range": [1, 8], "step": 0}}}, ["range step 0 must be > 0"]),
    ({"model": "m", "vary": {"name": ["x"]}}, ["vary.name: 'name' cannot vary"]),
    ({"model": "m", "vary": {"colour": [1]}}, ["'colour' cannot vary", "names that can vary"]),
    ({"model": "m", "seq": "1"}, ["seq: seq = '1' must be an integer >= 1"]),
    ({"model": "m", "seq": [1], "vary": {"seq": [2]}}, ["seq is given both as a key and under vary"]),
    ({"model": "m", "sample": 5}, ["sample = 5 must be"]),
    ({"model": "m", "sample": "lhs"}, ["sample 'lhs' must be grid, random:N or lhs:N"]),
    ({"model": "m", "sample": {"method": "sobol"}}, ["sample.method = 'sobol'"]),
    ({"model": "m", "sample": {"method": "lhs", "n": "4"}}, ["sample.n = '4' must be an integer"]),
    ({"model": "m", "sample": {"method": "lhs", "n": 4, "seed": 1.0}}, ["sample.seed = 1.0"]),
    ({"model": "m", "sample": {"method": "lhs", "n": 4, "runs": 2}}, ["sample: unknown key(s) 'runs'"]),
    ({"model": "m", "sample": {"method": "grid", "n": 4}}, ["the grid takes no N"]),
    ({"model": "m", "llm": False, "ctx": [512]}, ["ctx: ctx cannot vary in a --no-llm sweep"]),
    ({"model": "m", "target": "nowhere.json"}, ["target: ", "nowhere.json"]),
    ('{"model": "m", "model": "n"}', ["key(s) ['model'] given more than once"]),
    ('{"model": "m", "vary": {"clock_mhz": [NaN]}}', ["clock_mhz = nan must be a finite number"]),
    ('{"model": "m", "vary": {"clock_mhz": [-Infinity]}}', ["clock_mhz = -inf must be a finite number"]),
    ('{"model": "m", "sample": {"method": "lhs", "n": NaN}}', ["sample.n = nan must be an integer"]),
    ('{"model": "m",', ["is not valid JSON"]),
])
def test_a_bad_sweep_file_is_refused_naming_the_file_and_the_key(tmp_path, data, fragments):
    path = write(tmp_path, data)
    msg = refusal(from_file, path, model=None)
    assert f"sweep file {path!r}" in msg
    for fragment in fragments:
        assert fragment in msg


def test_a_missing_file_and_a_missing_model(tmp_path):
    missing = str(tmp_path / "none.json")
    assert refusal(from_file, missing) == f"sweep file {missing!r} does not exist or is not a file"
    assert refusal(from_file, write(tmp_path, {"vary": {"tin": [1]}}), model=None).startswith("no MODEL")
    assert from_file(write(tmp_path, {"vary": {"tin": [1]}}), model="cli").model == "cli"


def test_a_relative_target_path_in_a_file_is_found_beside_it(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.json").write_text(json.dumps({"base": "vcu128", "name": "mine", "tin": 64}))
    path = write(tmp_path / "sub", {"model": "m", "target": "mine.json"})
    monkeypatch.chdir(tmp_path)
    assert from_file(path).target == str(tmp_path / "sub" / "mine.json")


def test_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, {"model": "filemodel", "target": "tiny", "vary": {"tin": [64], "tout": [16, 32]},
                            "seq": [1], "ctx": [512], "sample": {"method": "lhs", "n": 4, "seed": 3}, "llm": True})
    plain = from_file(path, model=None)
    assert (plain.model, plain.target, plain.sample, plain.n, plain.seed) == ("filemodel", "tiny", "lhs", 4, 3)
    spec = from_file(path, model="climodel", target="vcu128", vary=["tin=128,256", "mvm_groups=2"], seq=[4],
                     ctx=[1024, 2048], sample="random:3", seed=9)
    assert (spec.model, spec.target, spec.sample, spec.n, spec.seed) == ("climodel", "vcu128", "random", 3, 9)
    # --vary tin replaces the file's tin in its place; new names follow the file's axes
    assert [a.name for a in spec.axes] == ["tin", "tout", "ctx", "seq", "mvm_groups", "weights"]
    assert spec.axes[0].values == (128, 256)
    assert {a.name: a.values for a in spec.axes}["seq"] == (4,)
    assert {a.name: a.values for a in spec.axes}["ctx"] == (1024, 2048)
    # the file's seed stays when only the method changes on the command line; --no-llm drops the file's ctx
    assert from_file(path, model=None, sample="lhs:2").seed == 3
    assert "ctx" not in [a.name for a in from_file(write(tmp_path, {"model": "m"}, "b.json"), llm=False).axes]
    assert from_file(path, model=None, vary=["seq=2,3"]).axes[3] == Axis("seq", (2, 3))
    assert refusal(from_file, path, llm=False).startswith(f"sweep file {path!r}: ctx: ctx cannot vary")


# ---------------------------------------------------------------- random sampling

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
def test_random_draws_n_distinct_grid_points_in_grid_order(sizes, data):
    axes = [f"{name}=1:{k}:1" for name, k in zip(("tin", "tout", "mat_tin", "sfu_lanes"), sizes)]
    grid = spec_of(*axes).points()
    n = data.draw(st.integers(1, len(grid)))
    seed = data.draw(st.integers(0, 2**32))
    points = spec_of(*axes, sample=f"random:{n}", seed=seed).points()
    assert len(points) == n
    ids = [p.point_id for p in points]
    assert len(set(ids)) == n
    order = {p.point_id: p.index for p in grid}
    assert all(i in order for i in ids)
    assert [order[i] for i in ids] == sorted(order[i] for i in ids)
    assert [p.index for p in points] == list(range(n))


def test_random_is_seeded_and_can_take_the_whole_grid():
    a = spec_of("tin=1:1000:1", "tout=1,2", sample="random:20", seed=1).points()
    assert a == spec_of("tin=1:1000:1", "tout=1,2", sample="random:20", seed=1).points()
    assert a != spec_of("tin=1:1000:1", "tout=1,2", sample="random:20", seed=2).points()
    whole = spec_of("tin=1:5:1", "tout=1,2", sample="random:10").points()
    assert whole == spec_of("tin=1:5:1", "tout=1,2").points()


def test_random_over_a_continuous_range_stays_inside_it():
    points = spec_of("clock_mhz=100:200", "tin=64:127", sample="random:50", seed=4).points()
    assert len({p.point_id for p in points}) == 50
    assert all(100.0 <= p.params["clock_mhz"] < 200.0 for p in points)
    assert all(64 <= p.params["tin"] <= 127 and type(p.params["tin"]) is int for p in points)


def test_sampling_is_pinned_so_a_stored_sweep_resumes_on_any_python():
    """The point list of a seeded sample must never change silently: a store resumes by point_id."""
    def digest(spec):
        return hashlib.sha256("".join(p.point_id for p in spec.points()).encode()).hexdigest()[:16]
    rnd = spec_of("tin=1:1000:1", "clock_mhz=100:400:25", sample="random:7", seed=11)
    lhs = spec_of("tin=1:1000:1", "clock_mhz=100:400", "weights=int4,int8,fp16", sample="lhs:7", seed=11)
    assert [p.params["tin"] for p in rnd.points()] == PINNED_RANDOM_TIN
    assert (digest(rnd), digest(lhs)) == PINNED_DIGESTS


PINNED_RANDOM_TIN = [43, 105, 207, 286, 308, 364, 450]
PINNED_DIGESTS = ("aed5063b2d8cecc1", "83dc0826754b44cf")


# ---------------------------------------------------------------- Latin hypercube sampling

LIST_FIELDS = ("tin", "tout", "mat_tin")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=3), st.integers(1, 40), st.integers(0, 2**32))
def test_lhs_stratifies_every_axis(sizes, n, seed):
    """A continuous axis: each of the N strata holds exactly one sample (so no sample is dropped). A list
    axis of K values: value i's centre i + 1/2 of the index range [0, K) lies in one stratum; with N <= K
    each stratum uses one of its own indices once, with N >= K every value is used N // K or N // K + 1
    times. A continuous integer range behaves as the list of its integers."""
    lists = [f"{name}={','.join(str(10 * v) for v in range(k))}" for name, k in zip(LIST_FIELDS, sizes)]
    spec = spec_of("clock_mhz=100:300", *lists, "ctx=5:17", sample=f"lhs:{n}", seed=seed)
    points = spec.points()
    assert len(points) == n
    clock = sorted(p.params["clock_mhz"] for p in points)
    assert [int((c - 100.0) / 200.0 * n) for c in clock] == list(range(n))
    assert all(100.0 < c < 300.0 for c in clock)
    for name, k in [*zip(LIST_FIELDS, sizes), ("ctx", 13)]:
        start, scale = (5, 1) if name == "ctx" else (0, 10)
        indices = sorted((p.params[name] - start) // scale for p in points)
        assert all(0 <= i < k for i in indices)
        if n <= k:
            assert [(2 * i + 1) * n // (2 * k) for i in indices] == list(range(n))
        if n >= k:
            counts = Counter(indices)
            assert sorted(counts) == list(range(k))
            assert set(counts.values()) <= {n // k, -(-n // k)}


def test_lhs_is_seeded_and_an_axis_does_not_move_the_others():
    a = spec_of("clock_mhz=100:300", "tin=1:64:1", sample="lhs:16", seed=5)
    assert a.points() == spec_of("clock_mhz=100:300", "tin=1:64:1", sample="lhs:16", seed=5).points()
    assert a.points() != spec_of("clock_mhz=100:300", "tin=1:64:1", sample="lhs:16", seed=6).points()
    b = spec_of("clock_mhz=100:300", "tin=1:64:1", "tout=1:64:1", sample="lhs:16", seed=5)
    assert [p.params["tin"] for p in a.points()] == [p.params["tin"] for p in b.points()]


def test_lhs_drops_duplicates_of_a_small_discrete_space():
    spec = spec_of("tin=1,2", "weights=int4,int8", sample="lhs:10")
    points = spec.points()
    assert len({p.point_id for p in points}) == len(points) <= 4
    assert [p.index for p in points] == list(range(len(points)))
    assert f"{10 - len(points)} duplicates dropped" in spec.describe()


# ---------------------------------------------------------------- point identity

PARAM_VALUES = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                         st.sampled_from(["int4", "int8", "fp16"]))
PARAMS = st.dictionaries(st.sampled_from(["tin", "tout", "clock_mhz", "weights", "ctx", "seq"]), PARAM_VALUES,
                         min_size=1)


def test_point_id_is_the_sha256_of_sorted_compact_json():
    assert point_id({"tin": 64, "clock_mhz": 150.0}) == hashlib.sha256(b'{"clock_mhz":150.0,"tin":64}').hexdigest()


@given(PARAMS, st.randoms(use_true_random=False))
def test_point_id_ignores_key_order(params, rnd):
    keys = list(params)
    rnd.shuffle(keys)
    assert point_id({k: params[k] for k in keys}) == point_id(params)


@given(PARAMS, st.data())
def test_point_id_differs_when_any_value_differs(params, data):
    key = data.draw(st.sampled_from(sorted(params)))
    other = data.draw(PARAM_VALUES.filter(lambda v: type(v) is not type(params[key]) or v != params[key]))
    assert point_id({**params, key: other}) != point_id(params)
    assert point_id({**params, "mvm_groups": 1}) != point_id(params)


# ---------------------------------------------------------------- the JSON form

@st.composite
def axes_of(draw):
    names = draw(st.lists(st.sampled_from(["tin", "clock_mhz", "host_rtt_us", "tout", "weights", "ctx", "seq"]),
                          unique=True, max_size=5))
    out = []
    for name in names:
        if name == "weights":
            out.append(Axis(name, tuple(draw(st.lists(st.sampled_from(["int4", "int8", "fp16"]), min_size=1,
                                                      unique=True)))))
            continue
        is_float = name in ("clock_mhz", "host_rtt_us")
        number = (st.floats(0.001, 1e6) if is_float else st.integers(1, 10**6))
        shape = draw(st.sampled_from(["list", "stepped", "continuous"]))
        if shape == "list":
            out.append(Axis(name, tuple(draw(st.lists(number, min_size=1, max_size=6, unique=True)))))
            continue
        lo, hi = sorted([draw(number), draw(number)])
        step = None
        if shape == "stepped":
            step = max((hi - lo) / 5, 0.5) if is_float else max((hi - lo) // 5, 1)
        out.append(Axis(name, lo=lo, hi=hi, step=step))
    return tuple(out)


@st.composite
def specs(draw):
    axes = draw(axes_of())
    llm = draw(st.booleans()) if not any(a.name == "ctx" for a in axes) else True
    sample = draw(st.sampled_from(["grid", "random", "lhs"]))
    if sample == "grid" and any(a.continuous for a in axes):
        sample = "lhs"
    total = SweepSpec("m", axes=axes, llm=llm, sample="lhs", n=1).grid_size()
    n = None if sample == "grid" else draw(st.integers(1, min(total or 50, 50)))
    return SweepSpec(model=draw(st.sampled_from(["llama2-7b-shape", "tiny/llama_block"])),
                     target=draw(st.sampled_from(["vcu128", "tiny", "targets/mine.json"])), axes=axes,
                     sample=sample, n=n, seed=draw(st.integers(0, 2**40)), llm=llm)


@settings(max_examples=60, deadline=None)
@given(specs())
def test_to_json_round_trips_through_json_text(spec):
    d = spec.to_json()
    again = SweepSpec.from_json(json.loads(json.dumps(d, allow_nan=False)))
    assert again == spec and again.to_json() == d
    if (spec.grid_size() or 0) <= 2000:
        assert again.points() == spec.points()


def test_to_json_is_canonical():
    spec = spec_of("clock_mhz=150:300:50", "tin=64:128", "weights=int8", sample="lhs:4", seed=2, llm=False)
    assert spec.to_json() == {
        "model": "m", "target": "vcu128", "sample": "lhs", "n": 4, "seed": 2, "llm": False,
        "axes": [{"name": "clock_mhz", "lo": 150.0, "hi": 300.0, "step": 50.0},
                 {"name": "tin", "lo": 64, "hi": 128, "step": None},
                 {"name": "weights", "values": ["int8"]}, {"name": "seq", "values": [1]}]}


@pytest.mark.parametrize("data, fragment", [
    ([], "must be an object, not list"),
    ({"model": "m", "extra": 1}, "unknown key(s) 'extra'"),
    ({"target": "vcu128"}, "lacks 'model'"),
    ({"model": "m", "axes": {"tin": [1]}}, "axes = {'tin': [1]} must be a list"),
    ({"model": "m", "axes": [{"values": [1]}]}, "axes[0] = {'values': [1]} must be an object with a 'name'"),
    ({"model": "m", "axes": [{"name": "tin", "values": [1], "lo": 1}]}, "give values or lo/hi/step, not both"),
    ({"model": "m", "axes": [{"name": "tin", "values": 1}]}, "values = 1 must be a list"),
    ({"model": "m", "axes": [{"name": "tin", "lo": 1, "hi": 2, "by": 1}]}, "unknown key(s) 'by'"),
    ({"model": "m", "axes": [{"name": "tin"}]}, "axes[0]: tin: no values"),
    ({"model": "m", "axes": [{"name": "tin", "lo": 1.5, "hi": 2}]}, "tin range start = 1.5 must be an integer"),
    ({"model": "m", "sample": "lhs", "n": 0}, "N = 0"),
    ({"model": "m", "seed": "0"}, "seed = '0' must be an integer"),
])
def test_from_json_refuses_a_malformed_definition(data, fragment):
    msg = refusal(SweepSpec.from_json, data)
    assert msg.startswith("sweep definition")
    assert fragment in msg
