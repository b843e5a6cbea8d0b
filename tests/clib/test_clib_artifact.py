"""Artifact verification: dlavm::Artifact::open (C++) and
dlavm.runtime.artifact_check.verify_artifact (Python) accept a good directory
and refuse each kind of damage with the same message."""
from __future__ import annotations

import json

import pytest

from clib_testing import run_program, write_artifact
from dlavm.runtime.artifact_check import ArtifactError, read_artifact_file, verify_artifact

FILES = {"streams/main.bin": bytes(range(256)) * 4, "weights/w0.bin": b"\x01\x02\x03", "driver/model.h": b"// h\n"}


def _cpp(cpp_programs, d, *extra, rc=None):
    return run_program(cpp_programs["rt_tool"], "artifact", d, *extra, check_rc=rc)


def _python_message(d) -> str | None:
    try:
        verify_artifact(d)
    except ArtifactError as exc:
        return str(exc)
    return None


def test_a_good_artifact_opens_in_both_runtimes(cpp_programs, tmp_path):
    d = write_artifact(tmp_path / "art", FILES, target="tiny")
    res = _cpp(cpp_programs, d, rc=0)
    assert res.stdout.split("\n")[:4] == ["ok dlavm-artifact", *FILES]
    manifest = verify_artifact(d)
    assert manifest["target"] == "tiny" and list(manifest["files"]) == list(FILES)
    out = tmp_path / "copy.bin"
    _cpp(cpp_programs, d, "streams/main.bin", out, rc=0)
    assert out.read_bytes() == FILES["streams/main.bin"] == read_artifact_file(d, manifest, "streams/main.bin")


def _damage(kind: str, d):
    m = json.loads((d / "manifest.json").read_text())
    if kind == "corrupt byte":
        data = bytearray((d / "weights/w0.bin").read_bytes())
        data[1] ^= 0x40
        (d / "weights/w0.bin").write_bytes(bytes(data))
        return 'file "weights/w0.bin" does not match its sha256'
    if kind == "missing file":
        (d / "driver/model.h").unlink()
        return 'file "driver/model.h" is missing'
    if kind == "no manifest":
        (d / "manifest.json").unlink()
        return "manifest.json not found"
    edits = {
        "wrong version": ("version", 2, '"version" is 2, this runtime reads version 1'),
        "string version": ("version", "1", '"version" must be the integer 1'),
        "bool version": ("version", True, '"version" must be the integer 1'),
        "wrong format": ("format", "onnx", '"format" is "onnx", expected "dlavm-artifact"'),
        "format not a string": ("format", 3, '"format" must be the string "dlavm-artifact"'),
        "no format": ("format", None, 'manifest.json has no "format"'),
        "no files": ("files", None, 'manifest.json has no "files"'),
        "files not an object": ("files", ["a"], '"files" must be an object {path: sha256}'),
        "escaping path": ("files", {"../w0.bin": "0" * 64}, '"files": path "../w0.bin" must be a relative path'),
        "absolute path": ("files", {"/etc/passwd": "0" * 64}, 'path "/etc/passwd" must be a relative path'),
        "dot path": ("files", {"weights/./w0.bin": "0" * 64}, 'path "weights/./w0.bin" must be a relative'),
        "upper-case digest": ("files", {"weights/w0.bin": "A" * 64},
                              'the sha256 of "weights/w0.bin" must be 64 lowercase hex digits'),
    }
    key, value, message = edits[kind]
    if value is None:
        del m[key]
    else:
        m[key] = value
    (d / "manifest.json").write_text(json.dumps(m))
    return message


DAMAGE = ["corrupt byte", "missing file", "no manifest", "wrong version", "string version", "bool version",
          "wrong format", "format not a string", "no format", "no files", "files not an object", "escaping path",
          "absolute path", "dot path", "upper-case digest"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damage_is_refused_with_the_same_message(cpp_programs, tmp_path, kind):
    d = write_artifact(tmp_path / "art", FILES)
    expected = _damage(kind, d)
    cpp = _cpp(cpp_programs, d, rc=2).stdout.strip()
    py = _python_message(d)
    assert py is not None and expected in py
    assert cpp == f"ArtifactError: {py}"
    assert py.startswith(f"artifact {d}: ")


@pytest.mark.parametrize("text,why", [("{not json", "manifest.json is not valid JSON: "),
                                      ("[1, 2]", "manifest.json must hold a JSON object"),
                                      ('{"format": "dlavm-artifact", "format": "x"}', "not valid JSON: ")])
def test_a_bad_manifest_is_refused_by_both(cpp_programs, tmp_path, text, why):
    d = write_artifact(tmp_path / "art", {})
    (d / "manifest.json").write_text(text)
    cpp = _cpp(cpp_programs, d, rc=2).stdout.strip()
    py = _python_message(d)
    assert why in cpp and why in py
    assert cpp.split(why)[0] == f"ArtifactError: {py.split(why)[0]}"


def test_reading_an_unlisted_or_changed_file_is_refused(tmp_path):
    d = write_artifact(tmp_path / "art", FILES)
    manifest = verify_artifact(d)
    with pytest.raises(ArtifactError, match='file "manifest.json" is not listed'):
        read_artifact_file(d, manifest, "manifest.json")
    (d / "weights/w0.bin").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        read_artifact_file(d, manifest, "weights/w0.bin")
