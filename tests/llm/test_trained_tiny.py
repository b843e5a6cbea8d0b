"""The demo's trained model (script/train_tiny.py, recipe ``trained-tiny``), on its seconds-long
``test`` size: training is reproducible bit for bit, the cache is keyed by what the weights depend
on, and the checkpoint goes through ``hf:DIR``, compilation and generation like any other.

The ``demo`` size (minutes of CPU) is trained by ``make demo``, never here.
"""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.llm.conftest import quantized_torch_model, torch_greedy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "script" / "train_tiny.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_tiny_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two runs with seed 0 and one with seed 1, each of the ``test`` size (6 steps)."""
    tt = _script()
    base = tmp_path_factory.mktemp("trained")
    runs = {name: base / name for name in ("a", "b", "seed1")}
    infos = {name: tt.train(out, "test", seed=1 if name == "seed1" else 0, threads=2)
             for name, out in runs.items()}
    return runs, infos


def test_same_seed_gives_bit_identical_weights(trained):
    runs, infos = trained
    for f in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert (runs["a"] / f).read_bytes() == (runs["b"] / f).read_bytes(), f
    assert infos["a"]["final_loss"] == infos["b"]["final_loss"]
    # the comparison above compares something: another seed gives other weights (same tokenizer)
    assert (runs["a"] / "model.safetensors").read_bytes() != (runs["seed1"] / "model.safetensors").read_bytes()
    assert (runs["a"] / "tokenizer.json").read_bytes() == (runs["seed1"] / "tokenizer.json").read_bytes()
    assert infos["a"]["final_loss"] < infos["a"]["first_loss"]  # it learned something in 6 steps


def test_checkpoint_compiles_and_generates_like_torch(trained):
    from dlavm.llm import compile_llm
    from dlavm.llm.reference import host_tables
    from dlavm.models import import_model
    from dlavm.tokenizer import Tokenizer

    runs, _ = trained
    res = import_model(f"hf:{runs['a']}", max_seq=32)
    tok = Tokenizer.from_file(res.spec.extras["tokenizer"])
    assert tok.vocab_size == res.spec.module.model.config.vocab_size == 320
    assert (tok.bos_id, tok.eos_id) == (0, 1)
    cm = compile_llm(res.module, target="vcu128", weights="int8", max_seq=32, name="trained-test")
    prompt = tok.encode("The compiler reads a model,")
    got = list(cm.generate(prompt, 8, keep_logits=True))
    want, want_logits = torch_greedy(quantized_torch_model(res.spec.module, cm.device_module, res.module.params,
                                                           host_tables(cm)), prompt, 8)
    assert got == want
    err = max(float(np.abs(d - t).max() / np.abs(t).max()) for d, t in zip(cm.generator.logits, want_logits))
    assert err <= 5e-3
    assert isinstance(tok.decode(got), str)


def test_cache_key_follows_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path))
    tt = _script()
    first = tt.default_dir("demo")
    assert first.parent == tmp_path / "trained-tiny" and first.name.startswith("demo-")
    assert tt.default_dir("demo") == first  # deterministic
    assert tt.default_dir("demo", seed=1) != first and tt.default_dir("test") != first
    edited = tmp_path / "workshop.txt"
    edited.write_text(tt.CORPUS_FILES[1].read_text(encoding="utf-8") + "One more line.\n", encoding="utf-8")
    monkeypatch.setattr(tt, "CORPUS_FILES", (tt.CORPUS_FILES[0], edited))
    assert tt.default_dir("demo") != first


def test_recipe_loads_the_cached_checkpoint(trained, tmp_path, monkeypatch):
    """``trained-tiny`` asks the script for its folder and loads it (here a cache holding the test-size
    checkpoint under the demo's key, so nothing trains)."""
    from dlavm.models import load_model

    runs, _ = trained
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path))
    where = subprocess.run([sys.executable, str(SCRIPT), "--print-dir"], capture_output=True, text=True, check=True)
    cached = Path(where.stdout.strip())
    assert cached.parent == tmp_path / "trained-tiny"
    shutil.copytree(runs["a"], cached)
    spec = load_model("trained-tiny", max_seq=16)
    assert spec.name == "trained-tiny" and spec.dims == {"seq": (1, 16)}
    assert Path(spec.extras["checkpoint"]) == cached.resolve()
    assert spec.module.model.config.hidden_size == 64  # the copied checkpoint, not a fresh training


def test_script_refuses_bad_arguments():
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "3"], capture_output=True, text=True)
    assert done.returncode == 2 and "--steps 3" in done.stderr and "Traceback" not in done.stderr
