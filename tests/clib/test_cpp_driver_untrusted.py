"""The generated C++ driver on an artifact that is consistent but not the one it was generated for: every
size it relies on is checked against the verified manifest before a buffer is touched, and refused with
one line (built with and without the sanitizers; a write past a buffer would be a sanitizer report)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from clib_build import FLAVOURS, SANITIZER_EXIT_CODE, build_clib, compile_programs
from dlavm.artifact import MANIFEST_SUM, manifest_sum_text
from tests.clib.cpp_artifact_fuzz import SimServer

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
STREAM = "forward.0"


@pytest.fixture(scope="module")
def server():
    srv = SimServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    """A one-layer Llama block (patched and guarded stream entries, a host embedding table) with its driver."""
    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    work = tmp_path_factory.mktemp("block")
    art = dlavm_compile(llama_block(max_seq=64, layers=1, rng=np.random.default_rng(3)), target="tiny",
                        name="block").save(work / "art")
    ids = work / "ids.bin"
    np.array([5, 9, 1], np.int64).tofile(ids)
    return art, ids


@pytest.fixture(scope="module", params=FLAVOURS)
def driver(request, block):
    art, _ = block
    d = art / "driver"
    return compile_programs({"block_main": [d / "block.cc", d / "block_main.cc"]}, art.parent / f"bin_{request.param}",
                            request.param, build_clib(request.param), includes=(d,))["block_main"]


def _copy(art, tmp_path):
    d = tmp_path / "art"
    shutil.copytree(art, d)
    return d, json.loads((d / "manifest.json").read_text())


def _store(d, m, rel, data):
    """Write ``rel``, list its new sha256 and reseal the manifest: a consistent artifact."""
    (d / rel).write_bytes(data)
    m["files"][rel] = hashlib.sha256(data).hexdigest()
    text = json.dumps(m)
    (d / "manifest.json").write_text(text)
    (d / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))


def _run(exe, server, d, ids, tmp_path) -> str:
    res = subprocess.run([str(exe), server.uri, str(d), "seq=3", str(ids), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != SANITIZER_EXIT_CODE, res.stderr
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "\n" not in err and not list(tmp_path.glob("out*.bin")), err
    return err


def test_the_unmutated_artifact_runs(driver, block, server, tmp_path):
    art, ids = block
    res = subprocess.run([str(driver), server.uri, str(art), "seq=3", str(ids), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("cycles "), res.stderr


def test_a_stream_file_shorter_than_its_count_is_refused_when_opened(driver, block, server, tmp_path):
    art, ids = block
    d, m = _copy(art, tmp_path)
    s = m["streams"][STREAM]
    _store(d, m, s["file"], (d / s["file"]).read_bytes()[:-64])
    assert _run(driver, server, d, ids, tmp_path) == (
        f"error: artifact {d}: manifest.json: streams.{STREAM}.file: holds {(s['count'] - 1) * 64} bytes, its count "
        f"({s['count']}) needs {s['count'] * 64}")


def test_a_shorter_stream_with_a_matching_count_is_not_the_drivers(driver, block, server, tmp_path):
    """The issue's crash: count and file cut to the first entries (patches, guards and records too); the
    driver's patches of the later entries would write past the stream's buffer."""
    art, ids = block
    d, m = _copy(art, tmp_path)
    s = m["streams"][STREAM]
    count, keep = s["count"], 4
    assert any(p["index"] >= keep for p in s["patches"])
    s.update(count=keep, insns=s["insns"][:keep], patches=[p for p in s["patches"] if p["index"] < keep],
             guards=[g for g in s["guards"] if g["index"] < keep])
    _store(d, m, s["file"], (d / s["file"]).read_bytes()[:keep * 64])
    assert _run(driver, server, d, ids, tmp_path) == (
        f"error: artifact {d}: manifest.json: streams.{STREAM}.count: is {keep}, this driver was generated for "
        f"{count}")


def test_a_weight_blob_of_another_size_is_not_the_drivers(driver, block, server, tmp_path):
    art, ids = block
    d, m = _copy(art, tmp_path)
    w = m["weights"][0]
    n = w["nbytes"]
    w["nbytes"] = n + 32
    m["memory"]["weights"]["buffers"][w["name"]][1] += 32
    _store(d, m, w["file"], (d / w["file"]).read_bytes() + bytes(32))
    assert _run(driver, server, d, ids, tmp_path) == (
        f"error: artifact {d}: manifest.json: weights[0].nbytes: is {n + 32}, this driver was generated for {n}")


def test_a_stream_moved_or_replaced_is_not_the_drivers(driver, block, server, tmp_path):
    art, ids = block
    d, m = _copy(art, tmp_path)
    s = m["streams"][STREAM]
    addr = s["addr"]
    s["addr"] = addr + 64
    _store(d, m, s["file"], (d / s["file"]).read_bytes())
    assert _run(driver, server, d, ids, tmp_path) == (
        f"error: artifact {d}: manifest.json: streams.{STREAM}.addr: is {addr + 64}, this driver was generated "
        f"for {addr}")
    s["addr"] = addr
    data = bytearray((d / s["file"]).read_bytes())
    old = m["files"][s["file"]]
    data[64 * 3 + 1] ^= 0x01                 # another program of the same size (a flag of entry 3)
    _store(d, m, s["file"], bytes(data))
    assert _run(driver, server, d, ids, tmp_path) == (
        f'error: artifact {d}: manifest.json: files.streams/{STREAM}.bin: is "{m["files"][s["file"]]}", this '
        f'driver was generated for "{old}"')


@pytest.mark.parametrize("arg,why", [("seq=x", "dim argument 'seq=x' is not NAME=INTEGER"),
                                     ("seq=3x", "dim argument 'seq=3x' is not NAME=INTEGER"),
                                     ("seq", "dim argument 'seq' is not NAME=INTEGER"),
                                     ("kv=3", "dim argument 'kv=3': no dim named kv (dims: seq)")])
def test_bad_dim_arguments_are_one_line_errors(driver, block, server, tmp_path, arg, why):
    art, ids = block
    res = subprocess.run([str(driver), server.uri, str(art), arg, str(ids), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.strip() == f"error: {why}", res.stderr
