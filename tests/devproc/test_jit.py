"""The JIT (doc/devproc.md, "JIT"): what its cache key covers, across processes, and a damaged entry."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import devproc

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import numpy as np
import devproc
devproc.set_options(cache_dir=sys.argv[1])
model = devproc.load_torch_model("mlp", max_seq={max_seq})

@devproc.kernel
def pipe(x: devproc.Tensor, model: devproc.TorchModel):
    return {body}

x = np.random.default_rng(0).standard_normal((1, 5, 64)).astype(np.float32)
out = pipe(x, model)
print(json.dumps({{"stats": devproc.jit_stats(), "out": np.asarray(out).tolist()}}))
"""
ARGMAX = "devproc.argmax(model(x), dim=-1)"


def _run(tmp_path: Path, cache: Path, body: str = ARGMAX, max_seq: int = 16) -> dict:
    script = tmp_path / f"pipe_{abs(hash((body, max_seq)))}.py"
    script.write_text(SCRIPT.format(body=body, max_seq=max_seq))
    res = subprocess.run([sys.executable, str(script), str(cache)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["stderr"] = res.stderr
    return out


def _how(r: dict) -> str:
    s = r["stats"]
    return next(k for k in ("hit", "miss", "rebuilt") if s[k])


def test_a_later_process_loads_the_pipeline_from_the_cache_and_a_new_source_compiles_again(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache)
    again = _run(tmp_path, cache)
    assert (_how(first), _how(again)) == ("miss", "hit")
    assert first["out"] == again["out"]
    changed = _run(tmp_path, cache, body="devproc.l2_normalize(model(x))")          # the kernel's source
    assert _how(changed) == "miss"
    bound = _run(tmp_path, cache, max_seq=32)                                      # the model's dim bounds
    assert _how(bound) == "miss" and bound["out"] == first["out"]
    assert len([p for p in cache.rglob("pipeline.json")]) == 3


def test_two_processes_compiling_the_same_pipeline_at_once_both_succeed_with_one_entry(tmp_path):
    cache = tmp_path / "cache"
    script = tmp_path / "pipe.py"
    script.write_text(SCRIPT.format(body=ARGMAX, max_seq=16))
    procs = [subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1])["out"] for o in outs]
    assert results[0] == results[1]
    assert len(list(cache.rglob("pipeline.json"))) == 1
    assert not [p for p in cache.rglob(".tmp-*")]


def test_a_damaged_entry_is_rebuilt_with_a_warning_never_run(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache)
    (weights,) = [p for p in cache.rglob("weights/*.bin") if "0.weight" in p.name or "weight" in p.name][:1]
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    again = _run(tmp_path, cache)
    assert _how(again) == "rebuilt" and again["out"] == first["out"]
    assert "is damaged" in again["stderr"] and "rebuilding it" in again["stderr"]
    assert _how(_run(tmp_path, cache)) == "hit"


@devproc.kernel
def _pipe(x: devproc.Tensor, model: devproc.TorchModel):
    return devproc.argmax(model(x), dim=-1)


@pytest.fixture
def jit_cache(tmp_path):
    before = devproc.set_options()
    devproc.set_options(cache_dir=tmp_path / "cache")
    devproc.jit_stats(reset=True)
    yield tmp_path / "cache"
    devproc.set_options(**before)


def test_weights_changed_in_place_and_another_target_compile_again_in_one_process(jit_cache):
    model = devproc.load_torch_model("mlp", max_seq=16)
    x = np.random.default_rng(1).standard_normal((1, 4, 64)).astype(np.float32)
    a = _pipe(x, model)
    b = _pipe(x, model)
    assert np.array_equal(a, b)
    assert devproc.jit_stats() | {} == {"calls": 2, "memory": 1, "hit": 0, "miss": 1, "rebuilt": 0}
    with torch.no_grad():
        model.module.fc2.weight.neg_()                  # the same tensor, changed in place
    c = _pipe(x, model)
    with torch.no_grad():
        want = model.module(torch.from_numpy(x)).argmax(-1).numpy()
    assert np.array_equal(c, want)
    assert devproc.jit_stats()["miss"] == 2
    devproc.set_options(target="vcu128")
    d = _pipe(x, model)
    assert np.array_equal(d, want) and devproc.jit_stats()["miss"] == 3


def test_jit_options_are_checked(jit_cache):
    with pytest.raises(devproc.DevprocError, match="unknown option 'targt'"):
        devproc.set_options(targt="tiny")


def test_the_jit_logs_what_it_did(jit_cache, caplog):
    model = devproc.load_torch_model("mlp", max_seq=16)
    with caplog.at_level(logging.INFO, logger="devproc.jit"):
        _pipe(np.zeros((1, 2, 64), np.float32), model)
    assert any("pipeline '_pipe' compiled" in r.getMessage() for r in caplog.records)


def test_a_compiling_call_says_what_it_does_on_stderr_when_asked(jit_cache, capsys):
    model = devproc.load_torch_model("mlp", max_seq=16)
    devproc.set_options(progress=True)
    _pipe(np.zeros((1, 2, 64), np.float32), model)
    err = capsys.readouterr().err
    assert "devproc: compiling pipeline '_pipe' for tiny (fp16)" in err
    assert "compiling model 'model' (forward)" in err
    _pipe(np.zeros((1, 3, 64), np.float32), model)           # from memory: nothing to say
    assert capsys.readouterr().err == ""


def test_the_key_holds_devprocs_own_source_fingerprint_beside_the_compilers():
    from dlavm.cache import source_fingerprint
    from devproc.build.jit import _OPTIONS, pipeline_key
    from devproc.lang import trace
    g, b, _ = trace(_pipe, (np.zeros((1, 2, 64), np.float32), devproc.load_torch_model("mlp", max_seq=16)))
    _, parts = pipeline_key(g, b, dict(_OPTIONS))
    assert parts["devproc"] == source_fingerprint(("devproc",)) != source_fingerprint()
    assert set(parts) >= {"graph", "kernels", "consts", "target", "weights", "devproc"}
