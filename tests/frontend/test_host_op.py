"""``@dlavm.host_op``: a numpy implementation of an op the compiler does not know, end to end
(import -> reference executor -> compile -> Python runtime -> save -> load), and its refusals."""
import numpy as np
import pytest
import torch
from torch.export import Dim

import dlavm
from dlavm import host_ops
from dlavm.compiler import CompileError
from dlavm.frontend.torch import from_torch
from dlavm.ir import IRError
from dlavm.reference import ExecutionError, run_function


@torch.library.custom_op("dlavm_test::soft_clip", mutates_args=())
def soft_clip(x: torch.Tensor, limit: float) -> torch.Tensor:
    return limit * torch.tanh(x / limit)


@soft_clip.register_fake
def _(x, limit):
    return torch.empty_like(x)


@torch.library.custom_op("dlavm_test::first_rows", mutates_args=())
def first_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:, :n].clone()


@first_rows.register_fake
def _(x, n):
    return x.new_empty((x.shape[0], n) + tuple(x.shape[2:]))


@torch.library.custom_op("dlavm_test::total", mutates_args=())
def total(x: torch.Tensor) -> torch.Tensor:
    return x.sum()


@total.register_fake
def _(x):
    return x.new_empty(())


def _soft_clip_np(x, limit):
    return limit * np.tanh(x / limit)


def _logcumsumexp_np(x, dim):
    return np.logaddexp.accumulate(x, axis=dim)


def _first_rows_np(x, n):
    assert isinstance(n, int)  # a symbolic size arrives as a Python int
    return x[:, :n]


@pytest.fixture
def registered():
    """The three ops registered for one test, forgotten after it."""
    dlavm.host_op("dlavm_test::soft_clip")(_soft_clip_np)
    dlavm.host_op("aten::logcumsumexp", _logcumsumexp_np)
    dlavm.host_op("dlavm_test::first_rows", _first_rows_np)
    yield
    for name in ("dlavm_test::soft_clip", "aten::logcumsumexp", "dlavm_test::first_rows"):
        host_ops.unregister(name)


class Model(torch.nn.Module):
    """A device linear, then a custom op, an ATen op without a converter, and a custom op taking a size."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 64)

    def forward(self, x):
        y = torch.ops.dlavm_test.soft_clip(self.fc(x), 2.0)
        y = torch.logcumsumexp(y, dim=1)
        return torch.ops.dlavm_test.first_rows(y, x.shape[1] // 2 + 1)


SEQ = Dim("seq", min=1, max=16)


def _x(n):
    return torch.randn(1, n, 64, generator=torch.Generator().manual_seed(n))


def _model():
    torch.manual_seed(0)
    return Model().eval()


class _LogCumSumExp(torch.nn.Module):
    def forward(self, x):
        return torch.logcumsumexp(x, dim=1)


def test_without_registration_import_names_the_op():
    with pytest.raises(IRError, match="unsupported ATen op 'aten.logcumsumexp'"):
        from_torch(_LogCumSumExp(), (torch.randn(2, 3),))


def test_import_and_reference_match_torch(registered):
    model = _model()
    mod = from_torch(model, (_x(5),), {"x": {1: SEQ}})
    names = {n.op.name for n in _calls(mod)}
    assert {"dlavm_test::soft_clip", "aten::logcumsumexp", "dlavm_test::first_rows", "linear"} <= names
    for n in (1, 5, 16):
        with torch.no_grad():
            want = model(_x(n))
        torch.testing.assert_close(run_function(mod, "forward", [_x(n)]), want, rtol=1e-5, atol=1e-5)


def _calls(mod):
    from dlavm.ir import Call, post_order
    return [n for n in post_order([mod["forward"].body]) if isinstance(n, Call)]


def test_compile_run_save_load_on_the_python_runtime(registered, tmp_path):
    model = _model()
    cm = dlavm.compile(model, (_x(5),), {"x": {1: SEQ}}, target="tiny", weights="fp16")
    assert [h.op for h in cm.manifest.host_ops if "::" in h.op] == [
        "dlavm_test::soft_clip", "aten::logcumsumexp", "dlavm_test::first_rows"]
    for n in (1, 8, 16):
        want = run_function(cm.device_module, "forward", [_x(n)]).numpy()
        got = cm.run(_x(n).numpy())[0]
        assert got.shape == (1, n // 2 + 1, 64)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # numpy vs torch float32 maths
        with torch.no_grad():
            np.testing.assert_allclose(got, model(_x(n)).numpy(), atol=2e-2)  # fp16 device linear
    # the C++ driver cannot call Python: the compile says so, naming each user op
    report = cm.report()
    for name in ("dlavm_test::soft_clip", "aten::logcumsumexp", "dlavm_test::first_rows"):
        assert f"'{name}'" in report.split("C++ driver: unavailable:")[1]
    with pytest.raises(CompileError, match="aten::logcumsumexp"):
        cm.save(tmp_path / "with_driver")
    out = cm.save(tmp_path / "a", driver=False)
    loaded = dlavm.load(out)
    np.testing.assert_array_equal(loaded.run(_x(7).numpy())[0], cm.run(_x(7).numpy())[0])


def test_an_artifact_needing_an_unregistered_op_is_refused_at_load(registered, tmp_path):
    from dlavm.runtime.runtime import Runtime, RunError
    from dlavm.runtime.loader import load_verified
    from dlavm.sim_device import open_simulator
    cm = dlavm.compile(_model(), (_x(5),), {"x": {1: SEQ}}, target="tiny", weights="fp16")
    out = cm.save(tmp_path / "a", driver=False)
    host_ops.unregister("aten::logcumsumexp")
    with pytest.raises(RunError) as info:
        dlavm.load(out)
    msg = str(info.value)
    assert "\n" not in msg and "'aten::logcumsumexp'" in msg and "@dlavm.host_op" in msg
    assert "soft_clip" not in msg  # only what is missing
    art = load_verified(out)
    with pytest.raises(RunError, match="'aten::logcumsumexp'"):
        Runtime(art.manifest, art.read, open_simulator(art.manifest))


def test_the_cli_refuses_it_in_one_line(registered, tmp_path):
    from click.testing import CliRunner
    from dlavm.cli.main import main
    out = dlavm.compile(_model(), (_x(5),), {"x": {1: SEQ}}, target="tiny", weights="fp16").save(
        tmp_path / "a", driver=False)
    host_ops.unregister("dlavm_test::first_rows")
    res = CliRunner().invoke(main, ["run", str(out), "--seq", "4"])
    assert res.exit_code != 0
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "'dlavm_test::first_rows'" in err[0], res.stderr


def test_a_result_of_the_wrong_shape_is_refused(registered):
    host_ops.host_op("aten::logcumsumexp", lambda x, dim: x[..., :1], replace=True)
    mod = from_torch(_LogCumSumExp(), (torch.randn(2, 3),))
    with pytest.raises(ExecutionError, match=r"host op 'aten::logcumsumexp' returned shape \(2, 1\), "
                                             r"the model expects \(2, 3\)"):
        run_function(mod, "forward", [torch.randn(2, 3)])


def test_registration_errors():
    with pytest.raises(ValueError, match="must look like 'namespace::op'"):
        dlavm.host_op("logcumsumexp")
    dlavm.host_op("dlavm_test::twice", lambda x: x)
    try:
        with pytest.raises(ValueError, match="'dlavm_test::twice' is already registered"):
            dlavm.host_op("dlavm_test::twice", lambda x: x + 1)
    finally:
        host_ops.unregister("dlavm_test::twice")


def test_an_op_returning_several_tensors_is_refused_at_import():
    dlavm.host_op("aten::cummax", lambda x, dim: (np.maximum.accumulate(x, dim), None))
    try:
        class M(torch.nn.Module):
            def forward(self, x):
                return torch.cummax(x, 1).values
        with pytest.raises(IRError, match="host op 'aten::cummax' at node %cummax returns 2 values; "
                                          "a host op must return one tensor"):
            from_torch(M(), (torch.randn(2, 3),))
    finally:
        host_ops.unregister("aten::cummax")


def test_an_overload_registration_wins_over_the_whole_op():
    dlavm.host_op("aten::logcumsumexp", _logcumsumexp_np)
    dlavm.host_op("aten::logcumsumexp.default", lambda x, dim: _logcumsumexp_np(x, dim) + 1)
    try:
        mod = from_torch(_LogCumSumExp(), (torch.randn(2, 3),))
        x = torch.randn(2, 3)
        torch.testing.assert_close(run_function(mod, "forward", [x]), torch.logcumsumexp(x, 1) + 1)
    finally:
        host_ops.unregister("aten::logcumsumexp")
        host_ops.unregister("aten::logcumsumexp.default")


def test_a_user_function_that_raises_is_named_by_the_reference_and_the_runtime(registered):
    from dlavm.runtime.runtime import RunError

    def broken(x, dim):
        raise ValueError("no such axis")
    cm = dlavm.compile(_model(), (_x(5),), {"x": {1: SEQ}}, target="tiny", weights="fp16")
    host_ops.host_op("aten::logcumsumexp", broken, replace=True)
    with pytest.raises(ExecutionError, match="host op 'aten::logcumsumexp' failed: ValueError: no such axis"):
        run_function(cm.device_module, "forward", [_x(5)])
    with pytest.raises(RunError, match=r"host op 'aten::logcumsumexp' \(writing v\d+\) cannot run: host op "
                                       r"'aten::logcumsumexp' failed: no such axis"):
        cm.run(_x(5).numpy())


class _Total(torch.nn.Module):
    def forward(self, x):
        return torch.ops.dlavm_test.total(x)


def test_a_0d_result_keeps_its_shape_in_the_reference_and_the_runtime():
    dlavm.host_op("dlavm_test::total", lambda x: np.sum(x, dtype=np.float32))
    try:
        x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
        mod = from_torch(_Total(), (x,))
        got = run_function(mod, "forward", [x])
        assert got.shape == torch.Size([])
        torch.testing.assert_close(got, x.sum(), rtol=1e-6, atol=1e-6)
        (out,) = dlavm.compile(_Total(), (x,), target="tiny", weights="fp16").run(x.numpy())
        assert out.shape == () and np.isclose(out, x.sum().item(), rtol=1e-6)
    finally:
        host_ops.unregister("dlavm_test::total")
