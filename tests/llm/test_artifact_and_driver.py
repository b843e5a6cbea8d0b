"""The LLM artifact: saved and loaded it generates the same tokens; its generated C++ driver
(built with g++ -Wall -Werror against clib, run against the simulator server) generates the same
tokens as the Python runtime; the CLI streams tokens; a model without attention is refused."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm.cli.main import main as cli
from dlavm.compiler import CompileError, load
from dlavm.llm import compile_llm
from tests.driver_support import build_driver, sim_server
from tests.llm.conftest import compiled, prompt_of

MAX_CTX = 40   # the 'tiny' target (fast simulator server)


def test_saved_artifact_generates_the_same_tokens(tmp_path):
    cm = compiled("tiny-qwen2", "int8", MAX_CTX, target="tiny")
    prompt = prompt_of(9)
    want = list(cm.generate(prompt, 12))
    art = load(cm.save(tmp_path / "qwen2"))
    assert art.manifest.llm.max_ctx == MAX_CTX and set(art.entries) == {"logits", "greedy"}
    assert set(art.manifest.entries["greedy"].state_dims) == {"ctx"}
    assert list(art.generate(prompt, 12)) == want
    kv = art.manifest.memory["kv"].buffers
    assert {"kv.layer0.k", "kv.layer0.v", "kv.layer1.k", "kv.layer1.v"} <= set(kv)
    assert kv["kv.layer0.k"].size == 2 * MAX_CTX * 16 * 2   # [HKV=2, max_ctx, D=16] fp16


def test_cli_generate_streams_and_reports(tmp_path):
    out = tmp_path / "llama"
    cm = compiled("tiny-llama", "int8", MAX_CTX, target="tiny")
    cm.save(out)
    want = list(cm.generate([1, 2, 3], 6))
    r = CliRunner().invoke(cli, ["generate", str(out), "--prompt-ids", "1,2,3", "--max-new-tokens", "6"])
    assert r.exit_code == 0, r.output
    assert [int(t) for t in r.stdout.split()] == want
    r = CliRunner().invoke(cli, ["generate", str(out), "--prompt-ids", ",".join(["1"] * (MAX_CTX + 1))])
    assert r.exit_code != 0 and f"maximum context is {MAX_CTX}" in r.output
    r = CliRunner().invoke(cli, ["generate", str(out), "--prompt", "hello"])
    assert r.exit_code != 0 and "needs a tokenizer" in r.output
    r = CliRunner().invoke(cli, ["generate", str(out), "--prompt-ids", "1,2", "--max-new-tokens", "50"])
    assert r.exit_code == 0 and "context bound" in r.output


def test_a_model_without_attention_is_refused():
    with pytest.raises(CompileError, match="no dev.attention"):
        compile_llm("mlp", target="tiny", weights="int8", max_seq=16)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    with sim_server(tmp_path_factory.mktemp("srv")) as (uri, _):
        yield uri


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_cpp_driver_generates_the_same_tokens(server, tmp_path, name):
    cm = compiled(name, "int8", MAX_CTX, target="tiny")
    art = cm.save(tmp_path / name)
    mf = re.sub(r"\W", "_", name)
    exe = build_driver(art, mf, main="generate")
    for n, new in ((7, 20), (MAX_CTX - 3, 10)):
        prompt = np.array(prompt_of(n, seed=n), np.int64)
        prompt.tofile(tmp_path / "prompt.bin")
        res = subprocess.run([str(exe), server, str(art), str(tmp_path / "prompt.bin"), str(new)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.split()
        got = [int(t) for t in lines if t.isdigit()]
        want = list(load(art).generate(prompt, new))
        assert got == want
        assert lines[-1] == ("context" if n + new - 1 > MAX_CTX else "max_new_tokens")
    np.ones(MAX_CTX + 1, np.int64).tofile(tmp_path / "prompt.bin")
    res = subprocess.run([str(exe), server, str(art), str(tmp_path / "prompt.bin"), "3"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and f"maximum context is {MAX_CTX}" in res.stderr
