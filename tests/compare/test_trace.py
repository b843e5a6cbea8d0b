"""Trace-level check: for the same artifact and inputs, the generated C++ driver (against the
simulator server with --record) and the Python runtime (in-process simulator in a RecordingHAL)
make identical host-access traces: every register write/read, memory write (address, length,
sha256 of the bytes) and read, in the same order (normalised as dlavm.compare.trace says)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from dlavm.artifact import open_artifact
from dlavm.compare.cases import llama_block
from dlavm.compare.trace import compare_traces, describe
from dlavm.compiler import compile as dlavm_compile, load
from hw_models import Simulator
from hw_models.server import RecordingHAL
from tests.driver_support import build_driver, sim_server


pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """(artifact dir, driver executable) of a one-layer Llama block with weights, on tiny."""
    mod = llama_block(max_seq=16, layers=1, hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=96,
                      rng=np.random.default_rng(5))
    art = dlavm_compile(mod, target="tiny", name="block").save(tmp_path_factory.mktemp("trace") / "block")
    return art, build_driver(art, "block", opt="-O1")


def _cpp_trace(art, exe, tmp_path, seq, ids) -> list:
    record = tmp_path / f"record{seq}.json"
    with sim_server(tmp_path, once=True, record=record) as (uri, srv):
        ids.tofile(tmp_path / "ids.bin")
        res = subprocess.run([str(exe), uri, str(art), f"seq={seq}", str(tmp_path / "ids.bin"),
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        srv.wait(30)   # --once: exits when the driver disconnects, writing the record
    return json.loads(record.read_text())


def _python_trace(art, ids) -> list:
    """The generated main's steps with the Python runtime: load weights, read cycles, run, read cycles."""
    log: list = []
    hal = RecordingHAL(Simulator("tiny"), log)
    rt = load(art, hal=hal).runtime()   # the runtime load() made on hal (weights written once)
    hal.cycles()
    rt.run("forward", ids)
    hal.cycles()
    return log


@pytest.mark.parametrize("seq", [1, 16])
def test_cpp_driver_and_python_runtime_make_identical_traces(driver, tmp_path, seq):
    art, exe = driver
    ids = np.random.default_rng(seq).integers(0, 64, seq).astype(np.int64)
    cpp, py = _cpp_trace(art, exe, tmp_path, seq, ids), _python_trace(art, ids)
    diffs = compare_traces(py, cpp)
    assert not diffs, "\n".join(diffs)
    kinds = [e[0] for e in py]
    assert kinds.count("write_reg") == 4 and "wait" in kinds and kinds[-4] == "read_mem"  # one stream kick
    assert kinds[-3:] == ["read_reg"] * 3   # cycles(): CYCLE_HI, CYCLE_LO, CYCLE_HI (no carry in between)
    stream = open_artifact(art).streams["forward.0"]
    assert ["write_mem", stream.addr, 64 * stream.count] == py[kinds.index("write_reg") - 1][:3]


def test_a_differing_trace_is_reported_entry_by_entry():
    a = [["write_reg", 0xA8, 5], ["wait", None]]
    b = [["reset"], ["write_reg", 0xA8, 6], ["wait", None], ["read_mem", 64, 8]]
    out = compare_traces(a, b)
    assert out[0] == "entry 0: A write_reg AUX_COUNT (0xa8) = 0x5 | B write_reg AUX_COUNT (0xa8) = 0x6"
    assert out[1] == "entry 2: A (end of log) | B read_mem 0x40 8 bytes" and out[-1] == "A has 2 entries, B has 3"
    assert describe(["write_mem", 0x40, 64, "ab" * 32]).startswith("write_mem 0x40 64 bytes sha256 abab")
