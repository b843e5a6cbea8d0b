"""Lowering details of single device ops on a small 'tiny' variant: token tiling, alignment of
unaligned row widths, refusals, and the attention/rope lowering against float64 numpy formulas
(within fp16 tolerances). Bit-exactness of every op against its reference kernel is the
conformance suite's (tests/conformance)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlavm import sym
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from dlavm.ir.op import get_op
from dlavm.target import get_target

from dlavm.compiler import compile as dlavm_compile
from dlavm.passes.quantize import bind_numerics
from tests.e2e import device_graphs as G

torch = pytest.importorskip("torch")
from dlavm.reference.executor import run_function  # noqa: E402

# act_buffer_bytes = 1024 -> an mvm with K = 32 tiles the tokens by 16: lengths 15/16/17 hit the edges.
TARGET = get_target("tiny").replace(name="tiny-ops", act_buffer_bytes=1024)
SEQ = sym.Var("seq", 1, 40)
D, H, HD = 32, 4, 16


def _c(*d):
    return tuple(sym.const(x) if isinstance(x, int) else x for x in d)


def _x(name, *shape):
    return Var(name, TensorType(_c(*shape), "float32"))


def _const(params, name, arr):
    params[name] = arr.astype(np.float32)
    return Constant(name, TensorType(_c(*arr.shape), "float32"))


def _example(op, name):
    """An example graph of the op's spec (the conformance suite runs them all, tests/conformance)."""
    spec = get_op(op).get_attr("spec")
    return next(e for e in spec.examples(np.random.default_rng(0)) if e.name == name).module


def _inputs(mod, n, rng):
    env = {"seq": n}
    return [rng.standard_normal([sym.evaluate(d, env) for d in p.type.shape]).astype(np.float32)
            for p in mod["forward"].params]


def test_mvm_tiles_the_token_axis_by_the_activation_buffer():
    cm = dlavm_compile(bind_numerics(_example("dev.mvm", "int4"), TARGET), target=TARGET)
    (st,) = cm.manifest.streams.values()
    # K=32 -> 1024 / 64 = 16 tokens per tile: one entry, a loop of ceil(seq / 16) trips
    assert st.count == 1 and not st.guards
    (lp,) = st.loops
    assert (lp.start, lp.end) == (0, 1)
    rt = cm.runtime()
    assert [sum(hi > lo for lo, hi, _, _ in rt.launches("forward.0", {"seq": n})) for n in (1, 16, 17, 40)] \
        == [1, 1, 2, 3]
    assert math.ceil(40 / 16) == 3


def test_numpy_formulas_agree_within_fp16_tolerance(rng):
    """Independent of the reference kernels: the attention and rope lowering vs float64 formulas."""
    mod = _example("dev.attention", "gqa-causal=True")
    cm = dlavm_compile(mod, target=TARGET)
    for n in (1, 17, 40):
        q, k, v = (G.h16(x) for x in _inputs(mod, n, rng))
        got = cm.run(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))[0]
        np.testing.assert_allclose(got, G.r_attn(q, k, v), atol=2e-3, rtol=2e-3)
    mod = _example("dev.rope", "interleaved=False")
    cm = dlavm_compile(mod, target=TARGET)
    x = G.h16(rng.standard_normal((9, H, HD)))
    np.testing.assert_allclose(cm.run(x.astype(np.float32))[0], G.r_rope(x, mod.params["tab"], 0), atol=2e-3)


def test_unsupported_weight_format_is_refused_naming_the_target(rng):
    int4_only = TARGET.replace(name="tiny-int4", weight_formats=("int4",))
    from dlavm.task.lower import LoweringError
    with pytest.raises(LoweringError, match=r"weight format 'fp16' is not supported by target 'tiny-int4'"):
        dlavm_compile(_example("dev.mvm", "fp16-res-add"), target=int4_only, weights="int4")


def test_host_op_on_a_device_tensor_is_refused():
    from dlavm.task.lower import LoweringError
    x = _x("x", SEQ, D)
    y = call("exp", call("dev.act", call("dev.to_device", x), fn="silu"))
    mod = Module({"forward": Function("forward", [x], y)}, {})
    with pytest.raises(LoweringError, match="insert dev.to_host"):
        dlavm_compile(mod, target=TARGET)


def _wide_mvm(tgt, k: int, bound: int, wfmt: str, n: int = 8):
    """x [seq, k] -> mvm -> [seq, n]: K * 2 bytes is not a multiple of the 32-byte address unit."""
    rng = np.random.default_rng(k)
    seq = sym.Var("seq", 1, bound)
    p = {}
    x = Var("x", TensorType((seq, sym.const(k)), "float32"))
    w = _const(p, "w", rng.standard_normal((n, k)) / math.sqrt(k))
    y = call("dev.mvm", call("dev.to_device", x), w, wfmt=wfmt)
    return bind_numerics(Module({"forward": Function("forward", [x], call("dev.to_host", y))}, p), tgt)


@pytest.mark.parametrize("target,bound,wfmt", [("tiny", 200, "fp16"), ("tiny", 200, "int8"), ("vcu128", 4096, "fp16")])
def test_mvm_with_an_unaligned_row_width_compiles_and_matches_the_reference(target, bound, wfmt):
    """K = 200 (400-byte rows): a token tile of act_buffer_bytes // 400 rows would start the
    second tile mid-way through a 32-byte unit; every tile must start aligned."""
    from dlavm.devops.mvm import rows_per_tile
    tgt = get_target(target)
    mod = _wide_mvm(tgt, 200, bound, wfmt)
    cm = dlavm_compile(mod, target=tgt)
    tile = rows_per_tile(tgt, 200, 16)
    assert tile * 400 % 32 == 0 and tile < bound
    rng = np.random.default_rng(7)
    for n in (tile - 1, tile, tile + 1, bound):
        x = rng.standard_normal((n, 200)).astype(np.float32)
        got = cm.run(x)[0]
        want = run_function(mod, "forward", [torch.from_numpy(x)]).numpy()
        np.testing.assert_array_equal(got, want, err_msg=f"{target} seq={n}")


def test_an_mvm_wider_than_the_activation_buffer_is_refused_before_anything_is_lowered():
    """K = 40000 fp16 is 80000 bytes per token, more than tiny's 65536-byte activation buffer: the
    refusal names the op, the dimension and the limit, and comes before any weight is packed."""
    tgt = get_target("tiny")
    events = []
    from dlavm.task.lower import LoweringError
    with pytest.raises(LoweringError, match=r"dev\.mvm: input width K=40000 .*act_buffer_bytes=65536"):
        dlavm_compile(_wide_mvm(tgt, 40000, 4, "fp16"), target=tgt, on_progress=lambda *a: events.append(a[0]))
    assert "pack" not in events
