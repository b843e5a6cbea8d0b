"""Fixtures of the CLI tests: the malformed inputs and two small artifacts, made once per session."""
from __future__ import annotations

import pytest

from .bad_inputs import make_artifacts, make_workspace

#: Outcome counts of the bad-input table, filled by test_bad_inputs.py and printed after the run.
TALLY: dict = {}


@pytest.fixture(scope="session")
def bad_input_paths(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    paths = make_artifacts(root)
    paths["ws"] = make_workspace(root / "ws")
    return paths


def pytest_terminal_summary(terminalreporter):
    if TALLY.get("cases"):
        terminalreporter.write_line(
            f"CLI bad inputs: {TALLY['cases']} cases, {TALLY['traceback']} tracebacks, {TALLY['exit0']} wrong "
            f"exit-0s, {TALLY['internal']} internal errors, {TALLY['broken']} breaking the contract")
