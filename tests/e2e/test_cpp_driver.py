"""The generated C++ driver, built with g++ -Wall -Werror against clib, run against the
simulator server, gives bit-identical outputs to the Python runtime for the same artifact."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dlavm import sym

from dlavm.compiler import compile as dlavm_compile, load
from tests.driver_support import build_driver, sim_server
from tests.e2e import device_graphs as G

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("srv")) as (uri, _):
        yield uri


def _build(art: Path, name: str) -> Path:
    return build_driver(art, name)


def test_cpp_driver_is_bit_identical_to_the_python_runtime(server, tmp_path):
    seq = sym.Var("seq", 1, 24)
    mod, _, _ = G.llama_block(np.random.default_rng(3), seq, 128)
    art = dlavm_compile(mod, target="tiny").save(tmp_path / "llama")
    exe = _build(art, "model")
    text = (art / "driver" / "model.cc").read_text()
    assert "set_field(s, " in text and "d.seq" in text  # dynamic words computed from the dims
    py = load(art)
    rng = np.random.default_rng(0)
    for n in (1, 7, 24):
        ids = rng.integers(0, 50, n).astype(np.int64)
        ids.tofile(tmp_path / "in0.bin")
        res = subprocess.run([str(exe), server, str(art), f"seq={n}", str(tmp_path / "in0.bin"),
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        got = np.fromfile(tmp_path / "out0.bin", np.float32)
        want = py.run(ids)[0]
        np.testing.assert_array_equal(got, want.reshape(-1))
        assert int(res.stdout.split()[-1]) > 0
    np.zeros(25, np.int64).tofile(tmp_path / "in0.bin")
    res = subprocess.run([str(exe), server, str(art), "seq=25", str(tmp_path / "in0.bin"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "outside [1, 24]" in res.stderr


def test_cpp_driver_refuses_a_corrupt_artifact(server, tmp_path):
    mod, _, _ = G.mlp(np.random.default_rng(3), sym.Var("seq", 1, 8), 128)
    art = dlavm_compile(mod, target="tiny").save(tmp_path / "mlp")
    exe = _build(art, "model")
    w = next((art / "weights").glob("*.bin"))
    w.write_bytes(b"\0" + w.read_bytes()[1:])
    np.zeros((2, 32), np.float32).tofile(tmp_path / "x.bin")
    res = subprocess.run([str(exe), server, str(art), "seq=2", str(tmp_path / "x.bin"), str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and w.name in res.stderr


def test_cpp_driver_relaunches_loops_like_the_python_runtime(server, tmp_path):
    """Token loops of more than one trip (the host re-launches the body, doc/backend.md): the generated
    driver's launches give the Python runtime's outputs bit for bit, at one trip and at several."""
    from dlavm.compare.cases import llama_block
    art = dlavm_compile(llama_block(max_seq=160, layers=1, rng=np.random.default_rng(5)), target="tiny") \
        .save(tmp_path / "block")
    py = load(art)
    assert sum(len(s.loops) for s in py.manifest.streams.values()) >= 7
    exe = _build(art, "model")
    assert "patch_loop0(" in (art / "driver" / "model.cc").read_text()
    rng = np.random.default_rng(1)
    for n in (1, 64, 65, 129, 160):   # 64 and 128 rows per tile: 1 to 3 trips
        ids = rng.integers(0, 64, n).astype(np.int64)
        ids.tofile(tmp_path / "in0.bin")
        res = subprocess.run([str(exe), server, str(art), f"seq={n}", str(tmp_path / "in0.bin"),
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        np.testing.assert_array_equal(np.fromfile(tmp_path / "out0.bin", np.float32), py.run(ids)[0].reshape(-1))
