"""A tiny vision-language model: a ViT vision tower projected into a tiny Llama that reads embeddings.

    image (PNG/PPM) -> Pillow RGB -> resize 32x32 bilinear -> (v/255 - mean) / std  [1, 3, 32, 32]
        -> VisionTower: ViT (8x8 patches: 16 patch tokens + CLS) + Linear(64 -> 128)   [1, 17, 128]
        -> concat with the prompt's token embeddings (rows of embedding_table())    [1, 17 + n, 128]
        -> EmbedsLM: Llama prefill on the embeddings, then greedy decode, each new token's input
           its row of embedding_table()

Two compiled models: the vision tower (``dlavm.compile(tower, vision_example(), target="tiny")``)
and the LLM (``dlavm.llm.compile_llm(llm_graph(max_seq), target="tiny", max_seq=max_seq)``; its entries
take embeddings ``[1, seq, 128]``). The LLM's vocabulary is the demo BPE's 512 ids
(:func:`examples.devproc.textgen.tokenizer_path`). Weights are random from fixed seeds.

:func:`reference_generate` is the whole pipeline in torch with the weights the device computes
with; the token embeddings are read from the float32 :func:`embedding_table` (a pipeline passes that
table to ``devproc.embed`` as a constant).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import device_weights, load_normalized, seeded

IMAGE_SIZE = 32
PATCH = 8
VISION_HIDDEN = 64
HIDDEN = 128
VOCAB = 512
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2 + 1   # patches + CLS
MAX_SEQ = 64


class VisionTower(nn.Module):
    """``pixel_values [1, 3, 32, 32] -> image embeddings [1, 17, HIDDEN]``: a ViT's last hidden state
    (CLS then the 16 patch tokens) through a linear projection to the LLM's hidden size."""

    def __init__(self):
        super().__init__()
        from transformers import ViTConfig, ViTModel
        cfg = ViTConfig(hidden_size=VISION_HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, image_size=IMAGE_SIZE, patch_size=PATCH)
        self.vit = ViTModel(cfg, add_pooling_layer=False)
        self.proj = nn.Linear(VISION_HIDDEN, HIDDEN)

    def forward(self, pixel_values):
        return self.proj(self.vit(pixel_values=pixel_values).last_hidden_state)


class EmbedsLM(nn.Module):
    """``inputs_embeds [1, seq, HIDDEN] -> logits [1, seq, VOCAB]`` of a HF causal LM ``model`` (no KV
    cache: ``compile_llm`` adds the device's)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds):
        return self.model(inputs_embeds=inputs_embeds, use_cache=False).logits


@lru_cache(maxsize=None)
def _build(max_seq: int):
    from transformers import LlamaConfig, LlamaForCausalLM
    with seeded(1):
        tower = VisionTower().eval()
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=352, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_seq,
                      rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    with seeded(2):
        lm = LlamaForCausalLM(cfg).eval()
    lm = EmbedsLM(lm).eval()
    for p in list(tower.parameters()) + list(lm.parameters()):
        p.requires_grad_(False)
    return tower, lm


def build(max_seq: int = MAX_SEQ):
    """``(vision tower, LLM)``: ``VisionTower`` (``pixel_values -> [1, 17, 128]``) and ``EmbedsLM``
    (``inputs_embeds -> logits``; ``.model`` is the ``LlamaForCausalLM``), the LLM's context
    ``max_seq``. Same weights on every call (the modules are shared: do not modify them)."""
    if not isinstance(max_seq, int) or max_seq <= IMAGE_TOKENS:
        raise ValueError(f"max_seq must be an integer > {IMAGE_TOKENS} (the image's tokens), got {max_seq!r}")
    return _build(max_seq)


def vision_example():
    """Example inputs of the vision tower: ``(pixel_values [1, 3, 32, 32],)`` (seeded)."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),)


def llm_example(seq: int = 8):
    """Example inputs of the LLM: ``(inputs_embeds [1, seq, 128],)`` (seeded)."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, seq, HIDDEN, generator=g),)


def llm_dynamic_shapes(max_seq: int = MAX_SEQ):
    return {"inputs_embeds": {1: torch.export.Dim("seq", min=1, max=max_seq)}}


def llm_graph(max_seq: int = MAX_SEQ):
    """The LLM as graph IR (``dlavm.frontend.torch.from_torch``, dim ``seq`` in ``[1, max_seq]``): what
    ``compile_llm(llm_graph(n), max_seq=n)`` takes."""
    from dlavm.frontend.torch import from_torch
    _, lm = build(max_seq)
    return from_torch(lm, llm_example(min(8, max_seq)), llm_dynamic_shapes(max_seq))


def embedding_table(max_seq: int = MAX_SEQ):
    """The LLM's input embedding ``[VOCAB, HIDDEN]`` as float32 numpy (a copy)."""
    _, lm = build(max_seq)
    return lm.model.get_input_embeddings().weight.detach().numpy().astype(np.float32).copy()


def preprocess(image_path):
    """``[1, 3, 32, 32]`` float32 torch tensor of the image file: Pillow ``convert("RGB")``,
    ``resize((32, 32), BILINEAR)``, then ToTensor + Normalize written in torch,
    ``(t / 255 - mean) / std``."""
    return load_normalized(image_path, IMAGE_SIZE, MEAN, STD)


@lru_cache(maxsize=None)
def _device_models(weights, max_seq: int, target: str):
    tower, lm = build(max_seq)
    vt = device_weights(tower, vision_example(), None, weights, target)
    llm = device_weights(lm, llm_example(min(8, max_seq)), llm_dynamic_shapes(max_seq), weights, target)
    return vt, llm


def device_models(weights: str | None = "fp16", max_seq: int = MAX_SEQ, target: str = "tiny"):
    """``(vision tower, LLM)`` copies computing with the weights the compiled models multiply by
    (``weights=None``: fp32). Shared between calls: do not modify them."""
    return _device_models(weights, max_seq, target)


def reference_generate(image_path, prompt_ids, max_new_tokens: int, weights: str | None = "fp16",
                       max_seq: int = MAX_SEQ, target: str = "tiny") -> list:
    """The new token ids of the whole pipeline in torch: :func:`preprocess`, the vision tower,
    ``[image embeddings, rows of embedding_table() for prompt_ids]`` prefilled into the LLM, then
    ``max_new_tokens`` greedy steps with HF's KV cache, each step's input the new token's row of
    :func:`embedding_table`. Weights as the compiled models' (``weights``: ``fp16`` / ``int8`` /
    ``int4``, or ``None`` for fp32). Stops early only at the context bound ``max_seq`` (as
    ``decode_loop`` without ``eos_id``)."""
    import inspect

    tower, llm = device_models(weights, max_seq, target)
    table = torch.from_numpy(embedding_table(max_seq))
    ids = [int(i) for i in prompt_ids]
    for i in ids:
        if not 0 <= i < VOCAB:
            raise ValueError(f"prompt id {i} is outside the vocabulary [0, {VOCAB})")
    model = llm.model
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        x = torch.cat([tower(preprocess(image_path)), table[ids].unsqueeze(0)], dim=1)
        if x.shape[1] > max_seq:
            raise ValueError(f"image ({IMAGE_TOKENS}) + prompt ({len(ids)}) tokens exceed the context {max_seq}")
        out, past, ctx = [], None, x.shape[1]
        while len(out) < max_new_tokens:
            res = model(inputs_embeds=x, use_cache=True, **{key: past})
            past = getattr(res, key)
            out.append(int(res.logits[0, -1].argmax()))
            if ctx + 1 > max_seq:
                break
            x, ctx = table[out[-1]].view(1, 1, -1), ctx + 1
    return out


def device_generate(vision_cm, llm_cm, image_path, prompt_ids, max_new_tokens: int, max_seq: int = MAX_SEQ) -> list:
    """The same pipeline on compiled models, by hand on the Python runtime: ``vision_cm`` (the compiled
    tower) on :func:`preprocess`'s pixels, the image embeddings and the prompt's rows of
    :func:`embedding_table` prefilled through ``llm_cm``'s ``greedy`` entry (``dims={'ctx': n}``), then
    one embedding row per step (``seq = 1``, ``ctx`` one more each time); stops after
    ``max_new_tokens`` or at the context bound."""
    table = embedding_table(max_seq)
    image = np.asarray(vision_cm.run(preprocess(image_path).numpy())[0], np.float32)
    x = np.concatenate([image, table[[int(i) for i in prompt_ids]][None]], axis=1)
    rt = llm_cm.runtime()
    ctx, out = x.shape[1], []
    while len(out) < max_new_tokens:
        out.append(int(np.asarray(rt.run("greedy", x, dims={"ctx": ctx})[0]).reshape(-1)[-1]))
        if ctx + 1 > max_seq:
            break
        x, ctx = table[[out[-1]]][None], ctx + 1
    return out


def near_tie(vision_cm, llm_cm, image_path, prompt_ids, history, weights: str | None = "fp16",
             max_seq: int = MAX_SEQ, target: str = "tiny") -> tuple:
    """``(margin, error)`` at the generation step after ``history`` (the tokens generated so far, the
    same on both sides): torch's top-1 / top-2 logits margin there (:func:`reference_generate`'s model,
    teacher-forced on the history) and the largest difference between the compiled models' logits
    (the LLM's ``logits`` entry on the same history) and torch's. A divergence of the device's tokens
    from the reference is a near-tie, fp16 rounding choosing the other of two almost equal logits,
    when ``margin <= error``."""
    tower, llm = device_models(weights, max_seq, target)
    table = embedding_table(max_seq)
    rows = table[[int(i) for i in list(prompt_ids) + list(history)]]
    with torch.no_grad():
        t_row = llm(torch.cat([tower(preprocess(image_path)), torch.from_numpy(rows)[None]], 1))[0, -1].numpy()
    image = np.asarray(vision_cm.run(preprocess(image_path).numpy())[0], np.float32)
    x = np.concatenate([image, rows[None]], axis=1).astype(np.float32)
    d_row = np.asarray(llm_cm.runtime().run("logits", x, dims={"ctx": x.shape[1]})[0])[0, -1]
    return float(np.diff(np.sort(t_row)[-2:])[0]), float(np.abs(d_row - t_row).max())


__all__ = ["IMAGE_SIZE", "PATCH", "HIDDEN", "VOCAB", "MEAN", "STD", "IMAGE_TOKENS", "MAX_SEQ", "VisionTower",
           "EmbedsLM", "build", "vision_example", "llm_example", "llm_dynamic_shapes", "llm_graph",
           "embedding_table", "preprocess", "load_normalized", "device_models", "reference_generate",
           "device_generate", "near_tie"]
