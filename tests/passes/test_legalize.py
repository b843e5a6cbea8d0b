"""Each legalization pattern fires on a minimal graph, keeps the values, and a pattern that
cannot apply leaves the op on the host with a reason (never a crash)."""
import math

import numpy as np
import pytest
import torch

from dlavm import sym
from dlavm.models import import_model
from dlavm.ir import Call, Constant, Function, Module, PassManager, TensorType, Var, call, count_ops, post_order
from dlavm.passes import device_pipeline, fold_views, fold_weights, fuse, legalize, quantize
from dlavm.passes.fold import evaluate
from dlavm.passes.legalize import legalize_patterns
from dlavm.reference import run_function

SEQ = sym.Var("seq", 1, 16)
RNG = np.random.default_rng(0)
PIPE = [legalize, fuse, fold_weights, fold_views, quantize("fp16")]


def W(name, *shape, weights):
    weights[name] = RNG.standard_normal(shape).astype(np.float32) * 0.2
    return Constant(name, TensorType(shape, "float32"))


def X(name="x", *shape):
    return Var(name, TensorType(shape or (1, SEQ, 32), "float32"))


def _compile(body, params, weights):
    mod = Module(params=weights)
    mod.add(Function("f", list(params), body))
    return mod, PassManager(PIPE).run(mod)


def _check(mod, out, seqs=(1, 5, 16), tol=1e-2):
    """The device graph computes what the original does (fp16 weights, fp16 activations)."""
    for s in seqs:
        g = torch.Generator().manual_seed(s)
        ins = []
        for p in mod["f"].params:
            shape = [s if d == SEQ else int(d) for d in p.type.shape]
            ins.append(torch.randn(shape, generator=g))
        want = run_function(mod, "f", ins)
        got = run_function(out, "f", ins)
        if want.is_floating_point():
            assert (got - want).abs().max() <= tol * max(1.0, want.abs().max().item())
        else:
            assert torch.equal(got, want)


def _fired(out, rule):
    return out.attrs["legalize_stats"].get(rule, 0) + out.attrs.get("fuse_stats", {}).get(rule, 0)


def _host(out):
    return {n.op.name for n in post_order(out["f"].body)
            if isinstance(n, Call) and not n.op.name.startswith("dev.") and n.op.name != "reshape"}


def test_every_pattern_has_a_name_op_and_doc():
    names = [p.name for p in legalize_patterns()]
    assert len(names) == len(set(names))
    assert all(p.doc and p.ops for p in legalize_patterns())


@pytest.mark.parametrize("bias", [False, True])
def test_linear_to_mvm(bias):
    w, x = {}, X()
    args = [x, W("w", 48, 32, weights=w)] + ([W("b", 48, weights=w)] if bias else [])
    mod, out = _compile(call("linear", *args), [x], w)
    assert _fired(out, "linear->mvm") == 1 and not _host(out)
    (mvm,) = [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.mvm"]
    assert mvm.attrs["bias"] is bias
    _check(mod, out)


def test_relu_and_argmax_fuse_into_mvm():
    w, x = {}, X()
    h = call("relu", call("linear", x, W("w1", 64, 32, weights=w), W("b1", 64, weights=w)))
    body = call("argmax", call("linear", h, W("w2", 40, 64, weights=w)), axis=-1, keepdim=False)
    mod, out = _compile(body, [x], w)
    assert _fired(out, "relu->mvm.relu") == 1 and _fired(out, "argmax->mvm.argmax") == 1
    assert count_ops(out["f"]) == {"dev.mvm": 2, "dev.to_device": 1, "dev.to_host": 1}
    assert out["f"].body.type.dtype == "int64"
    _check(mod, out)


def test_slice_of_linear_splits_the_weight():
    w, x = {}, X()
    y = call("linear", x, W("w", 96, 32, weights=w), W("b", 96, weights=w))
    body = call("add", call("slice", y, axis=2, start=0, end=48, step=1),
                call("slice", y, axis=2, start=48, end=96, step=1))
    mod, out = _compile(body, [x], w)
    assert _fired(out, "slice-of-linear") == 2
    assert sorted(out.params) == ["b:slice0_0_48_1", "b:slice0_48_96_1", "w:slice0_0_48_1", "w:slice0_48_96_1"]
    assert out.attrs["param_recipes"]["w:slice0_48_96_1"]["source"] == "w"
    _check(mod, out)


def _rms(x, g, eps=1e-5, squares="pow"):
    sq = call("pow", x, 2) if squares == "pow" else call("mul", x, x)
    r = call("rsqrt", call("add", call("mean", sq, axes=(-1,), keepdim=True), eps))
    return call("mul", g, call("mul", x, r))


@pytest.mark.parametrize("form", ["pow", "mul", "op"])
def test_rmsnorm_op_and_decomposed_forms(form):
    w, x = {}, X()
    g = W("g", 32, weights=w)
    body = call("rms_norm", x, g, ndim=1, eps=1e-5) if form == "op" else _rms(x, g, squares=form)
    mod, out = _compile(body, [x], w)
    assert count_ops(out["f"]).get("dev.rmsnorm") == 1 and not _host(out)
    _check(mod, out)


def test_layernorm_and_activations():
    w, x = {}, X()
    h = call("layer_norm", x, W("g", 32, weights=w), W("b", 32, weights=w), ndim=1, eps=1e-5)
    h = call("softmax", call("sigmoid", call("silu", call("gelu", h, approximate="none"))), axis=-1)
    mod, out = _compile(h, [x], w)
    assert count_ops(out["f"]) == {"dev.act": 3, "dev.layernorm": 1, "dev.softmax": 1, "dev.to_device": 1,
                                   "dev.to_host": 1}
    _check(mod, out)


def _gelu_tanh(x):
    inner = call("mul", call("add", x, call("mul", call("pow", x, 3.0), 0.044715)), math.sqrt(2 / math.pi))
    return call("mul", call("mul", x, 0.5), call("add", call("tanh", inner), 1.0))


def test_gelu_tanh_formula_maps_to_the_gelu_table():
    w, x = {}, X()
    mod, out = _compile(_gelu_tanh(call("linear", x, W("w", 64, 32, weights=w))), [x], w)
    assert _fired(out, "gelu-tanh-decomposed") == 1 and not _host(out)
    # tanh-GELU vs the erf-GELU table: < 1e-3 absolute on these magnitudes (doc/passes.md)
    _check(mod, out, tol=2e-3)


def test_eltwise_and_fusions():
    w, x = {}, X()
    up = call("linear", x, W("up", 64, 32, weights=w))
    gate = call("silu", call("linear", x, W("gate", 64, 32, weights=w)))
    body = call("add", x, call("linear", call("mul", gate, up), W("down", 32, 64, weights=w)))
    mod, out = _compile(body, [x], w)
    assert _fired(out, "swiglu->mvm.res_mul") == 1 and _fired(out, "residual-add->mvm.res_add") == 1
    assert "dev.eltwise" not in count_ops(out["f"])
    _check(mod, out)
    # a sub of two computed values stays an eltwise on the device
    mod, out = _compile(call("sub", call("linear", x, W("a", 32, 32, weights=w)), x), [x], w)
    assert count_ops(out["f"]).get("dev.eltwise") == 1
    _check(mod, out)


def _rope_tables(d, weights):
    inv = Constant("inv_freq", TensorType((d // 2,), "float32"))
    weights["inv_freq"] = (1.0 / 10000 ** (np.arange(0, d, 2) / d)).astype(np.float32)
    pos = call("cast", call("reshape", call("arange", start=0, end=SEQ, step=1, dtype="int64"), shape=(1, SEQ, 1)),
               dtype="float32")
    emb = call("concat", call("mul", pos, inv), call("mul", pos, inv), axis=-1)
    return [call("reshape", call(f, emb), shape=(1, 1, SEQ, d)) for f in ("cos", "sin")]


def _rope(x, cos, sin, d):
    rot = call("concat", call("neg", call("slice", x, axis=3, start=d // 2, end=d, step=1)),
               call("slice", x, axis=3, start=0, end=d // 2, step=1), axis=-1)
    return call("add", call("mul", x, cos), call("mul", rot, sin))


def _heads(x, h, d):
    return call("permute", call("reshape", x, shape=(1, SEQ, h, d)), dims=(0, 2, 1, 3))


def _attention_graph(w, mask=None, causal=False, rope=True, x=None):
    x = x or X()
    d, h, hkv = 8, 4, 2
    q = _heads(call("linear", x, W("wq", h * d, 32, weights=w)), h, d)
    k = _heads(call("linear", x, W("wk", hkv * d, 32, weights=w)), hkv, d)
    v = _heads(call("linear", x, W("wv", hkv * d, 32, weights=w)), hkv, d)
    if rope:
        cos, sin = _rope_tables(d, w)
        q, k = _rope(q, cos, sin, d), _rope(k, cos, sin, d)
    rep = [call("reshape", call("expand", call("reshape", t, shape=(1, hkv, 1, SEQ, d)), shape=(1, hkv, 2, SEQ, d)),
                shape=(1, h, SEQ, d)) for t in (k, v)]
    extra = [mask] if mask is not None else []
    a = call("attention", q, *rep, *extra, causal=causal, scale=1 / math.sqrt(d))
    return call("reshape", call("permute", a, dims=(0, 2, 1, 3)), shape=(1, SEQ, h * d)), x


def _positions(shape):
    return call("reshape", call("arange", start=0, end=SEQ, step=1, dtype="int64"), shape=shape)


def test_rope_and_gqa_attention_with_causal_mask():
    w = {}
    mask = call("le", _positions((1, 1, 1, SEQ)), _positions((1, 1, SEQ, 1)))   # key j <= query i
    body, x = _attention_graph(w, mask=mask)
    mod, out = _compile(body, [x], w)
    ops = count_ops(out["f"])
    assert ops["dev.rope"] == 2 and ops["dev.attention"] == 1 and not _host(out)
    (att,) = [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.attention"]
    assert att.attrs["causal"] and att.args[1].type.shape[1] == 2          # GQA: kv heads kept
    table = [n for n in post_order(out["f"].body) if isinstance(n, Constant) and n.name.startswith("dlavm.rope")]
    assert table[0].type.shape == (16, 8) and out.params[table[0].name].dtype == np.float32
    _check(mod, out)


def test_attention_causal_attribute_without_mask():
    w = {}
    body, x = _attention_graph(w, causal=True, rope=False)
    mod, out = _compile(body, [x], w)
    assert count_ops(out["f"])["dev.attention"] == 1 and not _host(out)
    _check(mod, out)


def test_full_mask_probed_at_one_query_is_full_attention():
    # a keep-everything (bidirectional, BERT-like) mask: at seq = 1 it equals the causal mask too, which
    # must not make it "change kind with the sequence length"
    w = {}
    mask = call("ge", call("add", _positions((1, 1, 1, SEQ)), _positions((1, 1, SEQ, 1))), 0)  # i + j >= 0
    body, x = _attention_graph(w, mask=mask, rope=False)
    mod, out = _compile(body, [x], w)
    (att,) = [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.attention"]
    assert not att.attrs["causal"] and not _host(out)
    _check(mod, out)


@pytest.mark.parametrize("kind", ["anti-causal", "sliding-window", "from-input"])
def test_non_causal_mask_stays_on_the_host_with_a_reason(kind):
    w = {}
    x = X()
    if kind == "anti-causal":
        mask = call("ge", _positions((1, 1, 1, SEQ)), _positions((1, 1, SEQ, 1)))
    elif kind == "sliding-window":
        diff = call("sub", _positions((1, 1, SEQ, 1)), _positions((1, 1, 1, SEQ)))
        mask = call("bitwise_and", call("ge", diff, 0), call("lt", diff, 4))
    else:
        mask = call("gt", call("reshape", call("slice", x, axis=2, start=0, end=1, step=1), shape=(1, 1, 1, SEQ)), 0.0)
    body, x = _attention_graph(w, mask=mask, rope=False, x=x)
    mod, out = _compile(body, [x], w)
    assert "attention" in _host(out)
    report = PassManager(device_pipeline("fp16")).run(mod).attrs["host_ops"]
    (att,) = [h for h in report if h["op"] == "attention"]
    assert ("depends on the inputs" if kind == "from-input" else "neither causal nor full") in att["reason"]
    _check(mod, out)   # the host fallback still computes the right values


def test_compile_time_evaluator_agrees_with_the_reference_executor():
    mod = import_model("tiny-llama", max_seq=16).module
    fn = mod["forward"]
    att = next(n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == "attention")
    cos = next(n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == "cos")
    seq = fn.params[0].type.shape[1]
    for node in (att.args[3], cos):
        probe = Module(params=mod.params)
        probe.add(Function("g", [Var("n", TensorType((seq,), "int64"))], node))
        for n in (1, 7, 16):
            want = run_function(probe, "g", [torch.zeros(n, dtype=torch.int64)]).numpy()
            got = evaluate(node, mod.params, {seq: n})
            assert got.dtype == want.dtype and np.allclose(got, want, rtol=1e-6, atol=1e-6)


def test_unsupported_model_compiles_with_host_fallback():
    """The CNN's convolutions run as im2col + dev.mvm; pooling and the global mean stay on the host."""
    mod = PassManager(device_pipeline("int8")).run(import_model("cnn").module)
    ops = {h["op"] for h in mod.attrs["host_ops"]}
    assert "conv2d" not in ops and count_ops(mod["forward"])["dev.mvm"] == 3
    reasons = {h["op"]: h["reason"] for h in mod.attrs["host_ops"]}
    assert reasons["max_pool2d"] == "the device has no pooling unit"
    assert reasons["im2col"].startswith("im2col / NCHW layout of a convolution")


class _PaddedAttention(torch.nn.Module):
    """Self-attention whose mask comes from the caller (a padding mask): not size-only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.o = torch.nn.Linear(32, 96), torch.nn.Linear(32, 32)

    def forward(self, x, keep):
        q, k, v = (t.reshape(1, -1, 4, 8).permute(0, 2, 1, 3) for t in self.qkv(x).split(32, -1))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.o(a.permute(0, 2, 1, 3).reshape(1, -1, 32))


def test_torch_model_with_a_padding_mask_keeps_attention_on_the_host():
    from dlavm.frontend.torch import from_torch
    model = _PaddedAttention().eval()
    seq = torch.export.Dim("seq", min=2, max=16)
    x, keep = torch.randn(1, 6, 32), torch.tensor([[True] * 4 + [False] * 2])
    mod = from_torch(model, (x, keep), {"x": {1: seq}, "keep": {1: seq}})
    out = PassManager(device_pipeline("fp16")).run(mod)
    (att,) = [h for h in out.attrs["host_ops"] if h["op"] == "attention"]
    assert "depends on the inputs" in att["reason"]
    assert count_ops(out["forward"])["dev.mvm"] == 4      # the projections still run on the device
    with torch.no_grad():
        want = model(x, keep)
    got = run_function(out, "forward", [x, keep])
    assert (got - want).abs().max() <= 1e-2 * want.abs().max()


# ------------------------------------------------------------------------------------------------
# the pattern object, rule priorities and statistics


def test_pattern_captures_commutative_operands_alternatives_and_repeated_names():
    from dlavm.passes.patterns_match import Pat
    x, y = X("x"), X("y")
    sq = Pat("mul", Pat.any("a"), Pat.any("a"))           # a name captured twice: the same node
    assert sq.match(call("mul", x, x)) == {"a": x}
    assert sq.match(call("mul", x, y)) is None
    half = Pat("mul", Pat.any("v"), Pat.lit(0.5), commutative=True, name="root")
    node = call("mul", 0.5, x)
    assert half.match(node) == {"v": x, "root": node}     # literal first: matched in the other order
    assert half.match(call("mul", x, 0.25)) is None
    last = Pat("softmax", Pat.any("s"), attrs={"axis": lambda a: a in (-1, 2)})
    assert last.match(call("softmax", x, axis=-1)) is not None and last.match(call("softmax", x, axis=1)) is None
    either = Pat.alt(Pat("pow", Pat.any("b"), Pat.lit(2)), Pat("mul", Pat.any("b"), Pat.any("b")))
    assert either.ops == ("pow", "mul")
    assert either.match(call("pow", x, 2)) == {"b": x} and either.match(call("mul", y, y)) == {"b": y}
    typed = Pat.any("t", where=lambda n: n.type.dtype == "float16")
    assert typed.match(x) is None
    # every way of matching, in order: both operand orders of a commutative op
    both = Pat("add", Pat.any("p"), Pat.any("q"), commutative=True)
    assert [m["p"] for m in both.matches(call("add", x, y))] == [x, y]


def test_a_rule_does_not_rely_on_table_order():
    """add/mul->eltwise state their own preconditions: tried before everything else, they still
    leave the GELU formula and the decomposed RMSNorm to the rules matched at their roots."""
    from dataclasses import replace

    from dlavm.passes.legalize import legalize_function
    from dlavm.passes.patterns_match import MatchContext
    eltwise_first = [replace(p, priority=-1) if p.name.endswith("->eltwise") else p for p in legalize_patterns()]
    w, x = {}, X()
    h = _gelu_tanh(call("linear", x, W("w", 32, 32, weights=w)))
    body = _rms(h, W("g", 32, weights=w))
    mod = Module(params=w)
    mod.add(Function("f", [x], body))
    ctx = MatchContext(dict(w), {})
    out = legalize_function(mod["f"], ctx, eltwise_first)
    assert ctx.stats.get("gelu-tanh-decomposed") == 1 and ctx.stats.get("rmsnorm-decomposed") == 1
    assert not any(k.endswith("->eltwise") for k in ctx.stats)
    assert count_ops(out).get("dev.eltwise") is None


def test_rule_hits_and_time_are_recorded_per_pass():
    from dlavm.ir import PassContext, format_records
    w, x = {}, X()
    mod = Module(params=w)
    mod.add(Function("f", [x], call("relu", call("linear", x, W("w", 48, 32, weights=w)))))
    ctx = PassContext()
    PassManager([legalize, fuse]).run(mod, ctx)
    rules = {r.name: r for r in ctx.records[0].rules}
    assert rules["linear->mvm"].hits == 1 and rules["relu->mvm.relu"].hits == 1
    assert rules["linear->mvm"].tries >= 1 and rules["linear->mvm"].seconds > 0
    assert rules["layer_norm->layernorm"].tries == 0
    table = format_records(ctx.records)
    assert "linear->mvm" in table and "1 hits" in table and "layer_norm->layernorm" not in table


def test_a_device_op_without_its_spec_is_an_error_naming_the_package():
    from dlavm.ir import IRError, get_op
    from dlavm.reference.executor import ExecutionError
    from dlavm.task.rules import find_rule
    op = get_op("dev.softmax")
    spec = op.get_attr("spec")
    x = X("x", 4, 8)
    mod = Module()
    mod.add(Function("f", [x], call("dev.to_host", call("dev.softmax", call("dev.to_device", x)))))
    op.set_attr("spec", None)
    try:
        with pytest.raises(ExecutionError, match=r"'dev.softmax' has no device-op spec .*import dlavm.devops"):
            run_function(mod, "f", [torch.zeros(4, 8)])
        with pytest.raises(IRError, match=r"'dev.softmax' has no device-op spec \(lowering\)"):
            find_rule("dev.softmax", None)
    finally:
        op.set_attr("spec", spec)


def test_a_lowering_rule_may_emit_only_the_instructions_its_spec_declares():
    from dataclasses import replace

    from dlavm.ir import get_op
    from dlavm.target import get_target
    from dlavm.task.lower import LoweringError
    from dlavm.compiler import compile as dlavm_compile
    op = get_op("dev.softmax")
    spec = op.get_attr("spec")
    x = X("x", 4, 8)
    mod = Module()
    mod.add(Function("f", [x], call("dev.to_host", call("dev.softmax", call("dev.to_device", x)))))
    op.set_attr("spec", replace(spec, emits=("act",)))
    try:
        with pytest.raises(LoweringError, match=r"dev.softmax: lowering rule 'lower' emitted \['softmax'\]"):
            dlavm_compile(mod, target=get_target("tiny"))
    finally:
        op.set_attr("spec", spec)
