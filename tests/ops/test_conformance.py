"""The op conformance suite (doc/ops.md): every ATen overload the torch frontend converts, run through
``torch.compile(backend="dlavm")`` on the tiny target and compared with torch eager.

One test per (overload, dtype) runs the dynamic grid (compiled once, run at every shape edge); one test
per (overload, dtype, edge) the static grid. ``make test`` runs the reduced grid (``conformance.
static_runs``: static at the edges of ``REDUCED_STATIC``, for the first dtype of each case that
reaches the backend itself); ``DLAVM_OPS_FULL=1`` runs every edge static for every dtype. The cases
live in ``dlavm.dynamo.op_cases``, the tolerances and edges in ``dlavm.dynamo.conformance``.
"""
from __future__ import annotations

import pytest
import torch

from dlavm.dynamo import conformance as conf

FULL = conf.full_grid()
SIZES = conf.edges()


def _id(dtype) -> str:
    return str(dtype).replace("torch.", "")


DYNAMIC = [pytest.param(op, dtype, id=f"{op}-{_id(dtype)}") for op, case in sorted(conf.CASES.items())
           for dtype in case.dtypes]
STATIC = [pytest.param(op, dtype, edge, id=f"{op}-{_id(dtype)}-{edge}") for op, case in sorted(conf.CASES.items())
          for dtype, edge in conf.static_runs(case, FULL)]


def _failures(runs) -> str:
    return "\n".join(f"{r.op} {r.dtype} {r.mode} {r.edge} (n={r.n}): {r.reason}" for r in runs if not r.passed)


def test_every_converted_overload_has_a_case_or_a_reason():
    assert conf.coverage_gaps() == []
    assert all(reason.strip() for reason in conf.UNREACHABLE.values())
    assert not set(conf.CASES) & set(conf.UNREACHABLE)


@pytest.mark.parametrize("op, dtype", DYNAMIC)
def test_dynamic(op, dtype):
    """Compiled once with the case's axes dynamic, run at every edge: each within tolerance, on the
    placement the catalog states, and no recompilation within the bound."""
    case = conf.CASES[op]
    runs = conf.run_dynamic(case, dtype, {k: v for k, v in SIZES.items() if v >= case.min_n})
    assert len(runs) == sum(v >= case.min_n for v in SIZES.values())
    assert all(r.passed for r in runs), _failures(runs)


@pytest.mark.parametrize("op, dtype, edge", STATIC)
def test_static(op, dtype, edge):
    run = conf.run_static(conf.CASES[op], dtype, edge, SIZES[edge])
    assert run.passed, _failures([run])


# ---------------------------------------------------------------- the harness itself
def test_edges_come_from_the_target():
    from dlavm.target import get_target
    tile = get_target("tiny").tin
    assert SIZES == {"1": 1, "tile-1": tile - 1, "tile": tile, "tile+1": tile + 1, "odd": tile + tile // 2 + 1,
                     "bound": 2 * tile}
    assert SIZES["odd"] % 2 == 1


def test_compare_refuses_a_wrong_value_a_wrong_shape_and_a_wrong_dtype():
    want = torch.tensor([1.0, 2.0, 3.0])
    assert conf._compare(want.clone(), want, "host", False)[0]
    ok, max_abs, _rel, why = conf._compare(want + torch.tensor([0.0, 1e-3, 0.0]), want, "host", False)
    assert not ok and max_abs == pytest.approx(1e-3, rel=1e-3) and "element 1" in why
    assert conf._compare(want + 1e-3, want, "device", False)[0]        # within fp16 device tolerance
    assert not conf._compare(want[:2], want, "host", False)[0]
    assert not conf._compare(want.half(), want, "device", False)[0]
    assert not conf._compare(torch.tensor([1, 2, 4]), torch.tensor([1, 2, 3]), "device", False)[0]
    nan = torch.tensor([float("nan"), 1.0])
    assert conf._compare(nan.clone(), nan, "host", False)[0]
    assert not conf._compare(torch.tensor([0.0, 1.0]), nan, "host", False)[0]


def test_a_case_whose_claim_is_wrong_is_a_recorded_failure():
    """The placement and reached-as checks can fail: a host op claimed to run on the device (so not
    anchored: the backend leaves it to eager), and an overload claimed to be decomposed that reaches
    the backend itself."""
    exp = conf.CASES["aten.exp.default"]
    wrong_place = conf.Case(exp.op, exp.build, exp.make, exp.dims, (torch.float32,), device=True)
    run = conf.run_static(wrong_place, torch.float32, "tile", SIZES["tile"])
    assert not run.passed and run.where == "eager" and "ran in eager" in run.reason
    wrong_route = conf.Case(exp.op, exp.build, exp.make, exp.dims, (torch.float32,), reached_as=("aten.exp.default",))
    run = conf.run_static(wrong_route, torch.float32, "tile", SIZES["tile"])
    assert not run.passed and "torch decomposes it" in run.reason


def test_the_table_and_its_document(tmp_path):
    rows = conf.run_all(ops=["aten._assert_scalar.default", "aten.add.Tensor"])
    assert [r.status for r in rows] == ["n/a", "pass"]
    assert rows[1].device == "device" and rows[1].runs > 0
    text = conf.format_table(rows)
    assert "aten.add.Tensor" in text and "n/a: an assertion" in text
    doc = conf.markdown_doc(rows, False, 1.0)
    assert "| aten.add.Tensor | yes | device |" in doc and "| float16 | host |" in doc


def test_the_command_prints_the_table_and_writes_the_document(tmp_path):
    from click.testing import CliRunner

    from dlavm.cli.main import main
    out = tmp_path / "ops.md"
    res = CliRunner().invoke(main, ["ops", "--conformance", "--op", "aten.relu.default", "--write", str(out)])
    assert res.exit_code == 0, res.output
    assert "aten.relu.default" in res.output and "1 converted overloads: 1 pass" in res.output
    assert "| aten.relu.default | yes | host |" in out.read_text()
    res = CliRunner().invoke(main, ["ops", "--conformance", "--op", "aten.no_such.default"])
    assert res.exit_code != 0 and "not in the conformance catalog" in res.output
    res = CliRunner().invoke(main, ["ops", "--full"])
    assert res.exit_code != 0 and "go with --conformance" in res.output
