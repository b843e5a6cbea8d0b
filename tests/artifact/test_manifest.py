"""The typed manifest: written and read through one schema, every bad input refused with ManifestError
(never another exception), the documented schema is the code's, instruction records feed the listing."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dlavm.artifact import (MANIFEST_VERSION, ExprError, InsnRecord, Manifest, ManifestError, eval_expr,
                            open_artifact, read_manifest, schema_markdown)

from .mutations import json_values, paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(good_artifact) -> Manifest:
    return open_artifact(good_artifact)


@pytest.fixture(scope="module")
def good_json(good_artifact) -> dict:
    return json.loads((good_artifact / "manifest.json").read_text())


def test_written_text_reads_back_to_the_same_object(good, good_artifact):
    assert good.version == MANIFEST_VERSION
    assert read_manifest(good.dumps()) == good == read_manifest(good.to_json())
    assert (good_artifact / "manifest.json").read_text() == good.dumps()


def test_the_schema_in_the_doc_is_the_code_s():
    doc = (ROOT / "doc" / "backend.md").read_text()
    m = re.search(r"<!-- schema: begin.*?-->\n(.*?)<!-- schema: end -->", doc, re.S)
    assert m, "doc/backend.md has no generated schema block"
    assert m.group(1) == schema_markdown(), ("doc/backend.md's schema differs from dlavm/artifact/schema.py: "
                                            "paste `python -c 'import dlavm.artifact as a; "
                                            "print(a.schema_markdown())'` between the markers")
    assert f"version {MANIFEST_VERSION}" in doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_is_read_or_refused_with_manifest_error(good_json, data):
    """Replace, delete or add one node anywhere: read_manifest returns a Manifest or raises ManifestError."""
    m = json.loads(json.dumps(good_json))
    nodes = [p for p in paths(m) if p]
    path = data.draw(st.sampled_from(nodes))
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(json_values())
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6))] = data.draw(json_values())
    else:
        parent.append(data.draw(json_values()))
    for source in (m, json.dumps(m)):
        try:
            assert isinstance(read_manifest(source), Manifest)
        except ManifestError as e:
            assert "\n" not in str(e) and str(e).startswith("manifest.json")


@settings(max_examples=200, deadline=None)
@given(value=json_values())
def test_any_json_document_is_read_or_refused(value):
    try:
        read_manifest(json.dumps(value))
    except ManifestError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '{"format": "dlavm-artifact", "format": 1}',
                                  "\xff", "9" * 5000, '{"a": NaN}'])
def test_malformed_text_is_one_error(text):
    with pytest.raises(ManifestError, match=r"^manifest.json: "):
        read_manifest(text)


def test_deep_nesting_is_refused_not_a_recursion_error(good_json):
    deep_text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ManifestError, match="nesting deeper than"):
        read_manifest(deep_text)
    m = json.loads(json.dumps(good_json))
    inner: object = 0
    for _ in range(100_000):   # as data: the decoder walks the schema, free-form JSON iteratively
        inner = [inner]
    m["target"]["description"]["x"] = inner
    with pytest.raises(ManifestError, match=r"target.description.x(\[0\])+: nesting deeper than 32 levels"):
        read_manifest(m)


def test_size_expressions_are_bounded():
    assert eval_expr("min(seq, 64) * 2 + seq*seq", {"seq": 10}) == 120
    for bad, why in [("2 ** 10 ** 10", "exponentiation"), ("seq ** 2", "exponentiation"),
                     ("(" * 300 + "seq" + ")" * 300, "nested"), ("1+" * 5000 + "1", "characters long"),
                     ("min(seq)", "at least two operands"), ("seq // 0", "divides by zero"),
                     ("seq % (seq - 3)", "divides by zero"),
                     ("9223372036854775807 + seq", "leaves int64"), ("-9223372036854775808 - seq", "leaves int64"),
                     ("seq*4611686018427387904", "leaves int64"), ("99999999999999999999999", "outside int64")]:
        with pytest.raises(ExprError, match=why):
            eval_expr(bad, {"seq": 3})
    assert eval_expr("-9223372036854775808 + seq", {"seq": 3}) == -2**63 + 3


def test_size_expression_evaluation_is_linear_in_its_length():
    """The longest chain the limits allow evaluates in milliseconds (no exponentiation to blow up)."""
    import time
    text = "*".join(["seq"] * 2000)
    t0 = time.perf_counter()
    with pytest.raises(ExprError, match="leaves int64"):
        eval_expr(text, {"seq": 3})
    assert eval_expr("+".join(["seq"] * 2000), {"seq": 3}) == 6000
    assert time.perf_counter() - t0 < 1.0


def test_instruction_records_come_from_the_lowering_and_feed_the_listing(good, good_artifact):
    from dlavm.compare.listing import from_manifest
    s = good.streams["forward.0"]
    mvm = [r for r in s.insns if r.tag and r.tag.startswith("dev.mvm#")]
    assert mvm and all(r.layer == 0 and any(".layers.0." in w for w in r.weights) for r in mvm)
    assert all(r.tag for r in s.insns)      # every instruction of this model belongs to a device op
    final = [r for r in s.insns if any(w.startswith("model.norm.") for w in r.weights)]
    assert final and all(r.layer is None for r in final)   # the final norm is outside the layers
    # the listing shows the records as they are: change one, the listing follows
    rec = dataclasses.replace(s.insns[0], tag="dev.custom#1", layer=7)
    m2 = dataclasses.replace(good, streams={"forward.0": dataclasses.replace(
        s, insns=(rec,) + s.insns[1:])})
    rows = from_manifest(m2, lambda rel: (good_artifact / rel).read_bytes()).streams["forward.0"]
    assert (rows[0].tag, rows[0].layer) == ("dev.custom#1", 7)
    assert isinstance(rec, InsnRecord)
