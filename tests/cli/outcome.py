"""Run a bad-input row and judge it against the CLI's contract (doc/cli.md, "Contract")."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .bad_inputs import BadInput, expand

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "script" / "main.py"

#: ``sitecustomize.py`` that makes ``import torch`` (and the libraries built on it) fail, as on a
#: deployment host without torch.
NO_TORCH_SITE = '''import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "safetensors"):
            raise ModuleNotFoundError(f"No module named {name!r} (this host has no torch)", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
'''


@dataclass
class Outcome:
    """What one command line did: exit code, stderr, and the traceback of an escaped exception."""

    exit_code: int
    stderr: str
    traceback: str = ""

    def problems(self, case: BadInput) -> list:
        """Every way this outcome breaks the contract for ``case`` (empty: it keeps it)."""
        from dlavm.cli.errors import EXIT_INTERNAL
        out = []
        if self.traceback or "Traceback (most recent call last)" in self.stderr:
            out.append("traceback")
        if self.exit_code == 0:
            out.append("exit 0")
        elif self.exit_code == EXIT_INTERNAL:
            out.append("internal error")
        lines = [ln for ln in self.stderr.replace("\r", "\n").splitlines() if ln.startswith("error:")]
        if len(lines) != 1:
            out.append(f"{len(lines)} 'error:' lines")
        else:
            missing = [n for n in case.names if n not in lines[0]]
            if missing:
                out.append(f"message does not name {missing}")
        return out

    @property
    def message(self) -> str:
        lines = [ln for ln in self.stderr.replace("\r", "\n").splitlines() if ln.startswith("error:")]
        return lines[-1] if lines else (self.traceback.strip().splitlines() or [""])[-1]


def _script_main():
    spec = importlib.util.spec_from_file_location("dlavm_script_main", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_in_process(case: BadInput, paths: dict) -> Outcome:
    """``case`` through the real entry point in this process (click's CliRunner for ``dlavm``)."""
    argv = expand(case, paths)
    if case.tool == "script":
        err = io.StringIO()
        code, tb = 0, ""
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = _script_main()(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except Exception:  # noqa: BLE001 -- what the contract forbids, reported as such
                code, tb = 1, traceback.format_exc()
        return Outcome(code, err.getvalue(), tb)
    from click.testing import CliRunner

    from dlavm.cli.main import main
    res = CliRunner().invoke(main, argv, catch_exceptions=True)
    tb = ""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        tb = "".join(traceback.format_exception(res.exception))
    return Outcome(res.exit_code, res.stderr, tb)


def run_subprocess(case: BadInput, paths: dict, no_torch_dir: Path | None = None, timeout: float = 120) -> Outcome:
    """``case`` as a real process; with ``no_torch_dir`` (holding :data:`NO_TORCH_SITE` as
    ``sitecustomize.py``) ``import torch`` fails in it."""
    argv = expand(case, paths)
    cmd = [sys.executable, str(SCRIPT)] if case.tool == "script" else [sys.executable, "-m", "dlavm.cli.main"]
    env = dict(os.environ)
    if no_torch_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(no_torch_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return Outcome(res.returncode, res.stderr)


def write_no_torch_site(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(NO_TORCH_SITE)
    return folder
