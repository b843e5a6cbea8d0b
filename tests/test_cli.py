"""The CLI is thin: these run the same library code users run."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dlavm.cli.main import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    return invoke


def test_every_command_has_help(run):
    out = run("--help")
    assert out.exit_code == 0
    for cmd in main.commands:
        res = run(cmd, "--help")
        assert res.exit_code == 0 and "Usage:" in res.output, cmd


def test_models_lists_recipes(run):
    out = run("models").output
    for name in ("tiny-llama", "tiny-gpt2", "tiny-vit", "mlp", "llama2-7b-shape"):
        assert name in out


def test_import_prints_ir(run):
    res = run("import", "mlp")
    assert res.exit_code == 0
    assert "fn @forward(%x: f32[1, seq, 64]) -> f32[1, seq, 32]" in res.output
    assert "linear(%x, @fc1.weight, @fc1.bias)" in res.output


def test_import_file_factory(run, tmp_path):
    f = tmp_path / "user_model.py"
    f.write_text(
        "import torch\n"
        "def build():\n"
        "    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())\n"
        "    b = torch.export.Dim('tokens', min=1, max=32)\n"
        "    return m, (torch.randn(4, 8),), {'input': {0: b}}\n")
    res = run("import", f"{f}:build", "--summary")
    assert res.exit_code == 0, res.output
    assert "dynamic: tokens in [1, 32]" in res.output
    assert "gelu x1" in res.output


def test_check_reports_agreement(run):
    res = run("check", "mlp", "--dims", "seq=3")
    assert res.exit_code == 0 and "matches torch" in res.output


def test_unknown_model_is_a_clean_error(run):
    res = CliRunner().invoke(main, ["import", "no-such-model"])
    assert res.exit_code == 2
    *progress, last = res.stderr.splitlines()
    assert last.startswith("error: unknown model 'no-such-model'")
    assert all(line.startswith("[import ") for line in progress)  # whole progress lines only, no traceback


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "dlavm.cli.main", "models"], capture_output=True,
                         text=True, check=True)
    assert "tiny-llama" in out.stdout
