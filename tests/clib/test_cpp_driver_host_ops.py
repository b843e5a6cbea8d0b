"""Host ops and host constants in the generated C++ driver: every dtype ``load_const`` reads gives the
Python runtime's outputs bit for bit, a constant file of the wrong size or an artifact other than the
one the driver was generated for is refused, and a model whose
host ops the C++ driver cannot run says so when it is compiled (report) and saved (refusal)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from dlavm import sym
from dlavm.artifact import MANIFEST_SUM, manifest_sum_text
from dlavm.backend.driver import CPP_CONST_DTYPES, cpp_unsupported_host_ops
from dlavm.compiler import CompileError, compile as dlavm_compile, load
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from clib_build import FLAVOURS, build_clib, compile_programs
from tests.driver_support import sim_server

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

ROWS, DIM, VOCAB = 4, 32, 9
INT_DTYPES = [d for d in CPP_CONST_DTYPES if d not in ("float32", "float16", "bool")]


def host_const_model(rng, table_dtypes=("float32", "float16")) -> Module:
    """x [ROWS, DIM] + the sum over every integer dtype of embedding(table, indices), each index vector
    a host constant of that dtype, each table a host constant of a float dtype (alternating), + a bool
    host constant [ROWS * DIM] reshaped to [ROWS, DIM]: one host constant of every dtype load_const reads."""
    x = Var("x", TensorType((sym.const(ROWS), sym.const(DIM)), "float32"))
    params, acc = {}, call("dev.to_device", x)
    for k, idt in enumerate(INT_DTYPES):
        tdt = table_dtypes[k % len(table_dtypes)]
        table = Constant(f"table{k}_{tdt}", TensorType((sym.const(VOCAB), sym.const(DIM)), tdt))
        idx = Constant(f"idx{k}_{idt}", TensorType((sym.const(ROWS),), idt))
        params[table.name] = rng.standard_normal((VOCAB, DIM)).astype(tdt)
        params[idx.name] = rng.integers(0, VOCAB, ROWS).astype(idt)
        acc = call("dev.eltwise", acc, call("dev.to_device", call("embedding", table, idx)), fn="add")
    mask = Constant("mask_bool", TensorType((sym.const(ROWS * DIM),), "bool"))
    params[mask.name] = rng.integers(0, 2, ROWS * DIM).astype(bool)
    flags = call("reshape", mask, shape=(sym.const(ROWS), sym.const(DIM)))
    acc = call("dev.eltwise", acc, call("dev.to_device", flags), fn="add")
    return Module({"forward": Function("forward", [x], call("dev.to_host", acc))}, params)


def host_exp_model(rng) -> Module:
    """to_host(x + x) followed by a host ``exp``: an op the Python runtime runs and the C++ driver has not."""
    x = Var("x", TensorType((sym.const(ROWS), sym.const(DIM)), "float32"))
    h = call("dev.to_device", x)
    y = call("exp", call("dev.to_host", call("dev.eltwise", h, h, fn="add")))
    return Module({"forward": Function("forward", [x], y)}, {})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("srv")) as (uri, _):
        yield uri


@pytest.fixture(scope="module", params=FLAVOURS)
def const_artifact(request, tmp_path_factory):
    """The artifact of host_const_model with its generated driver built in each flavour (the asan one
    turns a read past a host constant's buffer into a failure)."""
    cm = dlavm_compile(host_const_model(np.random.default_rng(5)), target="tiny")
    art = cm.save(tmp_path_factory.mktemp(f"consts_{request.param}") / "art")
    d = art / "driver"
    exe = compile_programs({"model_main": [d / "model.cc", d / "model_main.cc"]}, art.parent / "bin", request.param,
                           build_clib(request.param), includes=(d,))["model_main"]
    return art, exe


def _run(exe, uri, art, tmp_path, x):
    x.astype(np.float32).tofile(tmp_path / "x.bin")
    return subprocess.run([str(exe), uri, str(art), str(tmp_path / "x.bin"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)


def test_host_constants_of_every_supported_dtype_match_the_python_runtime(const_artifact, server, tmp_path):
    art, exe = const_artifact
    dtypes = {np.dtype(c["dtype"]).name for c in json.loads((art / "manifest.json").read_text())["host_consts"]}
    assert dtypes == set(CPP_CONST_DTYPES)      # the model really stores one constant of each dtype
    x = np.random.default_rng(1).standard_normal((ROWS, DIM)).astype(np.float32)
    res = _run(exe, server, art, tmp_path, x)
    assert res.returncode == 0, res.stderr
    got = np.fromfile(tmp_path / "out0.bin", np.float32)
    want = load(art).run(x)[0]
    np.testing.assert_array_equal(got, want.reshape(-1))


def _reseal(art, manifest):
    text = json.dumps(manifest)
    (art / "manifest.json").write_text(text)
    (art / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))


def _short_const(src, tmp_path):
    """A copy of ``src`` whose float16 constant file is one element short, listed with its new sha256."""
    art = tmp_path / "art"
    shutil.copytree(src, art)
    manifest = json.loads((art / "manifest.json").read_text())
    i, const = next((i, c) for i, c in enumerate(manifest["host_consts"]) if np.dtype(c["dtype"]).name == "float16")
    data = (art / const["file"]).read_bytes()[:-2]
    (art / const["file"]).write_bytes(data)
    manifest["files"][const["file"]] = hashlib.sha256(data).hexdigest()
    return art, manifest, i, const


def test_a_host_constant_file_of_the_wrong_size_is_refused(const_artifact, server, tmp_path):
    """Shorter than its shape: refused by Artifact::open (the Python reader's rule and message), before
    the driver reads it."""
    src, exe = const_artifact
    art, manifest, i, const = _short_const(src, tmp_path)
    _reseal(art, manifest)
    res = _run(exe, server, art, tmp_path, np.zeros((ROWS, DIM), np.float32))
    need = VOCAB * DIM * 2
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: artifact {art}: manifest.json: host_consts[{i}].file: holds {need - 2} "
                                  f"bytes, its float16 shape [{VOCAB}, {DIM}] needs {need}")


def test_an_artifact_the_driver_was_not_generated_for_is_refused(const_artifact, server, tmp_path):
    """A consistent artifact (the shape says one row less, the file holds one row less) that is not the one
    the driver carries as constants: refused by the driver, naming the field, before any buffer is used."""
    src, exe = const_artifact
    art, manifest, i, const = _short_const(src, tmp_path)
    data = (art / const["file"]).read_bytes()[:-(DIM * 2 - 2)]
    (art / const["file"]).write_bytes(data)
    manifest["files"][const["file"]] = hashlib.sha256(data).hexdigest()
    const["shape"][0] -= 1
    _reseal(art, manifest)
    res = _run(exe, server, art, tmp_path, np.zeros((ROWS, DIM), np.float32))
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: artifact {art}: manifest.json: host_consts[{i}].shape[0]: is {VOCAB - 1}, "
                                  f"this driver was generated for {VOCAB}")


def test_a_model_the_cpp_driver_cannot_run_says_so_at_compile_time(tmp_path):
    cm = dlavm_compile(host_exp_model(np.random.default_rng(0)), target="tiny", name="expmodel")
    why = "entry 'forward': host op 'exp': no C++ implementation"
    assert [str(u) for u in cpp_unsupported_host_ops(cm.manifest)] == [
        why + " (the C++ driver runs embedding, reshape, arange)"]
    assert f"C++ driver: unavailable: {why}" in cm.report()
    with pytest.raises(CompileError, match=re.escape(f"cannot save 'expmodel' with its C++ driver: {why}")):
        cm.save(tmp_path / "with_driver")
    assert not (tmp_path / "with_driver").exists()
    art = cm.save(tmp_path / "no_driver", driver=False)
    assert not (art / "driver").exists()
    x = np.random.default_rng(2).standard_normal((ROWS, DIM)).astype(np.float32)
    np.testing.assert_allclose(load(art).run(x)[0], np.exp(2 * x.astype(np.float16).astype(np.float32)),
                               rtol=2e-3)


def test_a_supported_model_reports_the_driver_available_and_a_float64_constant_is_not(tmp_path):
    cm = dlavm_compile(host_const_model(np.random.default_rng(0)), target="tiny")
    assert cpp_unsupported_host_ops(cm.manifest) == [] and "C++ driver: available" in cm.report()
    cm64 = dlavm_compile(host_const_model(np.random.default_rng(0), table_dtypes=("float64",)), target="tiny")
    problems = cpp_unsupported_host_ops(cm64.manifest)
    assert len(problems) == len(INT_DTYPES)
    assert problems[0].op == "embedding" and problems[0].reason.startswith(
        "host constant 'table0_float64' has dtype float64, which the C++ driver does not hold exactly")
