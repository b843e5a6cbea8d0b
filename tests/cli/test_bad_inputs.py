"""The CLI's contract (doc/cli.md): every bad command line of tests/cli/bad_inputs.py fails with one
``error:`` line naming the offending value, a non-zero exit that is not the internal-error code, and
no traceback; run through the real entry point in-process, a handful also as real processes on a
host without torch."""
from __future__ import annotations

import pytest

from dlavm.cli.errors import EXIT_BAD_INPUT, EXIT_INTERNAL

from .bad_inputs import BadInput, cases
from .conftest import TALLY
from .outcome import run_in_process, run_subprocess, write_no_torch_site

CASES = cases()


def _tally(problems: list) -> None:
    TALLY.setdefault("cases", 0)
    for key in ("traceback", "exit0", "internal", "broken"):
        TALLY.setdefault(key, 0)
    TALLY["cases"] += 1
    TALLY["traceback"] += "traceback" in problems
    TALLY["exit0"] += "exit 0" in problems
    TALLY["internal"] += "internal error" in problems
    TALLY["broken"] += bool(problems)


def test_the_table_covers_the_issue():
    """At least the issue's 32 reproductions, every command and the script, no duplicate row."""
    assert len(CASES) >= 32
    assert len({c.id for c in CASES}) == len(CASES)
    from dlavm.cli.main import main
    covered = {c.argv[0] for c in CASES if c.tool == "dlavm"}
    assert set(main.commands) - {"models"} <= covered, set(main.commands) - covered
    assert any(c.tool == "script" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line(case: BadInput, bad_input_paths):
    out = run_in_process(case, bad_input_paths)
    problems = out.problems(case)
    _tally(problems)
    assert not problems, f"{problems}: exit {out.exit_code}, stderr {out.stderr!r}\n{out.traceback}"
    assert out.exit_code == EXIT_BAD_INPUT


#: Rows run as real processes with ``import torch`` failing: their error paths need no torch.
NO_TORCH_ROWS = ("targets --file {ws}/tin_float.json", "run {mlp} --seq 0", "disasm {ws}/garbage_artifact",
                 "diff {mlp} {mlp} --context -1", "generate {llm} --prompt-ids 1,2 --temperature nan",
                 "import mlp --max-seq 0", "nosuchcommand", "import {ws}/raises.py:build")


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    return write_no_torch_site(tmp_path_factory.mktemp("no_torch"))


@pytest.mark.parametrize("argv", NO_TORCH_ROWS)
def test_error_paths_need_no_torch(argv, bad_input_paths, no_torch):
    case = next(c for c in CASES if " ".join(c.argv) == argv)
    out = run_subprocess(case, bad_input_paths, no_torch)
    assert not out.problems(case), (out.exit_code, out.stderr)


TORCH_FREE_COMMANDS = (("--help",), ("models",), ("ops",), ("targets",), ("disasm", "{mlp}"),
                       ("run", "{mlp}", "--seq", "3"), ("run", "{llm}", "--seq", "2"), ("profile", "{mlp}"),
                       ("diff", "{mlp}", "{mlp}"), ("generate", "{llm}", "--prompt-ids", "1,2", "--max-new-tokens", "2"))


@pytest.mark.parametrize("argv", TORCH_FREE_COMMANDS, ids=" ".join)
def test_torch_free_commands_work_without_torch(argv, bad_input_paths, no_torch):
    """What a deployment host runs succeeds where ``import torch`` fails (doc/cli.md, "Without torch")."""
    out = run_subprocess(BadInput(argv, ()), bad_input_paths, no_torch)
    assert out.exit_code == 0 and "error" not in out.stderr, (out.exit_code, out.stderr)


def test_a_torch_command_without_torch_says_so(bad_input_paths, no_torch):
    out = run_subprocess(BadInput(("import", "mlp"), ()), bad_input_paths, no_torch)
    assert out.exit_code == EXIT_BAD_INPUT
    assert out.stderr.strip().splitlines()[-1].startswith("error: this command needs the Python package 'torch'")


def test_a_bug_is_one_line_with_its_own_exit_code(monkeypatch):
    """An exception that is not a project error is reported as a bug (exit 70), never swallowed."""
    from click.testing import CliRunner

    import dlavm.cli.targets
    from dlavm.cli.main import main

    def broken():
        return 1 // 0
    monkeypatch.setattr(dlavm.cli.targets, "list_targets", broken)
    res = CliRunner().invoke(main, ["targets"])
    assert res.exit_code == EXIT_INTERNAL
    assert res.stderr.splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("error: internal error: ZeroDivisionError: integer division or modulo by zero")
    assert "please report it" in res.stderr
    monkeypatch.setenv("DLAVM_DEBUG", "1")
    res = CliRunner().invoke(main, ["targets"])
    assert res.exit_code == EXIT_INTERNAL and "Traceback (most recent call last)" in res.stderr
