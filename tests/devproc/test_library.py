"""Saved pipelines (doc/devproc.md, "AOT"): save, verified load, the numpy-only runtime, devices shared by
models, and every way a saved folder can be damaged."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import devproc
from tests.devlink.device_server_testing import ServerThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok():
    from dlavm.tokenizer.train import train_demo_tokenizer
    return devproc.load_tokenizer(train_demo_tokenizer(512).path)


@pytest.fixture(scope="module")
def models():
    return {"llm": devproc.load_torch_model("tiny-llama", max_seq=32),
            "mlp": devproc.load_torch_model("mlp", max_seq=16)}


@devproc.kernel
def two_models(prompt: devproc.String, x: devproc.Tensor, tok: devproc.Tokenizer, llm: devproc.TorchModel,
               mlp: devproc.TorchModel, table: devproc.Tensor):
    cache = devproc.KVCache()
    first = devproc.prefill(llm, devproc.tokenize_encode(prompt, tok), cache)
    y = mlp(x)                                             # another model between two uses of the cache
    nxt = devproc.decode(llm, devproc.unsqueeze(devproc.argmax(first, dim=-1), 0), cache)
    return devproc.argmax(nxt, dim=-1), devproc.l2_normalize(y), devproc.embed(devproc.argmax(first, dim=-1), table)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok, models):
    table = devproc.const(np.arange(512 * 4, dtype=np.float32).reshape(512, 4), "table")
    lib = devproc.compile(two_models, (devproc.input("prompt", devproc.String),
                                       devproc.input("x", devproc.Tensor[devproc.Float32, 3]), tok, models["llm"],
                                       models["mlp"], table))
    return lib.save(tmp_path_factory.mktemp("saved") / "p")


def _x(seq=5):
    return np.random.default_rng(0).standard_normal((1, seq, 64)).astype(np.float32)


def test_a_saved_pipeline_holds_its_graph_models_and_constants(saved):
    obj = json.loads((saved / "pipeline.json").read_text())
    assert [c["name"] for c in obj["consts"]] == ["tok", "llm", "mlp", "table"]
    assert {c["name"]: c["type"].get("use") for c in obj["consts"] if c["type"]["kind"] == "model"} == \
        {"llm": "llm", "mlp": "forward"}
    for c in obj["consts"]:
        assert (saved / c.get("file", c.get("artifact", ""))).exists()
    assert not any(str(ROOT) in line for line in (saved / "pipeline.json").read_text().splitlines())


def test_the_runtime_matches_running_each_model_by_hand(saved, tok, models):
    import dlavm
    rt = devproc.runtime.Runtime(devproc.load(saved))
    tok_ids, y_norm, row = rt.run("Once upon a time", _x())
    llm = dlavm.load(saved / "models" / "llm")
    ids = tok.tokenizer.encode("Once upon a time")
    gen = llm.generate(ids, 2)
    assert tok_ids.tolist() == [list(gen)[1]]
    (y,) = dlavm.load(saved / "models" / "mlp").run(_x())
    assert np.array_equal(y_norm, devproc.l2_normalize(y.astype(np.float32)))
    assert row.shape == (1, 4) and row.dtype == np.float32
    assert rt.timings["device_cycles"]["llm"] > 0 and "tokenize_encode" in rt.timings["host_s"]
    trace = rt.trace()        # one span per node, each model on its own track with its device cycles
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in spans] == [n.op for n in rt.graph.nodes]
    assert {e["tid"] for e in spans if e["name"] in ("prefill", "decode")} == {1}
    assert all(e["args"]["device_cycles"] > 0 for e in spans if e["name"] in ("prefill", "decode", "call"))
    assert all(e["args"]["loc"].startswith("test_library.py:") for e in spans)


def test_models_sharing_a_device_reload_their_weights_and_a_displaced_kv_cache_is_refused(saved):
    here = devproc.runtime.Runtime(devproc.load(saved))
    with ServerThread("tiny") as srv:
        shared = devproc.runtime.Runtime(devproc.load(saved), device=f"sim://127.0.0.1:{srv.port}")
        with pytest.raises(devproc.DevprocError) as e:
            shared.run("Once upon a time", _x())
        assert re.search(r"test_library.py:\d+: decode: the KV cache of 'llm' was overwritten by model 'mlp' on "
                         r"the same device since its last use", str(e.value)), str(e.value)
        # each model on its own device: the same outputs as in-process simulators, bit for bit
        with ServerThread("tiny") as srv2:
            apart = devproc.runtime.Runtime(devproc.load(saved), devices={"llm": f"sim://127.0.0.1:{srv.port}",
                                                                         "mlp": f"sim://127.0.0.1:{srv2.port}"})
            for a, b in zip(apart.run("Once upon a time", _x()), here.run("Once upon a time", _x())):
                assert np.array_equal(a, b)


def test_inputs_are_checked_before_anything_runs(saved):
    rt = devproc.runtime.Runtime(devproc.load(saved))
    for args, kw, rule in [((), {}, "input 'prompt' (String) is missing"),
                           ((1, _x()), {}, "input 'prompt' must be a str"),
                           (("a", _x().astype(np.float16)), {}, "input 'x' must be Tensor[devproc.Float32, rank 3]"),
                           (("a", _x(), 3), {}, "takes 2 input(s), got 3"),
                           (("a",), {"y": 1}, "input 'y' is unknown")]:
        with pytest.raises(devproc.DevprocError, match=re.escape(rule)):
            rt.run(*args, **kw)


def test_a_size_past_the_models_bound_is_refused_naming_the_op_and_line(saved):
    rt = devproc.runtime.Runtime(devproc.load(saved))
    with pytest.raises(devproc.DevprocError) as e:
        rt.run("Once upon a time " * 20, _x())
    assert re.match(r"test_library.py:\d+: prefill: \d+ cached \+ \d+ new tokens = \d+ exceed the model's maximum "
                    r"context of 32 tokens", str(e.value)), str(e.value)


def _copy(saved: Path, tmp_path: Path) -> Path:
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(saved, d, symlinks=True)
    return d


@pytest.mark.parametrize("damage, rule", [
    (lambda d: (d / "consts" / "tok.json").write_bytes(b"{}"), "const 'tok': consts/tok.json does not match its sha256"),
    (lambda d: (d / "consts" / "table.bin").unlink(), 'file "consts/table.bin" is missing'),
    (lambda d: ((d / "consts" / "table.bin").unlink(), os.symlink("/etc/hostname", d / "consts" / "table.bin")),
     "is a symbolic link"),
    (lambda d: (d / "pipeline.json").write_text("{"), "pipeline.json: not valid JSON"),
    (lambda d: _edit(d, lambda o: o["consts"][3].update(file="../../x.bin")), "plain path under consts/ or models/"),
    (lambda d: _edit(d, lambda o: o["consts"][3].update(shape=[512, 5])), "holds 8192 bytes, not a float32 array"),
    (lambda d: _edit(d, lambda o: o["nodes"][1].update(op="system")), "unknown op 'system'"),
    (lambda d: _edit(d, lambda o: o["consts"][2]["type"].update(use="llm")),
     "nodes[3] (call): this model is compiled for use 'llm', not 'forward'"),
    (lambda d: _edit(d, lambda o: o["consts"][2].update(artifact="models/llm")),
     "const 'mlp': the model's artifact has no 'forward' entry"),
    (lambda d: (d / "models" / "mlp" / "manifest.json").write_text("[]"), "const 'mlp': artifact"),
])
def test_a_damaged_saved_pipeline_is_refused_in_one_line_naming_the_file(saved, tmp_path, damage, rule):
    d = _copy(saved, tmp_path)
    damage(d)
    with pytest.raises(devproc.DevprocError) as e:
        devproc.load(d)
    assert rule in str(e.value) and "\n" not in str(e.value), str(e.value)


def _edit(d: Path, fn) -> None:
    obj = json.loads((d / "pipeline.json").read_text())
    fn(obj)
    (d / "pipeline.json").write_text(json.dumps(obj))


def test_a_saved_pipeline_runs_without_torch(saved):
    """A deployment host has no torch: the runtime runs the saved pipeline with torch made unimportable."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, devproc.runtime as r\n"
            f"rt = r.Runtime(r.load({str(saved)!r}))\n"
            "x = np.random.default_rng(0).standard_normal((1, 5, 64)).astype(np.float32)\n"
            "out = rt.run('Once upon a time', x)\n"
            "print(out[0].tolist(), float(out[1].sum()))\n"
            "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    rt = devproc.runtime.Runtime(devproc.load(saved))
    out = rt.run("Once upon a time", _x())
    assert res.stdout.split()[0] == str(out[0].tolist()).split()[0]


def test_the_command_line_runs_a_saved_pipeline_and_refuses_bad_input_in_one_line(saved, tmp_path):
    from devproc.runtime.cli import read_outputs
    np.save(tmp_path / "x.npy", _x())
    (tmp_path / "prompt.txt").write_text("Once upon a time")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "devproc.runtime", str(saved), *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)
    ok = run("--input", "prompt=@" + str(tmp_path / "prompt.txt"), "--input", f"x=@{tmp_path / 'x.npy'}",
             "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    want = devproc.runtime.Runtime(devproc.load(saved)).run("Once upon a time", _x())
    for a, b in zip(read_outputs(tmp_path / "out"), want):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    for args, rc, rule in [(("--input", "prompt=hi", "--input", "x=@/no/such.npy"), 1, "--input x: cannot read"),
                           (("--input", "prompt=hi", "--input", "x=5"), 1, "is given as x=@FILE"),
                           (("--input", "nope=1"), 1, "the pipeline has no input 'nope'"),
                           (("--input", "prompt=hi"), 1, "input 'x' (Tensor[devproc.Float32, rank 3]) is missing"),
                           ((), 2, "--out")]:
        res = run(*args, *(["--out", str(tmp_path / "o2")] if rc == 1 else []))
        assert res.returncode == rc, res.stderr
        assert rule in res.stderr and "Traceback" not in res.stderr, res.stderr
        if rc == 1:
            assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
