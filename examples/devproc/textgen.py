"""Text generation: a tiny random Llama with the demo BPE tokenizer (vocabulary 512).

    model, tokenizer_json = build(max_seq=64)
    cm = dlavm.llm.compile_llm(model, target="tiny", weights="fp16", max_seq=64)

The tokenizer is the demo byte-level BPE trained on ``data/corpus.txt``
(``dlavm.tokenizer.train_demo_tokenizer``; trained once, then reused from the tokenizer cache),
whose 512 ids are the model's vocabulary; BOS is id 0 and EOS id 1 (its special tokens ``<s>``,
``</s>``). The model is initialised from a fixed seed: it generates the same tokens every time,
not meaningful text.
"""
from __future__ import annotations

from pathlib import Path

from . import seeded

VOCAB = 512
BOS_ID, EOS_ID = 0, 1
SEED = 0
PROMPTS = ("Once upon a time", "The compiler maps each layer", "hello world")


def tokenizer_path() -> Path:
    """The demo tokenizer's ``tokenizer.json`` (trained on first use, then cached)."""
    from dlavm.tokenizer import train_demo_tokenizer
    tok = train_demo_tokenizer(VOCAB)
    if tok.vocab_size != VOCAB:
        raise ValueError(f"demo tokenizer '{tok.path}' has {tok.vocab_size} ids, the model has {VOCAB}")
    return Path(tok.path)


def build(max_seq: int = 64):
    """``(model, tokenizer.json path)``: a ``LlamaForCausalLM`` (vocabulary 512, hidden 128, 2 layers,
    4 query / 2 KV heads, SwiGLU 352, context ``max_seq``) in eval mode, same weights on every call."""
    from transformers import LlamaConfig, LlamaForCausalLM
    if not isinstance(max_seq, int) or max_seq < 2:
        raise ValueError(f"max_seq must be an integer >= 2, got {max_seq!r}")
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_seq,
                      rms_norm_eps=1e-5, bos_token_id=BOS_ID, eos_token_id=EOS_ID, tie_word_embeddings=False)
    with seeded(SEED):
        model = LlamaForCausalLM(cfg).eval()
    return model, tokenizer_path()


def encode(text: str, add_bos: bool = True) -> list:
    """The prompt's ids with the demo tokenizer (BOS first unless ``add_bos=False``)."""
    from dlavm.tokenizer import Tokenizer
    return Tokenizer.from_file(tokenizer_path()).encode(text, add_bos=add_bos)


def reference_generate(model, prompt_ids, max_new_tokens: int, weights: str | None = "fp16",
                       max_seq: int = 64, target: str = "tiny") -> list:
    """Greedy generation in torch with HF's KV cache (``dlavm.llm.reference.torch_greedy``) by ``model``
    with the weights a ``compile_llm(model, target=target, weights=weights, max_seq=max_seq)`` model
    multiplies by (``weights=None``: the fp32 model). Stops after ``max_new_tokens`` tokens or at the
    context bound ``max_seq`` (prefill, then decode while the context has room), never at EOS (as
    ``decode_loop`` without ``eos_id``)."""
    from dlavm.llm.reference import torch_greedy
    prompt = [int(i) for i in prompt_ids]
    if not 1 <= len(prompt) <= max_seq:
        raise ValueError(f"the prompt has {len(prompt)} tokens; it must have 1 to max_seq={max_seq}")
    ref = device_lm(model, weights, max_seq, target)
    return torch_greedy(ref, prompt, min(max_new_tokens, max_seq - len(prompt) + 1))[0]


def device_lm(model, weights: str | None = "fp16", max_seq: int = 64, target: str = "tiny"):
    """A copy of the causal LM ``model`` computing with the weights a ``compile_llm(model, target=target,
    weights=weights, max_seq=max_seq)`` model multiplies by (``weights=None``: an fp32 copy), its token
    embedding lookup reading the table as the artifact's host holds it (stored at the weight precision,
    doc/llm.md): ``dlavm.llm.reference.quantized_torch_model`` without compiling."""
    import copy

    import torch

    from dlavm.compiler import device_graph
    from dlavm.frontend.torch import from_torch
    from dlavm.llm.reference import quantized_torch_model
    from dlavm.models.builtin import CausalLMLogits
    if weights is None:
        return copy.deepcopy(model).eval()
    wrapped = CausalLMLogits(model).eval()
    ids = torch.zeros((1, min(8, max_seq)), dtype=torch.long)
    mod = from_torch(wrapped, (ids,), {"input_ids": {1: torch.export.Dim("seq", min=1, max=max_seq)}})
    dev = device_graph(mod, weights, target)
    return quantized_torch_model(wrapped, dev, mod.params, host_tables(wrapped, weights, target))


def host_tables(wrapped, weights: str, target: str = "tiny") -> dict:
    """name -> float32 table of every ``nn.Embedding`` of ``wrapped`` as a compiled artifact's host reads
    it: stored at the weight precision (``dlavm.llm.bundle.store_host_tables``) and dequantised."""
    import numpy as np
    import torch

    from dlavm.runtime.host_quant import dequantise, quantise
    from dlavm.target import get_target
    group = get_target(target).int4_group
    names = {id(p): n for n, p in wrapped.named_parameters(remove_duplicate=False)}
    out = {}
    for m in wrapped.modules():
        if isinstance(m, torch.nn.Embedding):
            arr = m.weight.detach().numpy().astype(np.float32)
            if weights == "fp16":
                table = arr.astype(np.float16).astype(np.float32)
            else:
                data, scales, g = quantise(arr, weights, group)
                table = np.asarray(dequantise(data, scales, weights, g, arr.shape), np.float32)
            out[names[id(m.weight)]] = table
    return out


__all__ = ["VOCAB", "BOS_ID", "EOS_ID", "PROMPTS", "build", "tokenizer_path", "encode", "reference_generate",
           "device_lm", "host_tables"]
