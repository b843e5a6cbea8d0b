"""``dlavm check`` compares something for every kind of user model, and ``dlavm run --input / --save /
--check`` round-trips (doc/models.md, doc/cli.md "Comparisons with torch"). The error paths are rows of
tests/cli/bad_inputs.py."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm.cli.errors import EXIT_NEGATIVE
from dlavm.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "models"

BINDING = re.compile(r"^(?P<where>.+): max abs err (?P<abs>\S+), max rel err (?P<rel>\S+) over (?P<n>\d+) values "
                     r"-> matches torch$")
SUMMARY = re.compile(r"^check: (?P<k>\d+) binding\(s\) compared, (?P<n>\d+) values, max abs err (?P<abs>\S+): "
                     r"all match torch$")
DEVICE = re.compile(r"^check: (?P<where>.+): error vs quantised torch (?P<q>\S+) \((?P<verdict>ok|TOO LARGE)\), "
                    r"vs fp32 torch (?P<f>\S+) over (?P<n>\d+) values$")


def _invoke(*argv):
    return CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False)


def _check_lines(res) -> tuple[list, re.Match]:
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    bindings = [BINDING.match(ln) for ln in lines[:-1]]
    assert all(bindings), lines
    summary = SUMMARY.match(lines[-1])
    assert summary, lines[-1]
    return bindings, summary


#: example model -> the bindings its check runs at (a model without dims: once, at its example inputs)
EXPECTED = {"cnn": ["example inputs"], "classifier": ["example inputs"],
            "encoder": ["seq=2", "seq=34", "seq=64"], "nanogpt": ["seq=2", "seq=33", "seq=63"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_model_checks_and_compares_values(name):
    bindings, summary = _check_lines(_invoke("check", f"{EXAMPLES / name}.py:build"))
    assert [b["where"] for b in bindings] == EXPECTED[name]
    assert int(summary["k"]) == len(EXPECTED[name])
    assert int(summary["n"]) == sum(int(b["n"]) for b in bindings) > 0
    assert all(int(b["n"]) > 0 for b in bindings)
    assert max(float(b["abs"]) for b in bindings) == float(summary["abs"]) < 1e-4


def test_dims_of_a_tuple_factory():
    """The issue's crash: ``--dims seq=7`` on a factory returning (module, inputs, dynamic_shapes)."""
    bindings, summary = _check_lines(_invoke("check", f"{EXAMPLES / 'encoder.py'}:build", "--dims", "seq=7"))
    assert [b["where"] for b in bindings] == ["seq=7"]
    assert int(bindings[0]["n"]) == 7 * 64 == int(summary["n"])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BertModel checkpoint (an encoder: no LM head; an int64 token_type_ids buffer)."""
    import torch
    from transformers import BertConfig, BertModel
    out = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32)).eval().save_pretrained(out)
    return out


def test_an_encoder_checkpoint_checks(bert_dir):
    bindings, summary = _check_lines(_invoke("check", f"hf:{bert_dir}", "--max-seq", "16"))
    assert [b["where"] for b in bindings] == ["seq=1", "seq=9", "seq=16"]
    assert int(summary["n"]) == (1 + 9 + 16) * 32


def test_an_encoder_artifact_checks_on_the_device(bert_dir, tmp_path):
    """Compiled and run with --check: the reference keeps the integer token_type_ids buffer an integer; the
    checkpoint is the one the artifact records."""
    res = _invoke("compile", f"hf:{bert_dir}", "-t", "tiny", "--max-seq", "16", "-o", tmp_path / "art", "--no-driver")
    assert res.exit_code == 0, res.output
    # no --model: the artifact records the checkpoint it was compiled from (loading it runs no code)
    m = DEVICE.match(_invoke("run", tmp_path / "art", "--seq", "9", "--check").stdout.strip().splitlines()[-1])
    assert m and m["where"] == "seq=9" and m["verdict"] == "ok" and int(m["n"]) == 9 * 32


# --- run --input / --save / --check ---------------------------------------------------------------------

MAX_SEQ = 16


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory):
    """The ``mlp`` recipe compiled for the tiny target with seq <= 16 (seconds)."""
    import dlavm
    out = tmp_path_factory.mktemp("mlp") / "art"
    dlavm.compile("mlp", target="tiny", max_seq=MAX_SEQ).save(out, driver=False)
    return out


def _x(seq: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, seq, 64)).astype(np.float32)


def _device_outputs(artifact, x):
    import dlavm
    return dlavm.load(artifact).run(x)


def _device_check(res, where: str) -> re.Match:
    assert res.exit_code == 0, res.output
    m = DEVICE.match(res.stdout.strip().splitlines()[-1])
    assert m, res.stdout
    assert m["where"] == where and m["verdict"] == "ok" and int(m["n"]) > 0
    assert 0 < float(m["q"]) <= 5e-3 < float(m["f"]) < 0.5   # int4 weights: close to quantised torch, not to fp32
    return m


def test_run_input_npz_save_npz_check(mlp_artifact, tmp_path):
    x = _x(7)
    np.savez(tmp_path / "in.npz", x=x)
    res = _invoke("run", mlp_artifact, "--input", tmp_path / "in.npz", "--save", tmp_path / "out.npz", "--check")
    m = _device_check(res, "seq=7")
    assert int(m["n"]) == 7 * 32
    with np.load(tmp_path / "out.npz") as z:
        assert z.files == ["output_0"]
        np.testing.assert_array_equal(z["output_0"], _device_outputs(mlp_artifact, x)[0])
    assert "output 0: shape [1, 7, 32] float32" in res.stdout


def test_run_input_npy_and_safetensors(mlp_artifact, tmp_path):
    x = _x(MAX_SEQ, seed=4)
    np.save(tmp_path / "in.npy", x)
    res = _invoke("run", mlp_artifact, "--input", tmp_path / "in.npy", "--save", tmp_path / "out.npy")
    assert res.exit_code == 0, res.output
    want = _device_outputs(mlp_artifact, x)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    safetensors_numpy.save_file({"x": x}, str(tmp_path / "in.safetensors"))
    res = _invoke("run", mlp_artifact, "--input", tmp_path / "in.safetensors", "--save", tmp_path / "o2.npz")
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "o2.npz") as z:
        np.testing.assert_array_equal(z["output_0"], want)


def test_run_check_with_random_inputs(mlp_artifact):
    _device_check(_invoke("run", mlp_artifact, "--seq", "1", "--check"), "seq=1")


def test_a_recipe_artifact_records_its_source(mlp_artifact):
    import dlavm
    from dlavm.artifact import ModelSource
    assert dlavm.load(mlp_artifact).manifest.source == ModelSource("recipe", "mlp", MAX_SEQ)


def test_a_factory_artifact_runs_the_factory_only_when_named(tmp_path, monkeypatch):
    """A recorded ``file.py:factory`` is code of the artifact's author: --check refuses to run it on the
    artifact's word, quoting it; given as --model it is run. A relative path is recorded as given."""
    import dlavm
    monkeypatch.chdir(EXAMPLES)
    dlavm.compile("classifier.py:build", target="tiny").save(tmp_path / "art", driver=False)
    m = dlavm.load(tmp_path / "art").manifest
    assert (m.source.kind, m.source.spec, m.source.max_seq) == ("factory", "classifier.py:build", None)
    import json
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["source"] == {
        "kind": "factory", "spec": "classifier.py:build", "max_seq": None}   # not resolved to this machine's path
    res = CliRunner().invoke(main, ["run", str(tmp_path / "art"), "--check"])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert '"classifier.py:build"' in errors[0] and "--model classifier.py:build" in errors[0], errors[0]
    m = DEVICE.match(_invoke("run", tmp_path / "art", "--check", "--model", "classifier.py:build")
                     .stdout.strip().splitlines()[-1])
    assert m and m["verdict"] == "ok" and int(m["n"]) > 0


def test_run_check_of_another_model_disagrees(mlp_artifact, tmp_path):
    """The check is not vacuous: a model with the same signature but other weights is a disagreement (exit 1)."""
    path = tmp_path / "other.py"
    path.write_text("import torch\nfrom torch.export import Dim\nfrom dlavm.models.builtin import MLP\n\n"
                    "def build(max_seq=16):\n    torch.manual_seed(1)\n"
                    "    return MLP().eval(), (torch.randn(1, 8, 64),), ({1: Dim('seq', min=1, max=max_seq)},)\n")
    res = CliRunner().invoke(main, ["run", str(mlp_artifact), "--seq", "4", "--check", "--model", f"{path}:build"])
    assert res.exit_code == EXIT_NEGATIVE, res.output
    m = DEVICE.match(res.stdout.strip().splitlines()[-1])
    assert m and m["verdict"] == "TOO LARGE" and float(m["q"]) > 0.1


def test_seq_past_the_bound_is_refused_not_clamped(mlp_artifact):
    res = CliRunner().invoke(main, ["run", str(mlp_artifact), "--seq", "1000"])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: seq=1000 is outside the bounds the model was compiled for: "
                                  f"seq in [1, {MAX_SEQ}] (seq sets every dynamic dim)")


def test_script_model_factory_compares(tmp_path):
    """``script/main.py --model file.py:factory`` reports its comparisons, never "matches" after none."""
    import contextlib
    import io

    from .outcome import _script_main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = _script_main()(["--model", f"{EXAMPLES / 'classifier.py'}:build", "--target", "tiny", "--generate", "0"])
    text = out.getvalue()
    assert rc == 0, text
    assert "RESULT: graph IR matches torch at 1 binding(s)" in text
    assert "RESULT: simulator matches torch at 1 binding(s)" in text
    m = re.search(r"example inputs: error vs quantised torch (\S+) \(ok\), vs fp32 torch (\S+) over (\d+) values", text)
    assert m and float(m[1]) <= 5e-3 and int(m[3]) == 4 * 10
