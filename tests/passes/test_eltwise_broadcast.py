"""Broadcast rows on the device: dev.eltwise with ``period`` (doc/isa.md ``eltwise``)."""
from __future__ import annotations

import numpy as np
import torch

from dlavm import sym
from dlavm.ir import Call, Constant, Function, Module, PassManager, TensorType, Var, call, post_order
from dlavm.passes import fold_views, fold_weights, fuse, legalize, quantize
from dlavm.reference import run_function

SEQ = sym.Var("seq", 1, 16)
PIPE = [legalize, fuse, fold_weights, fold_views, quantize("fp16")]


def _module(body_fn, *shapes, params=None):
    xs = [Var(f"x{i}", TensorType(tuple(sym.as_expr(d) for d in s), "float32")) for i, s in enumerate(shapes)]
    return Module({"f": Function("f", xs, body_fn(*xs))}, params or {})


def _eltwise(out):
    return [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.eltwise"]


def _same_values(mod, out, shapes):
    for n in (1, 7, 16):
        g = torch.Generator().manual_seed(n)
        ins = [torch.randn([n if d is SEQ else d for d in s], generator=g) for s in shapes]
        want, got = run_function(mod, "f", ins), run_function(out, "f", ins)
        assert (got - want).abs().max() <= 5e-3 * max(1.0, want.abs().max().item())


def test_bias_row_weight_over_a_computed_tensor():
    p = {"b": np.random.default_rng(0).standard_normal(32).astype(np.float32)}
    b = Constant("b", TensorType((32,), "float32"))
    shapes = [(1, SEQ, 32)]
    mod = _module(lambda x: call("add", b, call("silu", x)), *shapes, params=p)  # row first: commutative
    out = PassManager(PIPE).run(mod)
    (e,) = _eltwise(out)
    assert e.attrs["fn"] == "add" and tuple(e.args[1].type.shape) == (32,)
    _same_values(mod, out, shapes)


def test_positional_table_over_a_batch_of_one_and_a_row_of_an_input():
    shapes = [(1, SEQ, 32), (SEQ, 32), (1, 4, 8)]

    def body(x, pos, row):
        y = call("add", call("gelu", x), call("sigmoid", pos))  # [1, seq, 32] + [seq, 32]
        z = call("mul", call("reshape", call("silu", y), shape=(SEQ, 4, 8)), row)  # [seq, 4, 8] * [1, 4, 8]
        return call("sub", z, call("sigmoid", row))
    mod = _module(body, *shapes)
    out = PassManager(PIPE).run(mod)
    assert sorted(e.attrs["fn"] for e in _eltwise(out)) == ["add", "mul", "sub"]
    _same_values(mod, out, shapes)


def test_what_stays_on_the_host():
    """A row minus a tensor (the row would be ``a``), a scalar, and a shape that is not a row."""
    shapes = [(SEQ, 32), (32,), (SEQ, 1)]

    def body(x, row, col):
        a = call("sub", call("sigmoid", row), call("silu", x))
        b = call("mul", call("silu", x), 0.5)
        c = call("add", call("silu", x), call("sigmoid", col))
        return call("concat", a, b, c, axis=1)
    mod = _module(body, *shapes)
    out = PassManager(PIPE).run(mod)
    assert _eltwise(out) == []
    host = sorted(n.op.name for n in post_order(out["f"].body) if isinstance(n, Call)
                  and n.op.name in ("add", "sub", "mul"))
    assert host == ["add", "mul", "sub"]


def test_a_broadcast_row_is_not_fused_as_an_mvm_residual():
    rng = np.random.default_rng(1)
    p = {"w": (rng.standard_normal((32, 32)) / 6).astype(np.float32), "b": rng.standard_normal(32).astype(np.float32)}
    w, b = Constant("w", TensorType((32, 32), "float32")), Constant("b", TensorType((32,), "float32"))
    shapes = [(SEQ, 32)]
    mod = _module(lambda x: call("add", call("linear", x, w), b), *shapes, params=p)
    out = PassManager(PIPE).run(mod)  # without fold_batchnorm the bias stays an eltwise row
    (e,) = _eltwise(out)
    (m,) = [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.mvm"]
    assert m.attrs["res"] == "none" and e.args[0] is m
    _same_values(mod, out, shapes)
