"""Where ops run, in words: the host-fallback table (one row per root cause, with module paths and the
followers each root drags along), ``compile --ops-report`` (CSV / Markdown), ``compile --dump-ir`` and
``ops --device``."""
from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from dlavm.backend.ops_report import format_host_table, format_ops_report
from dlavm.cli.errors import EXIT_BAD_INPUT
from dlavm.cli.main import main
from dlavm.ir import Function, Module, Span, TensorType, Tuple, Var, call
from dlavm.ir.op import device_specs
from dlavm.passes import device_pipeline
from dlavm.passes.device_pipeline import FOLLOWER_REASON, NO_ROOT_REASON, host_op_table, host_ops

#: A user model: a linear, a reduction in a submodule (host), a reshape between two host ops (a
#: follower), an amax and an expand (host roots of their own), a second linear.
MODEL = '''
import torch
from torch import nn


class Pool(nn.Module):
    def forward(self, x):
        return x.sum(dim=1, keepdim=True)


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.pool = Pool()
        self.b = nn.Linear(16, 16)

    def forward(self, x):
        h = self.a(x.reshape(1, 4, 16))
        s = self.pool(h).reshape(1, 4, 4).amax(dim=-1)
        return self.b(s.reshape(1, 1, 4).expand(1, 4, 4).reshape(1, 1, 16))


def build():
    torch.manual_seed(0)
    return M().eval(), (torch.randn(1, 64),)
'''


def _graph() -> Module:
    """Host ops only: sum (root) -> reshape -> cast (followers); a reshape of another input alone."""
    x, y = Var("x", TensorType((4, 16), "float32")), Var("y", TensorType((64,), "float32"))
    pool = Span("m.py", 3, "x.sum(1)", module="pool", module_type="Pool")
    s = call("sum", x, axes=(1,), keepdim=True, span=pool)
    r = call("reshape", s, shape=(1, 4))
    c = call("cast", r, dtype="float16")
    lone = call("reshape", y, shape=(16, 4), span=Span("m.py", 9, "y.view(16, 4)", module="", module_type="M"))
    mod = Module()
    mod.add(Function("forward", [x, y], Tuple([c, lone])))
    return mod


def test_followers_name_their_root_and_are_counted_under_it():
    ops = host_ops(_graph())
    by_op = {(h["op"], h["node"]): h for h in ops}
    root = next(h for h in ops if h["op"] == "sum")
    assert root["root"] is None and root["drags"] == 2 and root["module"] == "pool"
    followers = [h for h in ops if h["root"] is not None]
    assert sorted(h["op"] for h in followers) == ["cast", "reshape"]
    for h in followers:
        assert ops[h["root"]] is root
        assert h["reason"].startswith(FOLLOWER_REASON) and "dragged along by sum (host op #0, in pool (Pool))" \
            in h["reason"]
        assert h["module"] == "pool"  # made without a span: the nearest node's module
    lone = by_op[("reshape", "m.py:9 | y.view(16, 4)")]
    assert lone["root"] is None and lone["reason"] == NO_ROOT_REASON and lone["drags"] == 0

    rows = host_op_table(ops)
    assert [(r["module"], r["ops"], r["nodes"], r["drags"]) for r in rows] == [
        ("pool (Pool)", ["sum"], 1, 2), ("(top) M", ["reshape"], 1, 0)]
    lines = format_host_table(ops)
    assert lines[0].startswith("host-fallback ops: 4 node(s): 2 root op(s) in 2 row(s), 2 dragged along")
    assert lines[2].split()[:5] == ["pool", "(Pool)", "sum", "1", "2"]


def test_device_pipeline_records_the_module_path_and_roots(tmp_path):
    from dlavm.models import import_model
    from dlavm.ir import PassManager
    f = tmp_path / "m.py"
    f.write_text(MODEL)
    mod = PassManager(device_pipeline("int8")).run(import_model(f"{f}:build").module)
    ops = mod.attrs["host_ops"]
    assert [h["op"] for h in ops if h["root"] is None] == ["sum", "amax", "expand"]
    s = next(h for h in ops if h["op"] == "sum")
    assert (s["module"], s["module_type"], s["drags"]) == ("pool", "Pool", 1)
    (follower,) = [h for h in ops if h["root"] is not None and ops[h["root"]] is s]
    assert follower["op"] == "reshape" and "dragged along by sum" in follower["reason"]


@pytest.fixture(scope="module")
def compiled_cli(tmp_path_factory):
    """``dlavm compile`` of MODEL with --ops-report (CSV) and --dump-ir, once."""
    root = tmp_path_factory.mktemp("reports")
    (root / "m.py").write_text(MODEL)
    res = CliRunner().invoke(main, ["compile", f"{root / 'm.py'}:build", "-t", "tiny", "--no-driver",
                                    "-o", str(root / "out"), "--ops-report", str(root / "ops.csv"),
                                    "--dump-ir", str(root / "ir")])
    assert res.exit_code == 0, res.stderr
    return root, res.stdout


def test_compile_report_prints_the_host_table(compiled_cli):
    _, out = compiled_cli
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("host-fallback ops:"))
    assert lines[i].startswith("host-fallback ops: 5 node(s): 3 root op(s) in 3 row(s), 2 dragged along")
    assert lines[i + 1].split() == ["module", "op", "nodes", "drags", "reason"]
    assert lines[i + 2].split()[:5] == ["pool", "(Pool)", "sum", "1", "1"]
    assert [line.split()[2] for line in lines[i + 3:i + 5]] == ["amax", "expand"]


def test_ops_report_csv_places_every_op(compiled_cli):
    root, out = compiled_cli
    assert f"ops report written to {root / 'ops.csv'}" in out
    rows = list(csv.DictReader(io.StringIO((root / "ops.csv").read_text())))
    assert list(rows[0]) == ["op", "where", "count", "module", "reason", "entries"]
    assert {r["where"] for r in rows} == {"device", "transfer", "host"}
    host = [r for r in rows if r["where"] == "host"]
    assert sum(int(r["count"]) for r in host) == 5
    (s,) = [r for r in host if r["op"] == "sum"]
    assert s["module"] == "pool (Pool)" and "no general reduction" in s["reason"] and s["entries"] == "forward"
    assert any(r["op"] == "reshape" and r["reason"].endswith("dragged along by a host sum") for r in host)
    mvm = [r for r in rows if r["op"] == "dev.mvm"]
    assert sum(int(r["count"]) for r in mvm) == 2 and {r["module"] for r in mvm} == {"a (Linear)", "b (Linear)"}
    md = format_ops_report([dict(r, count=int(r["count"])) for r in rows], "markdown", "m on tiny")
    assert md.startswith("# Supported ops: m on tiny") and "| op | where | count | module | reason | entries |" in md
    assert md.count("\n| ") == len(rows) + 1


def test_dump_ir_writes_the_ir_after_every_pass(compiled_cli):
    root, _ = compiled_cli
    names = sorted(p.name for p in (root / "ir").iterdir())
    passes = [p.name for p in device_pipeline("int4")]
    assert names == ["00-input.txt"] + [f"{i:02d}-{n}.txt" for i, n in enumerate(passes, 1)]
    assert "dev.mvm" in (root / "ir" / names[-1]).read_text()
    assert "dev.mvm" not in (root / "ir" / "00-input.txt").read_text()


def test_ops_report_with_an_unknown_extension_is_refused_before_compiling(tmp_path):
    res = CliRunner().invoke(main, ["compile", "mlp", "-t", "tiny", "-o", str(tmp_path / "a"),
                                    "--ops-report", str(tmp_path / "ops.txt")])
    assert res.exit_code == EXIT_BAD_INPUT
    assert res.stderr.splitlines() == [f"error: ops report '{tmp_path / 'ops.txt'}': the file name must end in "
                                       ".csv or .md (the format is chosen by the extension)"]
    assert not (tmp_path / "a").exists()


def test_ops_device_lists_every_device_op_of_the_target():
    res = CliRunner().invoke(main, ["ops", "--device", "-t", "tiny"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("target tiny: weights int4, int8, fp16;") and "max seq 256" in lines[0]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {s.name for s in device_specs()}
    for s in device_specs():
        assert rows[s.name].split()[1] == ("device" if s.lowering else "transfer")
        assert all(p.name in rows[s.name] for p in s.patterns)
    every = CliRunner().invoke(main, ["ops", "--device"])
    assert [line.split(":")[0] for line in every.stdout.splitlines() if line.startswith("target ")] == \
        ["target tiny", "target u280", "target v80", "target vcu128"]


@pytest.mark.parametrize("args, message", [
    (["--target", "tiny"], "--target goes with --device"),
    (["--aten", "--device"], "--aten, --device and --conformance do different things: give one"),
    (["--aten", "--conformance"], "--aten, --device and --conformance do different things: give one"),
    (["--full"], "--full, --op and --write go with --conformance"),
    (["--device", "-t", "nosuch"], "unknown target 'nosuch'")])
def test_ops_bad_options_are_one_line_errors(args, message):
    res = CliRunner().invoke(main, ["ops", *args])
    assert res.exit_code == EXIT_BAD_INPUT and res.stdout == ""
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith(f"error: {message}")
