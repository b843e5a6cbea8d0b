"""Every dev.* op lowered alone on a small 'tiny' variant, run on the simulator (hazard and
uninitialised-read checks on) at the tiling edges, against the reference executor's device
kernels (bit for bit) and a float64 numpy formula (within fp16 tolerances)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlavm import sym
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from dlavm.target import get_target

from dlavm.compiler import compile as dlavm_compile
from tests.e2e import device_graphs as G

torch = pytest.importorskip("torch")
from dlavm.reference.executor import run_function  # noqa: E402

# act_buffer_bytes = 1024 -> an mvm with K = 32 tiles the tokens by 16: lengths 15/16/17 hit the edges.
TARGET = get_target("tiny").replace(name="tiny-ops", act_buffer_bytes=1024)
SEQ = sym.Var("seq", 1, 40)
LENGTHS = (1, 15, 16, 17, 23, 40)
D, H, HKV, HD = 32, 4, 2, 16


def _c(*d):
    return tuple(sym.const(x) if isinstance(x, int) else x for x in d)


def _x(name, *shape):
    return Var(name, TensorType(_c(*shape), "float32"))


def _const(params, name, arr):
    params[name] = arr.astype(np.float32)
    return Constant(name, TensorType(_c(*arr.shape), "float32"))


def _mvm_case(rng, wfmt="int4", **attrs):
    p = {}
    x = _x("x", SEQ, D)
    w = _const(p, "w", rng.standard_normal((24, D)) / math.sqrt(D))
    extra = []
    if attrs.get("bias"):
        extra.append(_const(p, "b", 0.1 * rng.standard_normal(24)))
    if attrs.get("res", "none") != "none":
        extra.append(call("dev.to_device", _x("r", SEQ, 24)))
    h = call("dev.to_device", x)
    y = call("dev.mvm", h, w, *extra, wfmt=wfmt, **attrs)
    out = call("dev.to_host", y, dtype="int32" if attrs.get("argmax") else "float32")
    params = [x] + ([extra[-1].args[0]] if attrs.get("res", "none") != "none" else [])
    return Module({"forward": Function("forward", params, out)}, p)


def _unary_case(rng, op, shape=(SEQ, D), **attrs):
    p = {}
    x = _x("x", *shape)
    args = []
    if op == "dev.rmsnorm":
        args = [_const(p, "g", 1 + 0.1 * rng.standard_normal(shape[-1]))]
    elif op == "dev.layernorm":
        args = [_const(p, "g", 1 + 0.1 * rng.standard_normal(shape[-1])),
                _const(p, "b", 0.1 * rng.standard_normal(shape[-1]))]
    elif op == "dev.rope":
        args = [_const(p, "tab", G.rope_table(64, shape[-1]))]
    y = call(op, call("dev.to_device", x), *args, **attrs)
    return Module({"forward": Function("forward", [x], call("dev.to_host", y))}, p)


def _binary_case(fn):
    a, b = _x("a", SEQ, D), _x("b", SEQ, D)
    y = call("dev.eltwise", call("dev.to_device", a), call("dev.to_device", b), fn=fn)
    return Module({"forward": Function("forward", [a, b], call("dev.to_host", y))}, {})


def _attention_case():
    q, k, v = _x("q", SEQ, H, HD), _x("k", SEQ, HKV, HD), _x("v", SEQ, HKV, HD)
    y = call("dev.attention", *(call("dev.to_device", t) for t in (q, k, v)), causal=True,
             scale=1 / math.sqrt(HD))
    return Module({"forward": Function("forward", [q, k, v], call("dev.to_host", y))}, {})


def _softmax_case():
    x = _x("x", H, SEQ, SEQ)
    y = call("dev.softmax", call("dev.to_device", x), causal=True)
    return Module({"forward": Function("forward", [x], call("dev.to_host", y))}, {})


CASES = {
    "mvm-int4": lambda r: _mvm_case(r),
    "mvm-int8-bias-relu": lambda r: _mvm_case(r, "int8", bias=True, relu=True),
    "mvm-fp16-res-add": lambda r: _mvm_case(r, "fp16", res="add"),
    "mvm-int4-res-mul": lambda r: _mvm_case(r, res="mul"),
    "mvm-argmax": lambda r: _mvm_case(r, argmax=True),
    "rmsnorm": lambda r: _unary_case(r, "dev.rmsnorm", eps=1e-5),
    "layernorm": lambda r: _unary_case(r, "dev.layernorm", eps=1e-5),
    "act-silu": lambda r: _unary_case(r, "dev.act", fn="silu"),
    "act-gelu": lambda r: _unary_case(r, "dev.act", fn="gelu"),
    "rope": lambda r: _unary_case(r, "dev.rope", shape=(SEQ, H, HD)),
    "eltwise-add": lambda r: _binary_case("add"),
    "eltwise-sub": lambda r: _binary_case("sub"),
    "eltwise-mul": lambda r: _binary_case("mul"),
    "softmax-causal": lambda r: _softmax_case(),
    "attention-gqa": lambda r: _attention_case(),
}


def _inputs(mod, n, rng):
    env = {"seq": n}
    return [rng.standard_normal([sym.evaluate(d, env) for d in p.type.shape]).astype(np.float32)
            for p in mod["forward"].params]


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference_kernels_bit_for_bit(case, rng):
    mod = CASES[case](rng)
    cm = dlavm_compile(mod, target=TARGET)
    for n in LENGTHS:
        xs = _inputs(mod, n, rng)
        got = cm.run(*xs)[0]
        want = run_function(mod, "forward", [torch.from_numpy(x) for x in xs])
        want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
        assert got.shape == want.shape, (case, n)
        np.testing.assert_array_equal(got, want, err_msg=f"{case} at seq={n}")


def test_mvm_tiles_the_token_axis_by_the_activation_buffer():
    cm = dlavm_compile(_mvm_case(np.random.default_rng(0)), target=TARGET)
    (st,) = cm.manifest["streams"].values()
    assert st["count"] == math.ceil(40 / 16)  # K=32 -> 1024 / 64 = 16 tokens per tile
    assert len(st["guards"]) == 2  # tiles 2 and 3 run only for seq > 16, > 32


def test_numpy_formulas_agree_within_fp16_tolerance(rng):
    """Independent of the reference kernels: the attention and rope lowering vs float64 formulas."""
    mod = _attention_case()
    cm = dlavm_compile(mod, target=TARGET)
    for n in (1, 17, 40):
        q, k, v = (G.h16(x) for x in _inputs(mod, n, rng))
        got = cm.run(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))[0]
        np.testing.assert_allclose(got, G.r_attn(q, k, v), atol=2e-3, rtol=2e-3)
    mod = _unary_case(rng, "dev.rope", shape=(SEQ, H, HD))
    cm = dlavm_compile(mod, target=TARGET)
    x = G.h16(rng.standard_normal((9, H, HD)))
    np.testing.assert_allclose(cm.run(x.astype(np.float32))[0], G.r_rope(x, mod.params["tab"], 0), atol=2e-3)


def test_unsupported_weight_format_is_refused_naming_the_target(rng):
    int4_only = TARGET.replace(name="tiny-int4", weight_formats=("int4",))
    from dlavm.task.lower import LoweringError
    with pytest.raises(LoweringError, match=r"weight format 'fp16' is not supported by target 'tiny-int4'"):
        dlavm_compile(_mvm_case(rng, "fp16"), target=int4_only, weights="int4")


def test_host_op_on_a_device_tensor_is_refused():
    from dlavm.task.lower import LoweringError
    x = _x("x", SEQ, D)
    y = call("exp", call("dev.act", call("dev.to_device", x), fn="silu"))
    mod = Module({"forward": Function("forward", [x], y)}, {})
    with pytest.raises(LoweringError, match="insert dev.to_host"):
        dlavm_compile(mod, target=TARGET)
