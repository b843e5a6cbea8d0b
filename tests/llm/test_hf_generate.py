"""A Hugging Face checkpoint as a user brings it (``hf:DIR`` with its tokenizer), compiled for generation
and driven by ``dlavm generate``: the artifact is named after the folder and carries the tokenizer (BOS
added as the config says), its host embedding table is stored at the weight precision, the command prints
the simulated figures, warns about sampling flags at temperature 0, refuses bad input in one line, and
``--verify`` compares the device's logits with torch at every step. The C++ reader and driver accept the
artifact (bundled tokenizer, int4 table) and generate the same tokens.

One checkpoint (tests/llm/hf_fixture.py: the tiny Llama of examples/models/hf_tiny.py, a BPE trained
here), compiled once for the 'tiny' target with int4 weights and a context of 32.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm.cli.main import main as cli
from dlavm.compiler import load
from dlavm.runtime.generate import Generator, format_performance
from tests.llm.hf_fixture import CHAT_TEMPLATE, train_tokenizer, write_checkpoint

MAX_CTX = 32
PROMPT = "the compiler maps"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def art(ckpt, tmp_path_factory):
    from dlavm.llm import compile_llm
    cm = compile_llm(f"hf:{ckpt}", target="tiny", weights="int4", max_seq=MAX_CTX)
    return cm.save(tmp_path_factory.mktemp("art") / "llama")


def _run(*argv):
    res = CliRunner().invoke(cli, [str(a) for a in argv], catch_exceptions=True)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res


def _one_error_line(res, *fragments):
    assert res.exit_code == 2, (res.exit_code, res.output)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for f in fragments:
        assert f in errors[0], errors[0]


def test_named_after_the_folder_with_the_tokenizer_bundled(ckpt, art):
    cm = load(art)
    m = cm.manifest
    assert m.model == "llama"
    data = json.loads((art / "manifest.json").read_text())
    assert data.pop("source")["spec"] == f"hf:{ckpt}"                # the MODEL as given (here an absolute path)
    assert str(ckpt) not in json.dumps(data)                         # and no other path of the user's disk
    t = m.tokenizer
    assert (t.bos_id, t.eos_ids, t.add_bos) == (1, (2,), True)
    assert (art / t.file).read_bytes() == (ckpt / "tokenizer.json").read_bytes()
    assert (art / t.chat_template).read_text() == CHAT_TEMPLATE
    assert {t.file, t.chat_template} <= set(m.files)                  # checked by sha256 like every file


def test_host_embedding_table_is_stored_at_the_weight_precision(ckpt, art):
    from safetensors.numpy import load_file

    from dlavm.passes.quantize import fake_quant
    cm = load(art)
    (c,) = cm.manifest.host_consts
    assert (c.dtype, c.quant.format, c.quant.group) == ("float32", "int4", cm.target.int4_group)
    rows, cols = c.shape
    assert (art / c.file).stat().st_size == rows * cols // 2          # was rows * cols * 4 (fp32)
    table = load_file(str(ckpt / "model.safetensors"))["model.embed_tokens.weight"]
    got = cm.runtime().host_consts[c.name]
    assert got.dtype == np.float32
    assert np.array_equal(got, fake_quant(table, "int4", c.quant.group))


@pytest.mark.parametrize("fmt,group", [("int8", None), ("int4", 4), ("int4", 128)])
def test_stored_tables_dequantise_to_the_device_formats(fmt, group):
    from dlavm.passes.quantize import fake_quant
    from dlavm.runtime.host_quant import dequantise, quantise
    w = np.random.default_rng(0).standard_normal((5, 13)).astype(np.float32)   # odd row length
    data, scales, g = quantise(w, fmt, group)
    assert len(data) == (5 * 13 if fmt == "int8" else 5 * 7)
    assert np.array_equal(dequantise(data, scales, fmt, g, w.shape), fake_quant(w, fmt, g))


def test_generate_needs_no_tokenizer_and_adds_bos(art):
    tok = train_tokenizer()
    ids = tok.encode(PROMPT, add_special_tokens=False).ids
    cm = load(art)
    for argv, prompt in (((), [1, *ids]), (("--no-bos",), ids)):
        want = list(cm.generate(prompt, 6))
        res = _run("generate", art, "--prompt", PROMPT, "--max-new-tokens", 6, *argv)
        assert res.exit_code == 0, res.output
        assert res.stdout == PROMPT + tok.decode(want, skip_special_tokens=True) + "\n"


def test_chat_template_wraps_the_prompt(art):
    tok = train_tokenizer()
    text = "<s>[user] " + PROMPT + " [assistant]"                        # CHAT_TEMPLATE rendered
    want = list(load(art).generate(tok.encode(text, add_special_tokens=False).ids, 4))
    res = _run("generate", art, "--prompt", PROMPT, "--chat", "--max-new-tokens", 4)
    assert res.exit_code == 0, res.output
    assert res.stdout == PROMPT + tok.decode(want, skip_special_tokens=True) + "\n"


def test_simulated_figures_are_the_device_cycles(art):
    res = _run("generate", art, "--prompt-ids", "1,5,9", "--max-new-tokens", 5)
    assert res.exit_code == 0, res.output
    cm = load(art)
    gen = Generator(cm.runtime())
    list(gen.generate([1, 5, 9], 5))
    p = gen.performance()
    fig = cm.target.figures
    assert p["prefill_ms"] == pytest.approx(fig.cycles_to_us(gen.steps[0]["cycles"]) / 1e3)
    assert p["decode_tokens_per_s"] == pytest.approx(4 / (fig.cycles_to_us(sum(s["cycles"] for s in gen.steps[1:]))
                                                          / 1e6))
    assert 0 < p["prefill_roofline"] <= 1 and 0 < p["decode_roofline"] <= 1
    assert f"[{format_performance(p)}]" in res.stderr.splitlines()
    assert re.search(r"simulated at 200 MHz: prefill 3 tokens [0-9.]+ ms \([0-9.]+% of port peak, [0-9.]+% of "
                     r"device peak\), decode [0-9,.]+ tokens/s \([0-9.]+% of port peak, [0-9.]+% of device peak, "
                     r"4 tokens\); peaks: port [0-9.]+ GB/s, device [0-9.]+ GB/s", res.stderr), res.stderr


def test_sampling_flags_at_temperature_zero_warn(art):
    res = _run("generate", art, "--prompt-ids", "1,5", "--max-new-tokens", 2, "--top-k", 5, "--seed", 1)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: --top-k, --seed have no effect at --temperature 0 (greedy); give "
                        "--temperature > 0 to sample"]
    for argv in ((), ("--temperature", 0.7, "--top-k", 5, "--seed", 1)):
        res = _run("generate", art, "--prompt-ids", "1,5", "--max-new-tokens", 2, *argv)
        assert res.exit_code == 0 and "warning" not in res.stderr, res.output


def test_bad_input_is_one_line(art, tmp_path):
    _one_error_line(_run("generate", art, "--prompt", ""), "the prompt is empty")
    _one_error_line(_run("generate", art, "--prompt-ids", " "), "the prompt is empty")
    _one_error_line(_run("generate", art, "--prompt-ids", "1", "--model", "tiny-llama"), "--model", "--verify")
    _one_error_line(_run("generate", art, "--prompt-ids", "1", "--chat"), "--chat applies to --prompt")
    _one_error_line(_run("generate", art, "--prompt-ids", "1", "--no-bos"), "--bos/--no-bos applies to --prompt")
    _one_error_line(_run("generate", art, "--prompt-ids", "1", "--verify", "--model", "tiny-llama"),
                    "vocabulary of 512 tokens, the artifact's has 256")
    bare = tmp_path / "bare"                         # the same artifact without its tokenizer
    shutil.copytree(art, bare)
    m = json.loads((bare / "manifest.json").read_text())
    for rel in (m["tokenizer"]["file"], m["tokenizer"]["chat_template"]):
        del m["files"][rel]
    m["tokenizer"] = None
    m["source"] = None                               # and without the record of its checkpoint
    from dlavm.artifact import manifest_sum_text
    text = json.dumps(m, indent=1)
    (bare / "manifest.json").write_text(text)
    (bare / "manifest.sha256").write_text(manifest_sum_text(text.encode()))
    _one_error_line(_run("generate", bare, "--prompt", PROMPT), "bundles none", "--tokenizer")
    _one_error_line(_run("generate", bare, "--prompt-ids", "1", "--verify"), "--verify needs --model", "'llama'")
    _one_error_line(_run("generate", bare, "--prompt", PROMPT, "--demo-tokenizer"), "--demo-tokenizer",
                    "vocabulary")
    train_tokenizer().save(str(tmp_path / "tokenizer.json"))
    _one_error_line(_run("generate", bare, "--prompt", PROMPT, "--tokenizer", tmp_path / "tokenizer.json", "--chat"),
                    "no chat template")


def test_the_artifact_records_the_checkpoint(ckpt, art):
    from dlavm.artifact import ModelSource
    assert load(art).manifest.source == ModelSource("hf", f"hf:{ckpt}", MAX_CTX)


def test_verify_reports_every_step(art):
    """No --model: the reference is the checkpoint the artifact records."""
    res = _run("generate", art, "--prompt", PROMPT, "--max-new-tokens", 6, "--verify")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    rows = [ln for ln in lines if re.match(r"\s+\d+\s", ln)]
    assert len(rows) == 6
    same = next(ln for ln in lines if ln.startswith("verify same quantised weights:"))
    fp32 = next(ln for ln in lines if ln.startswith("verify fp32 weights:"))
    err, scale = (float(x) for x in re.search(r"max \|logits error\| (\S+) at step \d+ \(logits scale (\S+)\)",
                                              same).groups())
    assert 0 < err <= 5e-3 * scale                  # fp16 arithmetic only: the weights are the device's
    err32 = float(re.search(r"max \|logits error\| (\S+)", fp32).group(1))
    assert err32 > err                               # fp32 weights: the int4 quantisation shows


def test_divergences_tell_a_near_tie_from_a_disagreement():
    from dlavm.llm.verify import compare
    torch_rows = np.array([[0.0, 1.0, 0.999], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]], np.float32)
    device = [np.array([0.0, 0.998, 1.0], np.float32),      # flips a near-tie (margin 1e-3 < error 2e-3)
              np.array([0.0, 0.45, 0.55], np.float32),      # flips a clear choice (margin 1 > error 0.55)
              np.array([2.0, 0.0, 0.0], np.float32)]
    c = compare(device, torch_rows, "same quantised weights")
    assert [s.diverges for s in c.steps] == [True, True, False]
    assert c.steps[0].near_tie and c.steps[0].margin == pytest.approx(1e-3, abs=1e-6)
    assert c.steps[0].max_abs_err == pytest.approx(2e-3, abs=1e-6)
    assert not c.steps[1].near_tie and [s.step for s in c.real_divergences] == [1]
    assert "step 0: device 2, torch 1, torch top-2 margin 0.001 vs error 0.002 (a near-tie" in c.summary()
    assert "step 1: device 2, torch 1, torch top-2 margin 1 vs error 0.55 (NOT a near-tie" in c.summary()
    assert "argmax equal at 1/3 steps" in c.summary()


def test_a_chat_template_runs_in_a_sandbox():
    from dlavm.tokenizer import TokenizerError
    from dlavm.tokenizer.bundled import render_chat
    assert render_chat(CHAT_TEMPLATE, [{"role": "user", "content": "hi"}], "<s>") == "<s>[user] hi [assistant]"
    with pytest.raises(TokenizerError, match="cannot be rendered"):
        render_chat("{{ ''.__class__.__mro__[1].__subclasses__() }}", [])


def test_tokenizer_bundle_follows_the_checkpoint_configs(tmp_path):
    from dlavm.models.hf_checkpoint import CheckpointError, tokenizer_bundle
    tok = train_tokenizer()
    tok.post_processor = __import__("tokenizers").processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ 1 }}"}]}))
    b = tokenizer_bundle(tmp_path)
    assert (b["bos_id"], b["eos_ids"], b["add_bos"], b["chat_template"]) == (1, [2, 0], True, "{{ 1 }}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    (tmp_path / "chat_template.jinja").write_text("T")
    b = tokenizer_bundle(tmp_path)
    assert (b["add_bos"], b["chat_template"]) == (False, "T")
    (tmp_path / "tokenizer_config.json").write_text("[1")
    with pytest.raises(CheckpointError, match="tokenizer_config.json is not valid JSON"):
        tokenizer_bundle(tmp_path)


def test_cpp_driver_opens_it_and_generates_the_same_tokens(art, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    from tests.driver_support import build_driver, sim_server
    exe = build_driver(art, "llama", main="generate")
    prompt = np.array([1, 5, 9, 20], np.int64)
    prompt.tofile(tmp_path / "prompt.bin")
    with sim_server(tmp_path) as (uri, _):
        res = subprocess.run([str(exe), uri, str(art), str(tmp_path / "prompt.bin"), "8"], capture_output=True,
                             text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert [int(t) for t in res.stdout.split() if t.isdigit()] == list(load(art).generate(prompt, 8))
