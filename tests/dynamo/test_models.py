"""Real models under ``torch.compile(backend="dlavm")``: tiny random Hugging Face Llama, GPT-2 and BERT,
a CNN and a model with a graph break, each compared with torch eager and partitioned as
``dlavm.explain`` reports.

Tolerances: the device computes in fp16 (weights stored as fp16, activations rounded to fp16 between
device ops, fp32 accumulation in the matrix and reduction units), eager in fp32. One fp16 rounding is a
relative error of at most 2^-11 (4.9e-4); a two-layer transformer chains a few tens of them through
matmuls, norms and softmax, so its outputs (of magnitude 0.5 to 3 here) are compared with
``atol=2e-2, rtol=1e-2`` (about 1 % of the output scale; the measured worst errors are 3e-4 to 3e-3).
The CNN and the small graph-break model, with fewer chained roundings, use ``atol=5e-3, rtol=5e-3``.
A wrong op, a missing layer or stale weights move the outputs by their own scale, far past these.

The decoders use ``attn_implementation="sdpa"`` (what HF picks by default); Llama is also run with
"eager" attention, which adds a float32 causal mask holding ``finfo(float32).min``: the program's
host->device copy rounds it to fp16 -inf, and the device softmax must give 0 there (doc/isa.md 7.6: a
flat exterior entry of the exp table is a constant at -inf), not NaN. BERT without an attention mask
adds no mask, so its "eager" attention (``bmm`` / ``_softmax`` / ``bmm``) is tested as well.
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

import dlavm
import dlavm.dynamo

transformers = pytest.importorskip("transformers")

TF_TOL = {"atol": 2e-2, "rtol": 1e-2}       # fp16 device vs fp32 eager, two-layer transformers
SMALL_TOL = {"atol": 5e-3, "rtol": 5e-3}    # fp16 device vs fp32 eager, a few chained ops
VOCAB = 128
SDPA_CPU = "aten._scaled_dot_product_flash_attention_for_cpu"   # what F.scaled_dot_product_attention
#                                                                  becomes on CPU under AOTAutograd


def _ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(1000 * seed + n))


class CausalLM(nn.Module):
    """``input_ids -> logits`` of a HF causal LM, no KV cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False, return_dict=True).logits


class Encoder(nn.Module):
    """``input_ids -> last_hidden_state`` of a HF encoder (no attention mask: every token attends)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, return_dict=True).last_hidden_state


def tiny_llama(attention: str = "sdpa") -> nn.Module:
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   attn_implementation=attention)
    torch.manual_seed(0)
    return CausalLM(transformers.LlamaForCausalLM(cfg)).eval()


def tiny_gpt2() -> nn.Module:
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=0, eos_token_id=1, attn_implementation="sdpa")
    torch.manual_seed(0)
    return CausalLM(transformers.GPT2LMHeadModel(cfg)).eval()


def tiny_bert() -> nn.Module:
    # "eager" attention here (no mask is added without an attention_mask): the explicit
    # matmul / softmax / matmul of BertSelfAttention, so aten.bmm and aten._softmax reach the device.
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128, attn_implementation="eager")
    torch.manual_seed(0)
    return Encoder(transformers.BertModel(cfg)).eval()


class CNN(nn.Module):
    """conv / batch norm / relu / max pool / conv (stride 2) / batch norm / relu / global average pool / linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    m = CNN().eval()
    for bn in (m.b1, m.b2):   # statistics that are not the identity, so that batch norm is seen to apply
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m


class Gated(nn.Module):
    """A data-dependent Python branch: dynamo breaks the graph at the ``if``."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        h = torch.relu(self.l1(x))
        if h.mean() > 0.3:   # the graph break
            h = h * 2.0
        else:
            h = h - 1.0
        return self.l2(h).softmax(-1)


def _compiled(model, tmp_path, **kw):
    return torch.compile(model, backend="dlavm", options={"target": "tiny", "cache_dir": str(tmp_path)}, **kw)


def _eager(model, *inputs):
    with torch.no_grad():
        return model(*inputs)


def _device_ops(sub) -> int:
    return sum(where == "device" for _op, where in sub.placement)


# ---------------------------------------------------------------- Hugging Face transformers
def test_llama_runs_whole_on_the_device_and_matches_eager(tmp_path):
    model = tiny_llama()
    e = dlavm.explain(model, _ids(8), target="tiny", cache_dir=str(tmp_path))
    assert (e.graph_count, e.breaks, e.fallbacks) == (1, [], [])
    [sub] = e.subgraphs
    assert {"aten.embedding", "aten.mm", SDPA_CPU, "aten.rsqrt", "aten.silu", "aten.cos", "aten.sin"} <= set(sub.ops)
    assert sub.ops.count("aten.mm") == 15   # 2 x (q, k, v, o, gate, up, down) + lm_head
    assert sub.ops.count(SDPA_CPU) == 2
    # static sizes (torch.compile's first compilation): the causal mask and the RoPE tables are constants,
    # and attention and RoPE run on the device like the projections and norms; only the embedding gather
    # and a reshape stay on the host
    on_device = Counter(op.split("#")[0] for op, where in sub.placement if where == "device")
    assert on_device == {"dev.mvm": 15, "dev.rmsnorm": 5, "dev.rope": 4, "dev.attention": 2, "dev.act": 2}
    assert sorted({op for op, where in sub.placement if where != "device"}) == ["embedding", "reshape"]
    torch.testing.assert_close(e.outputs, _eager(model, _ids(8)), **TF_TOL)
    assert SDPA_CPU in str(e)

    compiled = _compiled(model, tmp_path)
    with torch.no_grad():
        for n in (8, 13):   # a new length is a new static graph (dynamo's guards), never a stale result
            torch.testing.assert_close(compiled(_ids(n, 1)), _eager(model, _ids(n, 1)), **TF_TOL)
    stats = dlavm.dynamo.STATS   # explain compiled length 8 into the same cache: the first call loads it
    assert (stats.compiles, stats.cache_hits, stats.device_calls, stats.eager_calls) == (2, 1, 3, 0)
    assert not stats.fallback_ops


def test_llama_dynamic_sequence_reuses_one_program_within_its_bound(tmp_path, dynamo_log):
    model = tiny_llama()
    compiled = _compiled(model, tmp_path, dynamic=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(_ids(8)), _eager(model, _ids(8)), **TF_TOL)
        compiles = dlavm.dynamo.STATS.compiles
        for n in (3, 13, 16):   # the bound picked for 8 is 16 (pick_bound)
            torch.testing.assert_close(compiled(_ids(n)), _eager(model, _ids(n)), **TF_TOL)
        assert dlavm.dynamo.STATS.compiles == compiles and dlavm.dynamo.STATS.recompiles == []
        torch.testing.assert_close(compiled(_ids(20)), _eager(model, _ids(20)), **TF_TOL)
    assert dlavm.dynamo.STATS.compiles == compiles + 1
    [reason] = dlavm.dynamo.STATS.recompiles
    assert "=20 is past the bound 16" in reason and reason in dynamo_log.text
    assert dlavm.dynamo.STATS.device_calls == 5 and dlavm.dynamo.STATS.eager_calls == 0
    # with dynamic=True dynamo passes the modules' float attributes (RMS norm eps, attention scale) as
    # 0-dim float64 graph inputs: their casts to float32 run in eager; no compute op falls back
    assert set(dlavm.dynamo.STATS.fallback_ops) <= {"prims.convert_element_type"}


def test_llama_eager_attention_with_a_float32_mask_matches_eager(tmp_path):
    # the mask's finfo(float32).min becomes fp16 -inf on the device: the softmax gives 0 there, not NaN
    model = tiny_llama("eager")
    e = dlavm.explain(model, _ids(9), target="tiny", cache_dir=str(tmp_path))
    assert (e.graph_count, e.breaks, e.fallbacks) == (1, [], [])
    [sub] = e.subgraphs
    assert sub.ops.count("aten._softmax") == 2 and sub.ops.count("aten.bmm") == 4
    assert not torch.isnan(e.outputs).any()
    torch.testing.assert_close(e.outputs, _eager(model, _ids(9)), **TF_TOL)


def test_gpt2_runs_whole_on_the_device_and_matches_eager(tmp_path):
    model = tiny_gpt2()
    e = dlavm.explain(model, _ids(9), target="tiny", cache_dir=str(tmp_path))
    assert (e.graph_count, e.breaks, e.fallbacks) == (1, [], [])
    [sub] = e.subgraphs
    assert {"aten.embedding", "aten.addmm", "aten.native_layer_norm", "aten.tanh", SDPA_CPU} <= set(sub.ops)
    assert sub.ops.count("aten.addmm") == 8   # 2 x (c_attn, c_proj, c_fc, mlp c_proj)
    assert sub.ops.count(SDPA_CPU) == 2
    assert _device_ops(sub) >= 8
    torch.testing.assert_close(e.outputs, _eager(model, _ids(9)), **TF_TOL)


def test_bert_eager_attention_runs_whole_on_the_device_and_matches_eager(tmp_path):
    model = tiny_bert()
    e = dlavm.explain(model, _ids(12), target="tiny", cache_dir=str(tmp_path))
    assert (e.graph_count, e.breaks, e.fallbacks) == (1, [], [])
    [sub] = e.subgraphs
    assert {"aten.embedding", "aten.addmm", "aten.bmm", "aten._softmax", "aten.gelu",
            "aten.native_layer_norm"} <= set(sub.ops)
    assert (sub.ops.count("aten.addmm"), sub.ops.count("aten.bmm"), sub.ops.count("aten._softmax")) == (12, 4, 2)
    assert _device_ops(sub) >= 12
    torch.testing.assert_close(e.outputs, _eager(model, _ids(12)), **TF_TOL)


# ---------------------------------------------------------------- plain torch models
def test_cnn_runs_whole_on_the_device_and_matches_eager(tmp_path):
    model = tiny_cnn()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    e = dlavm.explain(model, x, target="tiny", cache_dir=str(tmp_path))
    assert (e.graph_count, e.breaks, e.fallbacks) == (1, [], [])
    [sub] = e.subgraphs
    # max_pool2d reaches AOTAutograd as max_pool2d_with_indices (its indices unused in inference)
    assert {"aten.convolution", "aten._native_batch_norm_legit_no_training", "aten.relu",
            "aten.max_pool2d_with_indices", "aten.mean.dim", "aten.addmm"} <= set(sub.ops)
    assert sub.ops.count("aten.convolution") == 2
    assert _device_ops(sub) >= 2   # the convolutions (im2col on the host, the matrix unit on the device)
    torch.testing.assert_close(e.outputs, _eager(model, x), **SMALL_TOL)
    compiled = _compiled(model, tmp_path)
    y = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(compiled(y), _eager(model, y), **SMALL_TOL)


def test_graph_break_compiles_each_piece_and_both_branches_match_eager(tmp_path):
    torch.manual_seed(0)
    model = Gated().eval()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    e = dlavm.explain(model, x, target="tiny", cache_dir=str(tmp_path))
    assert len(e.breaks) == 1 and e.graph_count >= 2
    reason, where = e.breaks[0]
    assert "test_models.py" in where and "h.mean() > 0.3" in where
    assert e.fallbacks == []
    ops = [set(s.ops) for s in e.subgraphs]
    assert any({"aten.addmm", "aten.relu", "aten.mean"} <= o for o in ops)   # before the break
    assert any({"aten.addmm", "aten._softmax"} <= o for o in ops)             # after it
    torch.testing.assert_close(e.outputs, _eager(model, x), **SMALL_TOL)

    compiled = _compiled(model, tmp_path)
    with torch.no_grad():
        taken = set()
        for scale in (0.1, 4.0):   # a small and a large input: both sides of the branch
            xs = x * scale
            taken.add(bool(torch.relu(model.l1(xs)).mean() > 0.3))
            torch.testing.assert_close(compiled(xs), _eager(model, xs), **SMALL_TOL)
    assert taken == {False, True}
