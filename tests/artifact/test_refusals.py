"""One refusal table, two readers: every bad manifest of tests/artifact/refusals.py is refused by
dlavm.artifact.open_artifact (Python) and dlavm::Artifact::open (C++) with the same one-line message."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dlavm.artifact import MANIFEST_SUM, ArtifactError, manifest_sum_text, open_artifact, read_artifact_file

from .mutations import json_values, paths
from .refusals import BOTH, DEEP_LEVELS, DEEP_MARK, PYTHON, UNTRUSTED


def _damaged(good, tmp_path, mutate):
    """A copy of ``good`` broken by ``mutate``, its manifest resealed (a new ``manifest.sha256``) unless the
    mutation is marked unsealed, so the rule under test is what refuses it; returns (dir, expected text)."""
    d = tmp_path / "art"
    shutil.copytree(good, d)
    m = json.loads((d / "manifest.json").read_text())
    expect = mutate(m, d)
    text = json.dumps(m, indent=1)
    text = text.replace(json.dumps(DEEP_MARK), "[" * DEEP_LEVELS + "1" + "]" * DEEP_LEVELS)
    (d / "manifest.json").write_text(text)
    if not getattr(mutate, "unsealed", False):
        (d / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))
    return d, expect


def _python(d) -> str:
    with pytest.raises(ArtifactError) as info:
        open_artifact(d)
    return str(info.value)


def _cpp(exe, d) -> str:
    res = subprocess.run([str(exe), "artifact", str(d)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, f"the C++ reader accepted it (rc {res.returncode}): {res.stdout}{res.stderr}"
    out = res.stdout.strip()
    assert out.startswith("ArtifactError: ") and "\n" not in out
    return out[len("ArtifactError: "):]


def test_the_good_artifact_opens_in_both_readers(good_artifact, cpp_reader):
    m = open_artifact(good_artifact)
    res = subprocess.run([str(cpp_reader), "artifact", str(good_artifact)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split("\n")[:1 + len(m.files)] == ["ok dlavm-artifact", *m.files]
    # the table's entries have something to break
    s = m.streams["forward.0"]
    assert m.weights and m.host_consts and s.patches and len(s.loops) >= 2 and len(s.insns) == s.count


@pytest.mark.parametrize("name,mutate", BOTH, ids=[n for n, _ in BOTH])
def test_both_readers_refuse_with_the_same_message(good_artifact, cpp_reader, tmp_path, name, mutate):
    d, expect = _damaged(good_artifact, tmp_path, mutate)
    py, cpp = _python(d), _cpp(cpp_reader, d)
    assert expect in py, py
    assert py.startswith(f"artifact {d}: ")
    if name == "deep nesting":   # each JSON reader names its own nesting limit
        assert expect in cpp and cpp.startswith(f"artifact {d}: manifest.json: is not valid JSON: "), cpp
    else:
        assert cpp == py


@pytest.mark.parametrize("name,mutate", PYTHON, ids=[n for n, _ in PYTHON])
def test_the_python_reader_refuses_what_only_it_reads(good_artifact, tmp_path, name, mutate):
    d, expect = _damaged(good_artifact, tmp_path, mutate)
    py = _python(d)
    assert expect in py and py.startswith(f"artifact {d}: manifest.json: "), py


@pytest.mark.parametrize("name,mutate,cpp", UNTRUSTED, ids=[n for n, _, _ in UNTRUSTED])
def test_untrusted_artifact_rules(good_artifact, cpp_reader, tmp_path, name, mutate, cpp):
    """Python refuses every row; the C++ reader refuses the rows marked for it with the same message."""
    d, expect = _damaged(good_artifact, tmp_path, mutate)
    py = _python(d)
    assert expect in py and py.startswith(f"artifact {d}: ") and "\n" not in py, py
    if cpp:
        assert _cpp(cpp_reader, d) == py


@pytest.mark.parametrize("text,why", [("{not json", "manifest.json: is not valid JSON: "),
                                      ("[1, 2]", "manifest.json: must hold a JSON object"),
                                      ('{"format": "dlavm-artifact", "format": "x"}', "manifest.json: is not valid "
                                                                                     "JSON: ")])
def test_text_that_is_not_a_manifest_is_refused_by_both(good_artifact, cpp_reader, tmp_path, text, why):
    d = tmp_path / "art"
    shutil.copytree(good_artifact, d)
    (d / "manifest.json").write_text(text)
    (d / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))
    py, cpp = _python(d), _cpp(cpp_reader, d)
    assert py.startswith(f"artifact {d}: {why}") and cpp.startswith(f"artifact {d}: {why}"), (py, cpp)


def test_a_file_is_reread_and_checked_when_it_is_read(good_artifact, cpp_reader, tmp_path):
    d = tmp_path / "art"
    shutil.copytree(good_artifact, d)
    m = open_artifact(d)
    rel = m.weights[0].file
    out = tmp_path / "copy.bin"
    subprocess.run([str(cpp_reader), "artifact", str(d), rel, str(out)], check=True, capture_output=True)
    assert out.read_bytes() == read_artifact_file(d, m, rel) == (d / rel).read_bytes()
    with pytest.raises(ArtifactError, match='file "manifest.json" is not listed in manifest.json'):
        read_artifact_file(d, m, "manifest.json")
    (d / rel).write_bytes(bytes(len((d / rel).read_bytes())))   # same size, other bytes
    with pytest.raises(ArtifactError, match=f'file "{rel}" does not match its sha256'):
        read_artifact_file(d, m, rel)
    res = subprocess.run([str(cpp_reader), "artifact", str(d), rel, str(out)], capture_output=True, text=True)
    assert res.returncode == 2 and f'file "{rel}" does not match its sha256' in res.stdout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_never_crashes_the_cpp_reader_and_it_refuses_no_more_than_python(
        good_artifact, cpp_reader, tmp_path_factory, data):
    """One node replaced or deleted anywhere: the C++ reader exits 0 or refuses with one line (no crash,
    no other exception) and refuses only what Python refuses too (its rules are a subset)."""
    d = tmp_path_factory.mktemp("fuzz") / "art"
    shutil.copytree(good_artifact, d)
    m = json.loads((d / "manifest.json").read_text())
    path = data.draw(st.sampled_from([p for p in paths(m) if p]))
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(json_values())
    else:
        del parent[path[-1]]
    text = json.dumps(m)
    (d / "manifest.json").write_text(text)
    (d / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))
    res = subprocess.run([str(cpp_reader), "artifact", str(d)], capture_output=True, text=True, timeout=60)
    assert res.returncode in (0, 2), res.stdout + res.stderr
    try:
        open_artifact(d)
        py = None
    except ArtifactError as e:
        py = str(e)
    if res.returncode == 2:
        cpp = res.stdout.strip()
        assert cpp.startswith("ArtifactError: ") and "\n" not in cpp
        assert py is not None, f"C++ refused what Python accepts: {cpp}"
