"""The CLI's manners (doc/cli.md): progress from the first second, plain lines without a terminal and ended
before an error; `compile` never writes over a non-empty folder silently and `--force` removes only what
dlavm wrote; `targets --file F --name N`; the torch-free commands answer in a process where torch cannot be
imported."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dlavm.cli.errors import EXIT_BAD_INPUT
from dlavm.cli.main import main
from dlavm.cli.output_dir import OutputDirError, clear_output, plan_output
from dlavm.cli.progress import Progress

from .outcome import ROOT


def _error_lines(stderr: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------- progress

def test_compile_reports_every_stage_as_plain_lines_without_a_terminal(tmp_path):
    """Import stages (torch.export included), graph passes, weights and streams, one line each, no escapes."""
    res = CliRunner().invoke(main, ["compile", "mlp", "-t", "tiny", "-o", str(tmp_path / "a"), "--no-driver"])
    assert res.exit_code == 0, res.stderr
    err = res.stderr
    assert "\r" not in err and "\033" not in err
    lines = err.splitlines()
    assert lines[0] == "[import 1/4] build model"       # before torch is even imported
    assert "[import 2/4] torch.export" in lines and "[import 4/4] convert" in lines
    for stage in ("[import pass ", "[pass 1/", "[pack 1] ", "[stream 1] "):
        assert any(ln.startswith(stage) for ln in lines), (stage, lines)
    assert all(ln.startswith("[") for ln in lines), lines


def test_progress_ends_before_an_error(tmp_path):
    """A failure inside torch.export: the progress so far, then the error on a line of its own."""
    model = tmp_path / "branchy.py"
    model.write_text("import torch\n\nclass Branchy(torch.nn.Module):\n    def forward(self, x):\n"
                     "        return x * 2 if x.sum() > 0 else x\n\n"
                     "def build(**kw):\n    seq = torch.export.Dim('seq', min=2, max=32)\n"
                     "    return Branchy(), (torch.randn(4, 8),), {'x': {0: seq}}\n")
    res = CliRunner().invoke(main, ["compile", f"{model}:build", "-t", "tiny", "-o", str(tmp_path / "a")])
    assert res.exit_code == EXIT_BAD_INPUT
    lines = res.stderr.splitlines()
    assert lines[0] == "[import 1/4] build model" and "[import 2/4] torch.export" in lines
    assert lines[-1].startswith("error: ") and "torch.export" in lines[-1]   # torch's own prints may come between
    assert len(_error_lines(res.stderr)) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "a").exists()


def test_plain_lines_throttle_only_stages_without_a_total_keeping_their_first_and_last_step():
    out = io.StringIO()
    with Progress(out, bars=False, min_interval=3600) as p:
        for i in range(1, 4):
            p("pass", i, 3, f"p{i}")
        for i in range(1, 100):
            p("pack", i, None, f"w{i}")
        p("stream", 1, None, "forward.0")
    assert out.getvalue().splitlines() == ["[pass 1/3] p1", "[pass 2/3] p2", "[pass 3/3] p3", "[pack 1] w1",
                                           "[pack 99] w99", "[stream 1] forward.0"]
    every = io.StringIO()
    with Progress(every, bars=False, min_interval=0) as p:
        for i in range(1, 4):
            p("pack", i, None, f"w{i}")
    assert every.getvalue().splitlines() == ["[pack 1] w1", "[pack 2] w2", "[pack 3] w3"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_tqdm_draws_the_bars_and_close_ends_the_line():
    pytest.importorskip("tqdm")
    term = _Terminal()
    p = Progress(term)
    assert p._tqdm is not None
    p("pass", 1, 3, "canonicalize")
    p("pass", 3, 3, "lower")
    p.close()
    text = term.getvalue()
    assert "pass" in text and "3/3" in text and "lower" in text
    assert text.endswith("\n")   # an error printed now starts on a line of its own


def test_without_tqdm_a_terminal_gets_plain_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)   # as on a host without the dev extra: import fails
    term = _Terminal()
    with Progress(term) as p:
        p("stream", 1, None, "forward.0")
    assert term.getvalue() == "[stream 1] forward.0\n"


# ---------------------------------------------------------------- compile -o into a non-empty folder

@pytest.fixture
def old_artifact(bad_input_paths, tmp_path):
    """A copy of the LLM artifact of the bad-input fixtures: an artifact of another model to write over."""
    d = tmp_path / "out"
    shutil.copytree(bad_input_paths["llm"], d)
    return d


def test_a_non_empty_folder_is_refused_without_force_before_compiling(old_artifact):
    before = sorted(p.name for p in old_artifact.rglob("*"))
    res = CliRunner().invoke(main, ["compile", "mlp", "-t", "tiny", "-o", str(old_artifact)])
    assert res.exit_code == EXIT_BAD_INPUT
    assert res.stderr.splitlines() == [res.stderr.strip()]          # refused before any progress
    assert str(old_artifact) in res.stderr and "--force" in res.stderr and "artifact" in res.stderr
    assert sorted(p.name for p in old_artifact.rglob("*")) == before


def test_force_replaces_the_artifact_and_leaves_no_stale_file(old_artifact):
    old = set(json.loads((old_artifact / "manifest.json").read_text())["files"])
    res = CliRunner().invoke(main, ["compile", "mlp", "-t", "tiny", "-o", str(old_artifact), "--force",
                                    "--no-driver"])
    assert res.exit_code == 0, res.stderr
    new = json.loads((old_artifact / "manifest.json").read_text())
    on_disk = {p.relative_to(old_artifact).as_posix() for p in old_artifact.rglob("*") if p.is_file()}
    assert on_disk == set(new["files"]) | {"manifest.json", "manifest.sha256"}
    assert old - set(new["files"]), "the two models should not share every file name"


def test_force_never_deletes_what_dlavm_did_not_write(old_artifact, tmp_path):
    (old_artifact / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="notes.txt"):
        plan_output(old_artifact, force=True)
    assert (old_artifact / "notes.txt").read_text() == "mine" and (old_artifact / "manifest.json").is_file()
    user = tmp_path / "photos"
    (user / "2024").mkdir(parents=True)
    (user / "2024" / "a.jpg").write_bytes(b"x")
    res = CliRunner().invoke(main, ["compile", "mlp", "-t", "tiny", "-o", str(user), "--force"])
    assert res.exit_code == EXIT_BAD_INPUT and "no dlavm artifact" in res.stderr and str(user) in res.stderr
    assert (user / "2024" / "a.jpg").read_bytes() == b"x"


def test_force_does_not_follow_links_out_of_the_folder(old_artifact, tmp_path):
    """A listed file that is a link to a file elsewhere: the link goes, the file it points to stays."""
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep")
    listed = next(iter(json.loads((old_artifact / "manifest.json").read_text())["files"]))
    (old_artifact / listed).unlink()
    (old_artifact / listed).symlink_to(outside)
    assert clear_output(old_artifact, force=True) > 0
    assert outside.read_bytes() == b"keep"
    assert not any(old_artifact.iterdir())


def test_an_empty_or_new_folder_needs_no_force(tmp_path):
    (tmp_path / "empty").mkdir()
    assert plan_output(tmp_path / "empty") == [] and plan_output(tmp_path / "new") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="not a folder"):
        plan_output(tmp_path / "file", force=True)


# ---------------------------------------------------------------- targets --file F --name N

def test_targets_finds_a_target_defined_in_a_file_by_its_name(tmp_path):
    f = tmp_path / "boards.json"
    f.write_text(json.dumps({"base": "vcu128", "name": "myboard", "hbm_channels": 64}))
    res = CliRunner().invoke(main, ["targets", "--file", str(f), "--name", "myboard"])
    assert res.exit_code == 0, res.stderr
    rows = res.output.splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith("myboard") and "409.6" in rows[0]
    res = CliRunner().invoke(main, ["targets", "--file", str(f), "--name", "myboard", "--name", "tiny"])
    assert [r.split()[0] for r in res.output.splitlines()[2:]] == ["myboard", "tiny"]


def test_targets_names_what_the_files_define_when_a_name_is_unknown(tmp_path):
    f = tmp_path / "boards.json"
    f.write_text(json.dumps({"base": "tiny", "name": "myboard"}))
    res = CliRunner().invoke(main, ["targets", "--file", str(f), "--name", "nosuch"])
    assert res.exit_code == EXIT_BAD_INPUT
    (line,) = _error_lines(res.stderr)
    assert "'nosuch'" in line and "myboard" in line and "vcu128" in line


# ---------------------------------------------------------------- without torch

#: Blocks ``import torch`` (and what is built on it) with a sys.meta_path finder, then runs the command.
NO_TORCH_MAIN = """
import runpy, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "safetensors"):
            raise ModuleNotFoundError(f"No module named {name!r} (this host has no torch)", name=name)
sys.meta_path.insert(0, NoTorch())
sys.argv = ["dlavm"] + sys.argv[1:]
try:
    runpy.run_module("dlavm.cli.main", run_name="__main__")
finally:
    assert "torch" not in sys.modules
"""

#: (argv, exit code, text the output must hold) of every torch-free command path, error paths included.
TORCH_FREE_PATHS = (
    (("run", "{mlp}", "--seq", "2"), 0, "cycles"),
    (("disasm", "{mlp}"), 0, "# stream"),
    (("profile", "{mlp}", "--seq", "2"), 0, "roofline"),
    (("diff", "{mlp}", "{mlp}"), 0, ""),
    (("generate", "{llm}", "--prompt-ids", "1,2", "--max-new-tokens", "2"), 0, "tokens"),
    (("generate", "{llm}", "--prompt-ids", "1,2", "--temperature", "-1"), 2, "error: temperature=-1"),
    (("run", "{mlp}", "--device", "http://127.0.0.1:1"), 2, "error: --device 'http://127.0.0.1:1'"),
    (("compile", "mlp", "-o", "{llm}"), 2, "is not empty"),
    (("targets", "--name", "nosuch"), 2, "error: unknown target 'nosuch'"),
    (("targets", "--name", "vcu128", "--part", "xcvu37p"), 0, "% of xcvu37p"),
    (("dse", "report", "{ws}/garbage_store"), 2, "not a sweep store"),
    (("dse", "tiny-llama", "--vary", "tin=1.5", "-o", "{ws}/dse_out"), 2, "tin"),
)


@pytest.mark.parametrize("argv,code,text", TORCH_FREE_PATHS, ids=lambda v: " ".join(v) if isinstance(v, tuple)
                         else None)
def test_torch_free_paths_answer_where_torch_cannot_be_imported(argv, code, text, bad_input_paths):
    args = [a.format(**{k: str(v) for k, v in bad_input_paths.items()}) for a in argv]
    res = subprocess.run([sys.executable, "-c", NO_TORCH_MAIN, *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == code, res.stderr
    assert text in res.stdout + res.stderr and "Traceback" not in res.stderr
