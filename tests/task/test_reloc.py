"""Lowering runs once with symbolic buffer handles; relocation resolves every one of them."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm import sym
from dlavm.backend.build import build_module
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from dlavm.target import get_target
from dlavm.task import lower as lower_mod
from dlavm.task.ir import Emit, For, If
from dlavm.task.reloc import BufRef, RelocationError, has_refs, relocate_value, resolver

SEQ = sym.Var("seq", 1, 40)


def _two_function_module(rng):
    """Two entries that share the weight ``w`` (as prefill/decode entries of an LLM do)."""
    w = rng.standard_normal((24, 32)).astype(np.float32)
    params = {"w": w}
    fns = {}
    for name, m in (("a", SEQ), ("b", sym.const(1))):
        x = Var("x", TensorType((m, sym.const(32)), "float32"))
        wc = Constant("w", TensorType((sym.const(24), sym.const(32)), "float32"))
        y = call("dev.mvm", call("dev.to_device", x), wc, wfmt="int4")
        fns[name] = Function(name, [x], call("dev.to_host", y, dtype="float32"))
    return Module(fns, params)


def _walk(stmts):
    for s in stmts:
        if isinstance(s, Emit):
            yield s
        elif isinstance(s, For):
            yield from _walk(s.body)
        elif isinstance(s, If):
            yield from _walk(s.then)
            yield from _walk(s.orelse)


def test_each_function_is_lowered_exactly_once(monkeypatch):
    calls = []
    real = lower_mod.lower_function

    def counting(ctx, fn):
        calls.append(fn.name)
        return real(ctx, fn)

    monkeypatch.setattr(lower_mod, "lower_function", counting)
    build_module(_two_function_module(np.random.default_rng(0)), get_target("tiny"))
    assert calls == ["a", "b"]


def test_no_handle_survives_relocation_and_shared_weights_share_an_address():
    b = build_module(_two_function_module(np.random.default_rng(0)), get_target("tiny"))
    weight_addrs = set()
    for lf in b.lowered:
        assert not has_refs(lf.values) and not has_refs([s.get("program") for s in lf.steps])
        for step in lf.steps:
            if step["kind"] == "stream":
                for e in _walk(step["program"].body):
                    assert not has_refs(e)
                    if e.op == "mvm":
                        weight_addrs.add(e.fields["w"])
    assert len(weight_addrs) == 1


def test_float_master_weights_take_no_device_memory():
    """The weights pool holds the packed int4 blob and its scales, never the float32 master weight."""
    mod = _two_function_module(np.random.default_rng(0))
    ctx = lower_mod.LowerContext(get_target("tiny"), mod.params)
    _, plans = lower_mod.lower_module(ctx, mod)
    for plan in plans.values():
        pooled = {k for k in plan.offsets if isinstance(k, str) and plan.pool_of[k] == "weights"}
        assert pooled == {"w.int4", "w.int4.scale"}
        assert not any(isinstance(k, Constant) for k in plan.offsets)


def test_handle_arithmetic_keeps_the_buffer_and_adds_offsets():
    i = sym.Var("i", 0, 3)
    r = BufRef("blob") + 64 + i * 32
    assert r.key == "blob" and sym.as_expr(r.offset - i * 32) == sym.const(64)
    with pytest.raises(TypeError):
        _ = BufRef("a") + BufRef("b")

    class Plan:
        def address(self, key):
            return {"blob": 4096}[key]

    resolved = relocate_value({"x": r, "n": 3, "seq": (r, 1)}, resolver(Plan(), "f"))
    assert sym.as_expr(resolved["x"] - i * 32) == sym.const(4096 + 64)
    assert resolved["n"] == 3 and resolved["seq"][1] == 1
    with pytest.raises(RelocationError, match="no address was planned"):
        relocate_value(BufRef("missing"), resolver(Plan(), "f"))
    with pytest.raises(RelocationError, match="belongs to function 'g'"):
        relocate_value(BufRef("blob", "g"), resolver(Plan(), "f"))
