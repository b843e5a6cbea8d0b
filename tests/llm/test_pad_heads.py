"""Head padding (dlavm/passes/pad_heads.py): attention head dims that are not a multiple of the
device's 16 are padded with zero lanes, and the model computes the same function.

* the padding helpers: rotate-half and interleaved RoPE give the same real lanes padded or not
  (ISA formula in float64), the padded lanes stay zero;
* ``fake_quantized_params`` reproduces exactly the padded weight the device packs, also when the
  padding moves inputs across int4 groups of 128 (output projection, K axis);
* tiny-qwen2-pad (hidden 96, 8q/2kv heads, D=12, qkv bias) and a tiny Llama with D=24 (no bias):
  the device graph has padded attention (D' = 16 / 32, scale 1/sqrt(D)); on the reference executor
  it matches torch with the same fake-quantised weights (5e-3 of the output scale, as
  tests/passes/test_device_pipeline.py);
* generation on the simulator: 32 greedy tokens equal torch's (HF KV cache, same fake-quantised
  weights) token for token in fp16 and int8; the KV caches are sized with D'.
"""
import copy
import math

import numpy as np
import pytest
import torch

from dlavm.frontend.torch import from_torch
from dlavm.ir import Call, Constant, Function, Module, PassManager, Var, call, post_order
from dlavm.ir.types import TensorType
from dlavm.llm import compile_llm
from dlavm.llm.reference import host_tables, quantized_torch_model, torch_greedy
from dlavm.runtime.generate import Generator
from dlavm.models.builtin import CausalLMLogits
from dlavm.passes import device_pipeline, fake_quant, fake_quantized_params
from dlavm.passes.pad_heads import pad_axis, pad_rope_table, unpad_axis
from dlavm.reference import run_function
from tests.llm.conftest import compiled, imported, prompt_of, torch_model

TOL = 5e-3
SEQS = (1, 7, 40)
MAX_CTX = 48
NEW = 32


def _calls(fn, op):
    return [n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == op]


# ------------------------------------------------------------------------------------------------
# helpers: layout and RoPE pairing

def _rope_isa(x, table, interleaved):
    """doc/isa.md rope on x [M, H, D] with table [M, D] (D/2 cos, D/2 sin), float64."""
    d = x.shape[-1]
    c, s = table[:, None, :d // 2], table[:, None, d // 2:]
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x[..., :d // 2], x[..., d // 2:]
    y1, y2 = x1 * c - x2 * s, x2 * c + x1 * s
    y = np.empty_like(x)
    if interleaved:
        y[..., 0::2], y[..., 1::2] = y1, y2
    else:
        y[..., :d // 2], y[..., d // 2:] = y1, y2
    return y


@pytest.mark.parametrize("d,interleaved", [(12, False), (24, False), (12, True), (40, True)])
def test_padding_keeps_the_rope_pairs_and_zero_lanes(d, interleaved):
    rng = np.random.default_rng(0)
    h, m = 3, 5
    dp = -(-d // 16) * 16
    layout = "end" if interleaved else "halves"
    x = rng.standard_normal((m, h * d))
    ang = rng.standard_normal((m, d // 2))
    table = np.concatenate([np.cos(ang), np.sin(ang)], 1).astype(np.float32)  # the f32 table
    xp = pad_axis(x, 1, h, d, dp, layout)
    assert xp.shape == (m, h * dp) and np.array_equal(unpad_axis(xp, 1, h, d, dp, layout), x)
    assert np.count_nonzero(xp) == np.count_nonzero(x)
    tp = pad_rope_table(table, d, dp)
    assert np.isfinite(tp).all() and np.array_equal(tp[:, d // 2:dp // 2], np.ones((m, (dp - d) // 2)))
    want = _rope_isa(x.reshape(m, h, d), table, interleaved).reshape(m, h * d)
    got = _rope_isa(xp.reshape(m, h, dp), tp, interleaved).reshape(m, h * dp)
    assert np.array_equal(unpad_axis(got, 1, h, d, dp, layout), want)
    assert np.array_equal(got, pad_axis(unpad_axis(got, 1, h, d, dp, layout), 1, h, d, dp, layout))


def test_fake_quantized_params_is_the_padded_weight_the_device_packs():
    """16 heads of 12: the output projection's K grows 192 -> 256, so its int4 groups of 128 hold
    different inputs than the unpadded weight's; the reference must be fake_quant(padded)."""
    rng = np.random.default_rng(1)
    h, d, dp, n = 16, 12, 16, 8
    w = rng.standard_normal((n, h * d)).astype(np.float32)
    w[:, 100] = 9.0   # an outlier that lands in a different group once padded
    wp = pad_axis(w, 1, h, d, dp, "halves")
    name = "o.weight.padded_heads"
    x = Var("x", TensorType((4, h * dp), "float16"))
    body = call("dev.to_host", call("dev.mvm", x, Constant(name, TensorType((n, h * dp), "float32")), wfmt="int4",
                                      int4_group=128))
    mod = Module(params={name: wp}, attrs={"param_recipes": {name: {"source": "o.weight", "steps": [
        ("pad_heads", {"axis": 1, "heads": h, "d": d, "d_pad": dp, "layout": "halves"})]}}})
    mod.add(Function("forward", [x], body, {}))
    got = fake_quantized_params(mod, {"o.weight": w})["o.weight"]
    device = fake_quant(wp, "int4", 128)
    assert np.array_equal(pad_axis(got, 1, h, d, dp, "halves"), device)      # exactly the device's values
    assert not np.array_equal(got, fake_quant(w, "int4", 128))                      # not the unpadded grouping


# ------------------------------------------------------------------------------------------------
# models

def _tiny_llama_d24(max_seq):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=96, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_seq,
                      rms_norm_eps=1e-5)
    return CausalLMLogits(LlamaForCausalLM(cfg)).eval()


_MODELS: dict = {}


def _model(name):
    """(torch wrapper, imported module) at MAX_CTX."""
    if name not in _MODELS:
        if name == "tiny-llama-d24":
            wrapper = _tiny_llama_d24(MAX_CTX)
            ids = torch.zeros((1, 8), dtype=torch.long)
            seq = torch.export.Dim("seq", min=1, max=MAX_CTX)
            _MODELS[name] = (wrapper, from_torch(wrapper, (ids,), {"input_ids": {1: seq}}))
        else:
            r = imported(name, MAX_CTX)
            _MODELS[name] = (r.spec.module, r.module)
    return _MODELS[name]


PADDED = {"tiny-qwen2-pad": (8, 2, 12, 16, True), "tiny-llama-d24": (4, 2, 24, 32, False)}


@pytest.mark.parametrize("name", sorted(PADDED))
def test_device_graph_has_padded_attention(name):
    h, hkv, d, dp, bias = PADDED[name]
    mod = PassManager(device_pipeline("int8")).run(_model(name)[1])
    fn = mod["forward"]
    atts = _calls(fn, "dev.attention")
    assert len(atts) == 2
    for a in atts:
        q, k, v = a.args
        assert tuple(int(s) for s in q.type.shape[1:]) == (h, dp)
        assert tuple(int(s) for s in k.type.shape[1:]) == tuple(int(s) for s in v.type.shape[1:]) == (hkv, dp)
        assert a.attrs["scale"] == pytest.approx(1 / math.sqrt(d), rel=1e-12)
    assert mod.attrs["padded_heads"] == [{"heads": h, "kv_heads": hkv, "d": d, "d_pad": dp, "layout": "halves"}] * 2
    assert all(r.args[1].name.endswith(".padded_heads") and int(r.args[1].type.shape[1]) == dp
               for r in _calls(fn, "dev.rope"))
    recipes = mod.attrs["param_recipes"]
    padded = [k for k in mod.attrs["weight_formats"] if k.endswith(".padded_heads")]
    assert len(padded) == 2 * 4      # q, k, v, o per layer
    assert all(recipes[k]["source"] == k[:-len(".padded_heads")] for k in padded)
    assert sum(k.endswith("bias.padded_heads") for k in mod.params) == (6 if bias else 0)
    assert not any(k.endswith("proj.weight") and "self_attn" in k for k in mod.params)   # originals replaced


@pytest.mark.parametrize("fmt", ["fp16", "int8", "int4"])
@pytest.mark.parametrize("name", sorted(PADDED))
def test_padded_device_graph_matches_torch_with_the_same_weights(name, fmt, record_property):
    wrapper, src = _model(name)
    mod = PassManager(device_pipeline(fmt)).run(src)
    tm = copy.deepcopy(wrapper)
    from dlavm.llm.reference import _set_weight
    for k, v in fake_quantized_params(mod, src.params).items():
        if (v != src.params[k]).any():
            _set_weight(tm, k, v)
    for seq in SEQS:
        x = (torch.tensor([prompt_of(seq, seed=seq)]),)
        with torch.no_grad():
            want = tm(*x)
            got = run_function(mod, "forward", x)
        err = (got - want).abs().max().item() / want.abs().max().item()
        record_property(f"{name}-{fmt}-seq{seq}", f"rel-to-scale err {err:.2e}")
        assert err <= TOL, f"{name} {fmt} seq={seq}: {err:.2e} > {TOL}"


# ------------------------------------------------------------------------------------------------
# generation on the simulator

def _compiled_and_torch(name, fmt):
    key = ("gen", name, fmt)
    if key not in _MODELS:
        if name == "tiny-llama-d24":
            wrapper, src = _model(name)
            cm = compile_llm(src, target="vcu128", weights=fmt, max_seq=MAX_CTX, name="tiny_llama_d24")
            tm = quantized_torch_model(wrapper, cm.device_module, src.params, host_tables(cm))
        else:
            cm, tm = compiled(name, fmt, MAX_CTX), torch_model(name, fmt, MAX_CTX)
        _MODELS[key] = (cm, tm)
    return _MODELS[key]


@pytest.mark.parametrize("name,fmt", [("tiny-qwen2-pad", "fp16"), ("tiny-qwen2-pad", "int8"),
                                      ("tiny-llama-d24", "int8")])
def test_greedy_tokens_equal_torch_on_the_simulator(name, fmt):
    cm, tm = _compiled_and_torch(name, fmt)
    prompt = prompt_of(8, seed=1)
    want, want_logits = torch_greedy(tm, prompt, NEW)
    got = list(cm.generate(prompt, NEW))
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    if first is not None:   # only a near-tie may flip: torch's top-2 margin below the device's logits error
        row = Generator(cm.runtime()).step(prompt + want[:first], logits=True)   # the history torch saw
        w = want_logits[first]
        margin, err = float(np.diff(np.sort(w)[-2:])[0]), float(np.abs(row - w).max())
        assert margin <= err, f"{name} {fmt}: divergence at step {first}: margin {margin:.2e} > error {err:.2e}"
    h, hkv, d, dp, _ = PADDED[name]
    kv = cm.manifest.memory["kv"].buffers
    assert kv["kv.layer0.k"].size == hkv * MAX_CTX * dp * 2      # [HKV, max_ctx, D'] fp16
    assert all(int(a.args[1].type.shape[2]) == dp and a.attrs["cache"] is not None
               for a in _calls(cm.device_module["greedy"], "dev.attention"))


def test_attention_not_fed_by_projections_is_left_with_a_reason():
    from dlavm.passes import pad_heads_module
    q = Var("q", TensorType((4, 2, 12), "float16"))
    k = Var("k", TensorType((4, 2, 12), "float16"))
    v = Var("v", TensorType((4, 2, 12), "float16"))
    mod = Module(params={}, attrs={})
    mod.add(Function("forward", [q, k, v], call("dev.to_host", call("dev.attention", q, k, v, scale=0.5)), {}))
    out = pad_heads_module(mod)
    assert out["forward"] is mod["forward"] and "padded_heads" not in out.attrs
    (why,) = out.attrs["pad_heads_declined"]
    assert why["d"] == 12 and "projection" in why["reason"]
