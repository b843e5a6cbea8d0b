"""``torch.compile(model, backend="dlavm")`` end to end on the tiny target: the entry point, the
options and their refusals, the partition around ops the device cannot run, graph breaks, dynamic
sizes and their bounds, dynamo's guards and changed weights, graphs with gradients on, and a device
server.

Tolerance: the device computes in fp16 (fp16 weights, fp16 activations, fp32 accumulation), so each
layer rounds to ~1e-3 relative; the models here are two or three layers with outputs of order 1, and
``TOL`` allows a few such roundings. Results of one program on two devices are compared bit for bit.
"""
from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dlavm
import dlavm.dynamo
from dlavm.dynamo import STATS, BackendError, Options
from tests.devlink.device_server_testing import ServerThread

TOL = dict(atol=5e-3, rtol=5e-3)
THIS_FILE = Path(__file__).name


def _opts(**extra) -> dict:
    return {"target": "tiny", "cache_dir": False, **extra}


def _line_of(fn, text: str) -> int:
    """The line number in this file of the line of ``fn``'s source that contains ``text``."""
    lines, first = inspect.getsourcelines(fn)
    hits = [first + i for i, line in enumerate(lines) if text in line]
    assert len(hits) == 1, f"{text!r} is on {len(hits)} lines of {fn.__qualname__}"
    return hits[0]


def _inner(exc: BaseException) -> BaseException:
    """The backend's own exception inside dynamo's BackendCompilerFailed."""
    return getattr(exc, "inner_exception", None) or exc.__cause__ or exc


class MLP(nn.Module):
    def __init__(self, d_in: int = 16, d_hidden: int = 32, d_out: int = 8):
        super().__init__()
        self.l1 = nn.Linear(d_in, d_hidden)
        self.l2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x))).softmax(-1)


class Bessel(nn.Module):
    """A device subgraph, an op no converter takes (bessel_j0), and another device subgraph."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.l2 = nn.Linear(32, 8)

    def forward(self, x):
        y = torch.relu(self.l1(x))
        y = torch.special.bessel_j0(y)
        return self.l2(y).softmax(-1)


class PoolDivisor(nn.Module):
    """avg_pool2d has a converter, which refuses ``divisor_override``: that node alone falls back."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(8, 8)

    def forward(self, x):
        y = torch.relu(self.l1(x))
        y = F.avg_pool2d(y, 2, divisor_override=3)
        return torch.sigmoid(y) * 2


class PrintBreak(nn.Module):
    """A print between two device computations: dynamo captures two graphs."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 16)
        self.l2 = nn.Linear(16, 8)

    def forward(self, x):
        y = torch.relu(self.l1(x))
        print("between the layers")
        return self.l2(y).softmax(-1)


class BranchBreak(nn.Module):
    """A Python branch on a tensor's value: a graph break, and a graph per branch taken after it."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 16)
        self.l2 = nn.Linear(16, 8)

    def forward(self, x):
        y = torch.relu(self.l1(x))
        if x.mean() > 0:
            y = y * 2
        return self.l2(y).softmax(-1)


def _model(cls, seed: int = 0):
    torch.manual_seed(seed)
    return cls().eval()


def _randn(*shape, seed: int = 1, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ------------------------------------------------------------------ the entry point
def test_the_backend_is_registered_as_the_dlavm_entry_point():
    eps = [ep for ep in entry_points(group="torch_dynamo_backends") if ep.name == "dlavm"]
    assert [ep.value for ep in eps] == ["dlavm.dynamo:dlavm_backend"]
    assert "dlavm" in torch._dynamo.list_backends()
    assert torch._dynamo.lookup_backend("dlavm") is dlavm.dynamo.dlavm_backend


def test_torch_compile_resolves_the_backend_by_name():
    m, x = _model(MLP), _randn(4, 16)
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options=_opts())(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert (STATS.graphs, STATS.compiles, STATS.device_calls) == (1, 1, 1)


def test_reset_stats_zeroes_the_statistics_every_importer_sees():
    m = _model(MLP)
    with torch.no_grad():
        torch.compile(m, backend="dlavm", options=_opts())(_randn(4, 16))
    assert dlavm.dynamo.STATS.device_calls == 1
    dlavm.dynamo.reset_stats()
    assert (dlavm.dynamo.STATS.graphs, dlavm.dynamo.STATS.compiles, dlavm.dynamo.STATS.device_calls) == (0, 0, 0)


# ------------------------------------------------------------------ options
BAD_OPTIONS = [
    ({"targt": "tiny"}, "unknown option 'targt'"),
    ({"target": "no-such-target"}, "option 'target'"),
    ({"target": 7}, "option 'target'"),
    ({"target": "tiny", "weights": "int2"}, "option 'weights': 'int2' is not a weight format of target 'tiny'"),
    ({"target": "tiny", "device": "tcp://127.0.0.1:5000"}, "option 'device'"),
    ({"target": "tiny", "device": "sim://127.0.0.1"}, "option 'device'"),
    ({"target": "tiny", "device": "sim://127.0.0.1:0"}, "option 'device'"),
    ({"target": "tiny", "device": 5000}, "option 'device'"),
    ({"target": "tiny", "device": ""}, "option 'device'"),
    ({"target": "tiny", "cache_dir": 3}, "option 'cache_dir'"),
    ({"target": "tiny", "cache_dir": True}, "option 'cache_dir': expected a folder path or False, got True"),
    ({"target": "tiny", "dim_bound": 0}, "option 'dim_bound': expected an integer of at least 1, got 0"),
    ({"target": "tiny", "dim_bound": -4}, "option 'dim_bound'"),
    ({"target": "tiny", "dim_bound": 8.0}, "option 'dim_bound'"),
    ({"target": "tiny", "dim_bound": True}, "option 'dim_bound'"),
    ({"target": "tiny", "dim_bound": "64"}, "option 'dim_bound'"),
    ({"target": "tiny", "fallback": "host"}, "option 'fallback': expected 'eager' or 'error', got 'host'"),
]


@pytest.mark.parametrize("options,expected", BAD_OPTIONS, ids=[next(iter(set(o) - {"target"}), "target") + "-" +
                                                                str(i) for i, (o, _) in enumerate(BAD_OPTIONS)])
def test_a_bad_option_is_one_line_naming_it(options, expected):
    with pytest.raises(BackendError) as info:
        Options.parse(options)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg, msg


def test_options_must_be_a_dict():
    with pytest.raises(BackendError, match="^options must be a dict, got list$"):
        Options.parse([("target", "tiny")])


def test_the_defaults_are_valid_options():
    o = Options.parse(None)
    assert (o.target, o.weights, o.device, o.cache, o.dim_bound, o.fallback) == ("vcu128", "fp16", None, True,
                                                                                 None, "eager")
    assert Options.parse({"cache_dir": False}).cache is False


def test_a_bad_option_refuses_the_compiled_call_before_anything_runs():
    m = _model(MLP)
    c = torch.compile(m, backend="dlavm", options={"target": "tiny", "fallback": "never"})
    with torch.no_grad(), pytest.raises(Exception) as info:
        c(_randn(4, 16))
    inner = _inner(info.value)
    assert isinstance(inner, BackendError) and str(inner).startswith("option 'fallback'"), repr(inner)
    assert (STATS.compiles, STATS.device_calls) == (0, 0)


def test_explain_refuses_a_bad_option_before_compiling():
    with pytest.raises(BackendError, match="unknown option 'weight'"):
        dlavm.explain(_model(MLP), _randn(4, 16), target="tiny", weight="int8")
    assert STATS.graphs == 0


# ------------------------------------------------------------------ partition and fallbacks
def test_an_unsupported_op_between_device_ops_runs_in_eager_between_two_device_subgraphs():
    m, x = _model(Bessel), _randn(4, 16)
    e = dlavm.explain(m, x, **_opts())
    assert e.graph_count == 1 and e.breaks == []
    assert len(e.subgraphs) == 2, str(e)
    first, second = (set(s.ops) for s in e.subgraphs)
    assert "aten.addmm" in first and "aten.relu" in first
    assert "aten.addmm" in second and "aten._softmax" in second
    assert [f.op for f in e.fallbacks] == ["aten.special_bessel_j0"], str(e)
    f = e.fallbacks[0]
    assert "no converter" in f.reason
    assert f"{THIS_FILE}:{_line_of(Bessel.forward, 'bessel_j0(')}" in f.source, f.source
    dlavm.dynamo.reset_stats()
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options=_opts())(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert STATS.device_calls == 2 and STATS.fallback_ops == {"aten.special_bessel_j0": 1}


def test_fallback_error_refuses_the_graph_naming_the_op_and_its_source_line():
    c = torch.compile(_model(Bessel), backend="dlavm", options=_opts(fallback="error"))
    with torch.no_grad(), pytest.raises(Exception) as info:
        c(_randn(4, 16))
    inner = _inner(info.value)
    assert isinstance(inner, BackendError), repr(inner)
    msg = str(inner)
    assert "\n" not in msg and msg.startswith("aten.special_bessel_j0 at "), msg
    assert f"{THIS_FILE}:{_line_of(Bessel.forward, 'bessel_j0(')}" in msg and "no converter" in msg, msg
    assert STATS.device_calls == 0


def test_fallback_error_compiles_a_graph_that_runs_whole_on_the_device():
    m, x = _model(MLP), _randn(4, 16)
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options=_opts(fallback="error"))(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert STATS.device_calls == 1 and not STATS.fallback_ops


def test_a_node_its_converter_refuses_falls_back_alone():
    m, x = _model(PoolDivisor), _randn(1, 2, 8, 8)
    e = dlavm.explain(m, x, **_opts())
    assert [f.op for f in e.fallbacks] == ["aten.avg_pool2d"], str(e)
    f = e.fallbacks[0]
    assert "divisor_override" in f.reason
    assert f"{THIS_FILE}:{_line_of(PoolDivisor.forward, 'avg_pool2d(')}" in f.source, f.source
    ops = [set(s.ops) for s in e.subgraphs]
    assert len(ops) == 2 and "aten.addmm" in ops[0] and "aten.sigmoid" in ops[1], str(e)
    assert not any("aten.avg_pool2d" in o for o in ops)
    dlavm.dynamo.reset_stats()
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options=_opts())(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert STATS.device_calls == 2 and STATS.fallback_ops == {"aten.avg_pool2d": 1}


# ------------------------------------------------------------------ graph breaks
def test_a_print_breaks_the_graph_and_each_piece_runs_on_the_device(capsys):
    m, x = _model(PrintBreak), _randn(4, 16)
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options=_opts())(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert capsys.readouterr().out.count("between the layers") == 2
    assert (STATS.graphs, STATS.compiles, STATS.device_calls) == (2, 2, 2)
    e = dlavm.explain(m, x, **_opts())
    assert e.graph_count == 2 and len(e.subgraphs) == 2 and not e.fallbacks, str(e)
    assert len(e.breaks) == 1, e.breaks
    reason, where = e.breaks[0]
    assert f"{THIS_FILE}:{_line_of(PrintBreak.forward, 'print(')}" in where, e.breaks
    assert "graph break 1:" in str(e) and where in str(e)


def test_a_break_inside_a_library_names_the_users_line_first(monkeypatch):
    # Ray's progress bars replace builtins.print with a function that takes a lock (dynamo cannot trace
    # it): the break happens inside that library, and explain names the user's print line first
    import builtins
    import threading
    lock, original = threading.Lock(), builtins.print

    def locked_print(*args, **kwargs):
        with lock:
            original(*args, **kwargs)

    locked_print.__code__ = locked_print.__code__.replace(co_filename=threading.__file__)   # library code
    monkeypatch.setattr(builtins, "print", locked_print)
    m, x = _model(PrintBreak), _randn(4, 16)
    e = dlavm.explain(m, x, **_opts())
    [(_reason, where)] = e.breaks
    assert where.startswith(f"{__file__}:{_line_of(PrintBreak.forward, 'print(')}"), where
    assert f", in {threading.__file__}:" in where, where


def test_a_data_dependent_branch_compiles_each_side_and_matches_eager():
    m = _model(BranchBreak)
    xs = [_randn(4, 16, seed=s) for s in range(8)]
    with torch.no_grad():
        sides = {bool(x.mean() > 0) for x in xs}
        assert sides == {True, False}, "the inputs must take both sides of the branch"
        c = torch.compile(m, backend="dlavm", options=_opts())
        for x in xs:
            torch.testing.assert_close(c(x), m(x), **TOL)
    assert STATS.graphs == 3            # the graph up to the branch, and the rest on either side
    assert STATS.device_calls == 2 * len(xs)
    e = dlavm.explain(m, xs[0], **_opts())
    assert len(e.breaks) == 1 and f"{THIS_FILE}:{_line_of(BranchBreak.forward, 'if x.mean()')}" in e.breaks[0][1]


# ------------------------------------------------------------------ dynamic sizes
def test_sizes_within_the_bound_reuse_the_program_and_one_past_it_recompiles_once(dynamo_log):
    m = _model(MLP)
    c = torch.compile(m, backend="dlavm", dynamic=True, options=_opts())
    with torch.no_grad():
        for n in (4, 5, 9, 16):
            x = _randn(n, 16, seed=n)
            torch.testing.assert_close(c(x), m(x), **TOL)
        assert (STATS.graphs, STATS.compiles, STATS.recompiles) == (1, 1, [])
        x = _randn(17, 16, seed=17)
        torch.testing.assert_close(c(x), m(x), **TOL)
        assert STATS.compiles == 2 and len(STATS.recompiles) == 1
        for n in (20, 32, 6):   # within the new bound, and within the first one again
            x = _randn(n, 16, seed=n)
            torch.testing.assert_close(c(x), m(x), **TOL)
    assert (STATS.graphs, STATS.compiles, STATS.device_calls, STATS.eager_calls) == (1, 2, 8, 0)
    reason = STATS.recompiles[0]
    assert "x_dim0=17 is past the bound 16" in reason and "x_dim0 <= 64" in reason, reason
    assert any(reason in r.getMessage() for r in dynamo_log.records if r.name == "dlavm.dynamo"), \
        [r.getMessage() for r in dynamo_log.records]


def test_the_dim_bound_option_sets_the_bound_of_every_dynamic_size():
    m = _model(MLP)
    e = dlavm.explain(m, _randn(4, 16), dynamic=True, **_opts(dim_bound=24))
    assert [s.bounds for s in e.subgraphs] == [{"x_dim0": (2, 24)}], str(e)
    dlavm.dynamo.reset_stats()
    c = torch.compile(m, backend="dlavm", dynamic=True, options=_opts(dim_bound=24))
    with torch.no_grad():
        for n in (4, 24, 25):
            x = _randn(n, 16, seed=n)
            torch.testing.assert_close(c(x), m(x), **TOL)
    assert STATS.compiles == 2
    assert len(STATS.recompiles) == 1 and "x_dim0=25 is past the bound 24" in STATS.recompiles[0], STATS.recompiles


def test_without_dim_bound_the_bound_is_twice_the_size_seen_as_a_power_of_two():
    e = dlavm.explain(_model(MLP), _randn(40, 16), dynamic=True, **_opts())
    assert [s.bounds for s in e.subgraphs] == [{"x_dim0": (2, 128)}], str(e)


def _weightless(x):
    return (torch.relu(x) * 3 + 1).softmax(-1)


def test_a_dtype_change_is_guarded_and_gives_a_fresh_correct_result():
    c = torch.compile(_weightless, backend="dlavm", options=_opts())
    x = _randn(4, 16)
    with torch.no_grad():
        y32 = c(x)
        y16 = c(x.half())
        y32_again = c(x)
    assert (y32.dtype, y16.dtype, y32_again.dtype) == (torch.float32, torch.float16, torch.float32)
    torch.testing.assert_close(y32, _weightless(x), **TOL)
    torch.testing.assert_close(y16, _weightless(x.half()), atol=1e-2, rtol=1e-2)
    assert torch.equal(y32_again, y32)
    assert STATS.graphs == 2 and STATS.device_calls == 3


def test_a_shape_change_of_a_static_graph_is_guarded_and_gives_a_fresh_correct_result():
    m = _model(MLP)
    c = torch.compile(m, backend="dlavm", dynamic=False, options=_opts())
    with torch.no_grad():
        for n in (4, 6, 4):
            x = _randn(n, 16, seed=n)
            y = c(x)
            assert y.shape == (n, 8)
            torch.testing.assert_close(y, m(x), **TOL)
    assert STATS.graphs == 2 and STATS.compiles == 2 and STATS.device_calls == 3


def test_a_weight_changed_in_place_recompiles_and_gives_a_fresh_correct_result(dynamo_log):
    m, x = _model(MLP), _randn(4, 16)
    c = torch.compile(m, backend="dlavm", options=_opts())
    with torch.no_grad():
        before = c(x)
        m.l2.weight.mul_(-1)
        after = c(x)
        torch.testing.assert_close(after, m(x), **TOL)
        assert not torch.allclose(before, after, **TOL)
        torch.testing.assert_close(c(x), after, atol=0, rtol=0)
    assert (STATS.graphs, STATS.compiles, STATS.device_calls) == (1, 2, 3)
    assert STATS.recompiles == ["fused_0: weight l2.weight changed since it was compiled in: recompiling with "
                                "the new values"]
    assert any(STATS.recompiles[0] in r.getMessage() for r in dynamo_log.records)


def test_a_replaced_parameter_recompiles_and_gives_a_fresh_correct_result():
    m, x = _model(MLP), _randn(4, 16)
    c = torch.compile(m, backend="dlavm", options=_opts())
    with torch.no_grad():
        c(x)
        m.l1.weight = nn.Parameter(_randn(32, 16, seed=9))
        m.l1.bias = nn.Parameter(_randn(32, seed=10))
        torch.testing.assert_close(c(x), m(x), **TOL)
    assert STATS.compiles == 2 and len(STATS.recompiles) == 1
    assert "weight l1.weight and 1 more changed" in STATS.recompiles[0], STATS.recompiles


class Accumulator(nn.Module):
    """A buffer the forward changes in place: a runtime input of the device program, not a weight."""

    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros(8))
        self.l1 = nn.Linear(8, 8)

    def forward(self, x):
        self.total.add_(x.sum(0))
        return torch.relu(self.l1(x) + self.total)


def test_a_buffer_the_forward_changes_is_read_afresh_on_every_call():
    m, ref = _model(Accumulator), _model(Accumulator)
    c = torch.compile(m, backend="dlavm", options=_opts())
    with torch.no_grad():
        for seed in range(3):
            x = _randn(4, 8, seed=seed)
            torch.testing.assert_close(c(x), ref(x), **TOL)
            torch.testing.assert_close(m.total, ref.total, **TOL)
    assert (STATS.graphs, STATS.compiles, STATS.device_calls, STATS.recompiles) == (1, 1, 3, [])


def test_a_model_built_under_inference_mode_runs_on_the_device():
    with torch.inference_mode():      # its weights are inference tensors: no version counter
        m, x = _model(MLP), _randn(4, 16)
        c = torch.compile(m, backend="dlavm", options=_opts())
        for _ in range(2):
            torch.testing.assert_close(c(x), m(x), **TOL)
    assert (STATS.compiles, STATS.device_calls, STATS.recompiles) == (1, 2, [])


# ------------------------------------------------------------------ gradients
def test_a_graph_with_gradients_on_runs_in_eager_with_the_reason(dynamo_log):
    m, x = _model(MLP), _randn(4, 16)
    assert all(p.requires_grad for p in m.parameters())
    y = torch.compile(m, backend="dlavm", options=_opts())(x)
    assert torch.equal(y, m(x)) and y.requires_grad
    y.sum().backward()
    assert m.l1.weight.grad is not None
    assert (STATS.graphs, STATS.compiles, STATS.device_calls) == (1, 0, 0)
    msgs = [r.getMessage() for r in dynamo_log.records if r.name == "dlavm.dynamo"]
    assert any("runs in eager: gradients are on" in s and "torch.no_grad()" in s for s in msgs), msgs


def test_fallback_error_refuses_a_graph_with_gradients_on():
    c = torch.compile(_model(MLP), backend="dlavm", options=_opts(fallback="error"))
    with pytest.raises(Exception) as info:
        c(_randn(4, 16))
    inner = _inner(info.value)
    assert isinstance(inner, BackendError) and str(inner).startswith("gradients are on"), repr(inner)


# ------------------------------------------------------------------ a device server
def test_a_device_server_gives_the_in_process_simulators_outputs_bit_for_bit():
    m = _model(Bessel)       # two programs, taking turns on the one device
    xs = [_randn(4, 16, seed=s) for s in (1, 2)]
    with torch.no_grad():
        c = torch.compile(m, backend="dlavm", options=_opts())
        here = [c(x) for x in xs]
        torch._dynamo.reset()
        dlavm.dynamo.reset_stats()
        with ServerThread("tiny", record=True) as srv:
            c = torch.compile(m, backend="dlavm", options=_opts(device=f"sim://127.0.0.1:{srv.port}"))
            there = [c(x) for x in xs]
            served = [entry[0] for entry in srv.server.log]
    for a, b in zip(here, there):
        assert torch.equal(a, b), (a - b).abs().max()
    assert STATS.device_calls == 4
    assert served.count("wait") >= 4 and "write_mem" in served and "read_mem" in served, served[:20]


def test_a_device_server_of_another_target_is_refused_naming_both():
    m = _model(MLP)
    with ServerThread("vcu128", record=True) as srv:
        c = torch.compile(m, backend="dlavm", options=_opts(device=f"sim://127.0.0.1:{srv.port}"))
        with torch.no_grad(), pytest.raises(Exception) as info:
            c(_randn(4, 16))
        written = [entry for entry in srv.server.log if entry[0] in ("write_mem", "write_reg")]
    msg = str(_inner(info.value))
    assert "'tiny'" in msg and "'vcu128'" in msg and "\n" not in msg, msg
    assert written == [] and STATS.device_calls == 0


def test_a_target_object_is_a_target_option():
    from dlavm.target import get_target
    tgt = get_target("tiny").replace(name="tiny_copy")
    assert Options.parse({"target": tgt}).target is tgt
    m, x = _model(MLP), _randn(4, 16)
    with torch.no_grad():
        y = torch.compile(m, backend="dlavm", options={"target": tgt, "cache_dir": False})(x)
        torch.testing.assert_close(y, m(x), **TOL)
    assert STATS.device_calls == 1
