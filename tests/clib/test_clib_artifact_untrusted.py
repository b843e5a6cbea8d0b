"""The C++ artifact reader on untrusted input, beyond the shared refusal table (tests/artifact): the bytes
read after open() are the bytes checked, a program's expectations of the manifest are checked field by
field, and the ISA table the patch checks use is the ISA's."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from clib_testing import CLIB
from dlavm.target.isa_cpp import render_cpp


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A one-layer Llama block on tiny, saved without a driver."""
    import numpy as np

    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    mod = llama_block(max_seq=64, layers=1, rng=np.random.default_rng(3))
    return dlavm_compile(mod, target="tiny", name="block").save(tmp_path_factory.mktemp("good") / "block",
                                                                driver=False)


def test_the_shipped_isa_table_is_the_isas():
    shipped = (CLIB / "src" / "isa_fields.inc").read_text()
    assert shipped == render_cpp(), "regenerate: python -m dlavm.target.isa_cpp > clib/src/isa_fields.inc"


@pytest.mark.parametrize("change", ["same size", "shorter"])
def test_a_file_changed_between_open_and_read_is_refused_never_used(cpp_programs, good, tmp_path, change):
    d = tmp_path / "art"
    shutil.copytree(good, d)
    m = json.loads((d / "manifest.json").read_text())
    rel = m["streams"]["forward.0"]["file"]
    original = (d / rel).read_bytes()
    out = tmp_path / "out.bin"
    proc = subprocess.Popen([str(cpp_programs["rt_tool"]), "artifact-reread", str(d), rel, str(out)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "opened"
    changed = bytearray(original)
    changed[0] ^= 0x10
    (d / rel).write_bytes(bytes(changed) if change == "same size" else original[:-64])
    stdout, _ = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 2 and not out.exists()
    assert stdout.strip().startswith(f'ArtifactError: artifact {d}: file "{rel}" does not match its sha256 '
                                     f'(manifest {m["files"][rel]}, file ')
    (d / rel).write_bytes(original)        # and unchanged, the same program reads it
    res = subprocess.run([str(cpp_programs["rt_tool"]), "artifact-reread", str(d), rel, str(out)], input="go\n",
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and out.read_bytes() == original


def test_a_file_swapped_for_a_link_after_open_is_refused(cpp_programs, good, tmp_path):
    d = tmp_path / "art"
    shutil.copytree(good, d)
    rel = json.loads((d / "manifest.json").read_text())["weights"][0]["file"]
    outside = tmp_path / "outside.bin"
    outside.write_bytes((d / rel).read_bytes())      # same bytes: only the link is wrong
    proc = subprocess.Popen([str(cpp_programs["rt_tool"]), "artifact-reread", str(d), rel, str(tmp_path / "o")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "opened"
    (d / rel).unlink()
    (d / rel).symlink_to(outside)
    stdout, _ = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 2
    assert stdout.strip() == (f'ArtifactError: artifact {d}: file "{rel}": "{rel}" is a symbolic link; an artifact '
                              f'holds regular files only')


def _expect(cpp_programs, d, expected) -> str:
    res = subprocess.run([str(cpp_programs["rt_tool"]), "artifact-expect", str(d), json.dumps(expected)],
                         capture_output=True, text=True, timeout=60)
    return res.stdout.strip()


def test_expect_checks_every_leaf_it_is_given(cpp_programs, good):
    m = json.loads((good / "manifest.json").read_text())
    s = m["streams"]["forward.0"]
    w = [{"file": b["file"], "addr": b["addr"]} for b in m["weights"]]
    assert _expect(cpp_programs, good, {"streams": {"forward.0": {"count": s["count"]}}, "weights": w}) == "ok"
    p = f"ArtifactError: artifact {good}: manifest.json: "
    assert _expect(cpp_programs, good, {"streams": {"forward.0": {"count": s["count"] + 1}}}) == (
        f"{p}streams.forward.0.count: is {s['count']}, this tool was generated for {s['count'] + 1}")
    assert _expect(cpp_programs, good, {"streams": {"forward.9": {"count": 1}}}) == (
        f'{p}streams.forward.9: is missing, this tool was generated for {{"count":1}}')
    assert _expect(cpp_programs, good, {"weights": w[:-1]}) == (
        f"{p}weights: has {len(w)} items, this tool was generated for {len(w) - 1}")
    w[1] = {**w[1], "file": "weights/other.bin"}
    assert _expect(cpp_programs, good, {"weights": w}) == (
        f'{p}weights[1].file: is "{m["weights"][1]["file"]}", this tool was generated for "weights/other.bin"')
    assert _expect(cpp_programs, good, {"model": 1}) == f'{p}model: is "{m["model"]}", this tool was generated for 1'


@pytest.mark.parametrize("raw", [b"\xa2", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80"],
                         ids=["bad lead byte", "overlong", "truncated", "past U+10FFFF"])
def test_a_manifest_that_is_not_utf8_is_not_json_for_both_readers(cpp_programs, good, tmp_path, raw):
    """As Python's decoder: the C++ reader refuses it before parsing, and its message stays valid UTF-8."""
    from dlavm.artifact import MANIFEST_SUM, ArtifactError, manifest_sum_text, open_artifact
    d = tmp_path / "art"
    shutil.copytree(good, d)
    text = (d / "manifest.json").read_bytes()
    at = text.index(b'"model": "') + len(b'"model": "')
    text = text[:at] + raw + text[at:]
    (d / "manifest.json").write_bytes(text)
    (d / MANIFEST_SUM).write_text(manifest_sum_text(text))
    with pytest.raises(ArtifactError, match="manifest.json: is not valid JSON: "):
        open_artifact(d)
    res = subprocess.run([str(cpp_programs["rt_tool"]), "artifact", str(d)], capture_output=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout.decode() == f"ArtifactError: artifact {d}: manifest.json: is not valid JSON: byte {at} is not UTF-8\n"


@pytest.mark.parametrize("text,why", [(b'{"a": \xa2}', "unexpected character byte 0xA2"),
                                      (b'[\n]', None), (b'[\x01]', "unexpected character byte 0x01"),
                                      (b'["\\\xe9"]', "invalid escape '\\' followed by byte 0xE9"),
                                      (b'[@]', "unexpected character '@'")])
def test_json_errors_name_a_bad_byte_by_its_value(cpp_programs, tmp_path, text, why):
    """A JSON error quoting the input byte shows it as 0xNN unless it is printable ASCII, so a refusal of a
    damaged manifest is one line of valid UTF-8 (a raw byte made it neither)."""
    f = tmp_path / "in.json"
    f.write_bytes(text)
    res = subprocess.run([str(cpp_programs["rt_tool"]), "json", str(f)], capture_output=True, timeout=60)
    out = res.stdout.decode()     # valid UTF-8, else this raises
    if why is None:
        assert res.returncode == 0 and out == "[]\n"
    else:
        assert res.returncode == 2 and out.endswith(f": {why}\n") and out.count("\n") == 1, out
