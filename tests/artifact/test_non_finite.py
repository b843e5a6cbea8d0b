"""Non-finite numbers in host steps: ``masked_fill(m, -inf)``, ``clamp(min=-inf)``, ``full(-inf)`` and a
``nan`` literal compile, save, load and run (Python runtime and generated C++ driver) equal to torch; the
manifest stays strict JSON with each one written ``{"$float": TAG}``, which reads back to the float. Bad
tags are refused by both readers (rows of tests/artifact/refusals.py)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dlavm.artifact import HostStep, ManifestError, read_manifest
from dlavm.artifact.spec import HostJson, Reader
from dlavm.compiler import compile as dlavm_compile, load

INF = float("inf")


class NonFinite(torch.nn.Module):
    """Four host ops, each holding a non-finite number: a literal -inf (masked_fill imports as ``where``),
    attributes -inf (clamp's min, full's value) and a literal nan."""

    def forward(self, x):
        return (x.masked_fill(x > 0, -INF), torch.clamp(x, min=-INF, max=0.5),
                torch.maximum(x, torch.full((4, 16), -INF)), torch.where(x > 0, x, float("nan")))


def _x():
    return torch.from_numpy(np.random.default_rng(7).standard_normal((4, 16)).astype(np.float32))


@pytest.fixture(scope="module")
def compiled():
    return dlavm_compile(NonFinite().eval(), (_x(),), target="tiny", name="nonfinite")


@pytest.mark.parametrize("value,tag", [(INF, "inf"), (-INF, "-inf"), (float("nan"), "nan")])
def test_the_tag_round_trips(value, tag):
    spec, r = HostJson(), Reader("test")
    data = [1.5, {"a": (value, 2)}, value]
    text = json.dumps(spec.encode(data), allow_nan=False)   # strict JSON
    assert json.loads(text) == [1.5, {"a": [{"$float": tag}, 2]}, {"$float": tag}]
    back = spec.decode(json.loads(text), "literal", r)
    assert back[0] == 1.5 and back[1]["a"][1] == 2
    for got in (back[1]["a"][0], back[2]):
        assert isinstance(got, float) and (math.isnan(got) if tag == "nan" else got == value)


@pytest.mark.parametrize("value,rule", [
    ({"$float": "Infinity"}, 'v.$float: must be one of "inf", "-inf", "nan"; got "Infinity"'),
    ({"$float": None}, "v.$float: must be a string, got null"),
    ({"$float": 1}, 'v.$float: must be one of "inf", "-inf", "nan"; got 1'),
    ([{"sym": "seq"}, {"x": 1, "$float": "inf"}], 'v[1]: a "$float" object must have no other key, got "x"'),
])
def test_a_bad_tag_is_refused_naming_the_field(value, rule):
    with pytest.raises(ManifestError) as info:
        HostJson().decode(value, "v", Reader("m"))
    assert str(info.value) == f"m: {rule}"


def test_the_manifest_holds_the_tags_and_reads_them_back(compiled):
    text = compiled.manifest.dumps()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the manifest"))
    steps = [s for s in data["entries"]["forward"]["steps"] if s["kind"] == "host"]
    literals = [a["literal"] for s in steps for a in s["args"] if "literal" in a]
    assert {"$float": "-inf"} in literals and {"$float": "nan"} in literals
    attrs = {s["op"]: s["attrs"] for s in steps}
    assert attrs["clamp"]["min"] == {"$float": "-inf"} and attrs["full"]["value"] == {"$float": "-inf"}
    m = read_manifest(text)
    clamp = next(s for s in m.entries["forward"].steps if isinstance(s, HostStep) and s.op == "clamp")
    assert clamp.attrs["min"] == -INF and clamp.attrs["max"] == 0.5
    assert m.dumps() == text


def test_the_module_saves_loads_and_runs_equal_to_torch(compiled, tmp_path):
    art = compiled.save(tmp_path / "art", driver=False)
    x = _x()
    got = load(art).run(x.numpy())
    want = NonFinite()(x)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w.numpy())    # nan equals nan here
    assert np.isneginf(got[0]).any() and np.isnan(got[3]).any()


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_the_cpp_driver_runs_it_equal_to_the_python_runtime(compiled, tmp_path):
    from tests.driver_support import build_driver, sim_server
    art = compiled.save(tmp_path / "art")
    exe = build_driver(art, "nonfinite")
    x = _x().numpy()
    x.tofile(tmp_path / "x.bin")
    with sim_server(tmp_path) as (uri, _):
        res = subprocess.run([str(exe), uri, str(art), str(tmp_path / "x.bin"), str(tmp_path / "out")],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    want = load(art).run(x)
    for k, w in enumerate(want):
        np.testing.assert_array_equal(np.fromfile(tmp_path / f"out{k}.bin", w.dtype).reshape(w.shape), w)


def test_the_first_bad_tag_in_document_order_is_named():
    with pytest.raises(ManifestError, match=r"v\[0\]\.\$float: must be one of .*; got \"a\"$"):
        HostJson().decode([{"$float": "a"}, {"$float": "b"}], "v", Reader("m"))
