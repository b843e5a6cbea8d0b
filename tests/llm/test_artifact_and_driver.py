"""The LLM artifact: saved and loaded it generates the same tokens; its generated C++ driver
(built with g++ -Wall -Werror against clib, run against the simulator server) generates the same
tokens as the Python runtime, greedy and sampled with the same seed; its bad arguments are one
error line; the CLI streams tokens; a model without attention is refused."""
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
    # sampling without --seed: the drawn seed is printed, and repeats the run
    argv = ["generate", str(out), "--prompt-ids", "1,2,3", "--max-new-tokens", "6", "--temperature", "1.2"]
    r = CliRunner().invoke(cli, argv)
    seed = re.search(r"; seed (\d+)\]", r.stderr)
    assert r.exit_code == 0 and seed, r.output
    again = CliRunner().invoke(cli, argv + ["--seed", seed.group(1)])
    assert again.exit_code == 0 and again.stdout == r.stdout and "; seed" not in again.stderr


def test_a_model_without_attention_is_refused():
    with pytest.raises(CompileError, match="no dev.attention"):
        compile_llm("mlp", target="tiny", weights="int8", max_seq=16)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    with sim_server(tmp_path_factory.mktemp("srv")) as (uri, _):
        yield uri


def _run_generate(exe, server, art, prompt_file, new, *options, timeout=120):
    return subprocess.run([str(exe), *options, server, str(art), str(prompt_file), str(new)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_cpp_driver_generates_the_same_tokens(server, tmp_path, name):
    """Greedy and sampled: the generated driver (dlavm::generate) and the Python runtime's Generator give
    the same tokens for the same seed (the sampler of doc/serve.md in both)."""
    cm = compiled(name, "int8", MAX_CTX, target="tiny")
    art = cm.save(tmp_path / name)
    mf = re.sub(r"\W", "_", name)
    exe = build_driver(art, mf, main="generate")
    sampled = {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": 1234}
    for n, new, kw in ((7, 20, {}), (MAX_CTX - 3, 10, {}), (5, 16, sampled),
                       (4, 12, {"temperature": 1.7, "seed": 2**64 - 1})):
        prompt = np.array(prompt_of(n, seed=n), np.int64)
        prompt.tofile(tmp_path / "prompt.bin")
        options = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
        res = _run_generate(exe, server, art, tmp_path / "prompt.bin", new, *options)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.split()
        got = [int(t) for t in lines if t.isdigit()]
        want = list(load(art).generate(prompt, new, **kw))
        assert got == want, kw
        assert lines[-2:] == ["stop", "context" if n + new - 1 > MAX_CTX else "max_new_tokens"]
    # --eos: stops at the first of the ids given
    prompt_of_7 = np.array(prompt_of(7, seed=7), np.int64)
    prompt_of_7.tofile(tmp_path / "prompt.bin")
    greedy = list(load(art).generate(prompt_of_7, 20))
    res = _run_generate(exe, server, art, tmp_path / "prompt.bin", 20, "--eos", str(greedy[5]), "--eos", "511")
    assert res.stdout.split() == [str(t) for t in greedy[:greedy.index(greedy[5]) + 1]] + ["stop", "eos"]
    np.ones(MAX_CTX + 1, np.int64).tofile(tmp_path / "prompt.bin")
    res = _run_generate(exe, server, art, tmp_path / "prompt.bin", 3, timeout=60)
    assert res.returncode == 2 and res.stderr == (f"error: the prompt has {MAX_CTX + 1} tokens but the model's "
                                                  f"maximum context is {MAX_CTX}\n")


@pytest.fixture(scope="module")
def llama_generate(tmp_path_factory):
    art = compiled("tiny-llama", "int8", MAX_CTX, target="tiny").save(tmp_path_factory.mktemp("gen") / "tl")
    return art, build_driver(art, "tiny_llama", main="generate")


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "warm"], "--temperature must be a number, got 'warm'"),
    (["--temperature", "nan"], "temperature=nan: must be a finite number >= 0 (0: greedy)"),
    (["--temperature=-1"], "temperature=-1.0: must be a finite number >= 0 (0: greedy)"),
    (["--top-k", "513"], "top_k=513: must be an integer in [0, 512] (0: all tokens)"),
    (["--top-k", "1.5"], "--top-k must be an integer, got '1.5'"),
    (["--top-p", "0"], "top_p=0.0: must be a number in (0, 1]"),
    (["--seed", "-3"], "--seed must be an integer in [0, 2^64), got '-3'"),
    (["--seed", "18446744073709551616"], "--seed must be an integer in [0, 2^64), got '18446744073709551616'"),
    (["--eos", "512"], "eos_id=512: must be a token id in [0, 512)"),
    (["--eos"], "--eos needs a value"),
    (["--bogus", "1"], "unknown option --bogus"),
    (["MAX_NEW=x"], "expected 4 arguments, got 5"),
    ([], "max_new_tokens=0: must be an integer >= 1"),
])
def test_cpp_generate_refuses_bad_arguments(server, llama_generate, tmp_path, argv, message):
    """Every bad argument: one line `error: ...`, exit 2, no token printed (options may follow the
    positional arguments)."""
    art, exe = llama_generate
    np.array([1, 2, 3], np.int64).tofile(tmp_path / "prompt.bin")
    new = 0 if not argv else 3
    res = subprocess.run([str(exe), server, str(art), str(tmp_path / "prompt.bin"), str(new), *argv],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"error: {message}"), res.stderr


def test_cpp_generate_refuses_bad_prompt_files(server, llama_generate, tmp_path):
    art, exe = llama_generate
    bad = {"short.bin": (b"\x01" * 12, "the prompt file {} has 12 bytes, not a whole number of int64 token ids"),
           "outside.bin": (np.array([1, -1, 512, 5], np.int64).tobytes(),
                           "prompt token ids [-1, 512] are outside the model's vocabulary [0, 512)"),
           "huge.bin": (np.array([1, 2**40], np.int64).tobytes(),
                        f"prompt token id {2**40} is outside the model's vocabulary [0, 512)"),
           "empty.bin": (b"", "the prompt is empty: give at least one token")}
    for name, (data, message) in [*bad.items(), ("missing.bin", (None, "cannot open the prompt file {}"))]:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        res = _run_generate(exe, server, art, path, 3, timeout=60)
        assert (res.returncode, res.stdout, res.stderr) == (2, "", f"error: {message.format(path)}\n")


def test_cpp_generate_under_sanitizers(server, llama_generate, tmp_path):
    """The generated driver, <model>_llm.cc and <model>_generate.cc built against clib's ASan/UBSan flavour:
    a sampled run gives the release build's tokens, and refusals stay one line, with no sanitizer finding."""
    from tests.clib.clib_build import SANITIZER_EXIT_CODE, build_clib, compile_programs, sanitizer_env
    art, release = llama_generate
    d = art / "driver"
    exe = compile_programs({"gen": [d / "tiny_llama.cc", d / "tiny_llama_llm.cc", d / "tiny_llama_generate.cc"]},
                           tmp_path / "asan", "asan", build_clib("asan"), includes=(d,))["gen"]
    np.array(prompt_of(6, seed=6), np.int64).tofile(tmp_path / "prompt.bin")
    env = sanitizer_env()
    for argv, rc in ((["--temperature", "1.1", "--top-k", "50", "--top-p", "0.9", "--seed", "77"], 0),
                     (["--top-p", "2"], 2), (["--seed"], 2), (["--temperature", "1"], 0)):
        cmd = [server, str(art), str(tmp_path / "prompt.bin"), "8", *argv]
        res = subprocess.run([str(exe), *cmd], capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == rc != SANITIZER_EXIT_CODE, res.stderr
        if rc == 0 and "--seed" in argv:
            want = subprocess.run([str(release), *cmd], capture_output=True, text=True, timeout=120)
            assert res.stdout == want.stdout and res.stdout.split()[-2:] == ["stop", "max_new_tokens"]
        elif rc == 0:   # no --seed: one drawn and printed on stderr
            assert re.fullmatch(r"seed \d+\n", res.stderr) and len(res.stdout.split()) == 10
        else:
            assert res.stdout == "" and res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
