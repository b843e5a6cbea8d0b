"""`dlavm targets` lists built-in and user targets with derived figures."""
from __future__ import annotations

import json

from click.testing import CliRunner

from dlavm.cli.targets import targets


def test_lists_builtins_with_derived_figures():
    res = CliRunner().invoke(targets, [])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "peak TMAC/s" in lines[0] and "HBM GB/s" in lines[0]
    row = next(line for line in lines if line.startswith("vcu128"))
    assert "32x256" in row and "204.8" in row and "0.819" in row and "4096" in row


def test_user_file_is_added(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"base": "vcu128", "name": "mine", "hbm_channels": 64}))
    res = CliRunner().invoke(targets, ["--file", str(p)])
    assert res.exit_code == 0, res.output
    assert any(line.startswith("mine") and "409.6" in line for line in res.output.splitlines())


def test_bad_file_is_a_clean_error(tmp_path):
    from dlavm.cli.main import main
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"base": "vcu128", "name": "bad", "tin": -1}))
    res = CliRunner().invoke(main, ["targets", "--file", str(p)])
    assert res.exit_code == 2 and res.stderr.startswith(f"error: target file '{p}'")
    assert "field tin = -1 must be in [1, " in res.stderr
