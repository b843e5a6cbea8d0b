"""Built-in model recipes: tiny random-weight models for tests and demos, and
shape-only recipes of full-size LLMs (built on torch's ``meta`` device, so no
weight memory is allocated) for compile-time and timing work.

Weights are random with a fixed seed; nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec


class CausalLMLogits(nn.Module):
    """``input_ids [batch, seq] -> logits [batch, seq, vocab]`` for a HF causal LM, no KV cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits


class EncoderHidden(nn.Module):
    """``input_ids [batch, seq] -> last hidden state`` for a HF encoder (BERT-style; no attention mask:
    every token attends to every token)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).last_hidden_state


class ImageEncoder(nn.Module):
    """``pixel_values [batch, 3, H, W] -> last hidden state`` for a HF vision encoder."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).last_hidden_state


class MLP(nn.Module):
    """A plain two-layer MLP over a sequence of feature vectors."""

    def __init__(self, d_in=64, d_hidden=256, d_out=32):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    """conv-bn-relu-pool twice, then a linear classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


def _ids_maker(vocab: int, device: str = "cpu"):
    def make(seq: int = 8, batch: int = 1, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randint(0, vocab, (batch, seq), generator=g).to(device),)
    return make


def _seq_dim(max_seq: int):
    return torch.export.Dim("seq", min=1, max=max_seq)


def _causal_lm(name: str, model, vocab: int, max_seq: int, description: str, shape_only=False):
    model = model.eval()
    device = "meta" if shape_only else "cpu"
    make = _ids_maker(vocab, device)
    return ModelSpec(name, CausalLMLogits(model).eval(), make(seq=min(8, max_seq)),
                     {"input_ids": {1: _seq_dim(max_seq)}}, make, {"seq": (1, max_seq)},
                     shape_only=shape_only, description=description)


def _encoder(name: str, model, vocab: int, max_seq: int, description: str):
    make = _ids_maker(vocab)
    return ModelSpec(name, EncoderHidden(model.eval()).eval(), make(seq=min(8, max_seq)),
                     {"input_ids": {1: _seq_dim(max_seq)}}, make, {"seq": (1, max_seq)}, description=description)


def tiny_llama(max_seq: int = 256) -> ModelSpec:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_seq,
                      rms_norm_eps=1e-5)
    return _causal_lm("tiny-llama", LlamaForCausalLM(cfg), 512, max_seq,
                      "Llama (RMSNorm, RoPE, GQA 4q/2kv heads, SwiGLU), 2 layers, hidden 128")


def trained_tiny(max_seq: int = 256) -> ModelSpec:
    """The demo's small Llama (4 layers, hidden 128, vocab 1024) with weights trained on the text in
    data/ by ``script/train_tiny.py``, which also trains its tokenizer: loaded from the checkpoint
    folder the script caches (``hf:DIR``), after training it there first if it is not cached yet (a few
    minutes of CPU, with progress on stderr; doc/llm.md "The demo")."""
    import subprocess
    import sys
    from pathlib import Path

    from .hf_checkpoint import load_hf_checkpoint
    from .registry import ModelLoadError
    script = Path(__file__).resolve().parents[2] / "script" / "train_tiny.py"
    if not script.is_file():
        raise ModelLoadError(f"recipe 'trained-tiny' needs {script} (a source checkout of dlavm)")
    done = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise ModelLoadError(f"recipe 'trained-tiny': {script} failed (exit {done.returncode}; its message "
                             "is above)")
    spec = load_hf_checkpoint(done.stdout.strip().splitlines()[-1], max_seq=max_seq)
    spec.name = "trained-tiny"
    return spec


def tiny_qwen2(max_seq: int = 256) -> ModelSpec:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=96, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=max_seq)
    return _causal_lm("tiny-qwen2", Qwen2ForCausalLM(cfg), 512, max_seq,
                      "Qwen2 (qkv bias, GQA 6q/2kv heads), 2 layers, hidden 96")


def tiny_qwen2_pad(max_seq: int = 256) -> ModelSpec:
    """Qwen2 with head dim 12 (hidden 96, 8 q heads, 2 kv heads, qkv bias): the device pads each
    head to 16 lanes (``dlavm.passes.pad_heads``, doc/passes.md "Head padding")."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=96, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=max_seq)
    return _causal_lm("tiny-qwen2-pad", Qwen2ForCausalLM(cfg), 512, max_seq,
                      "Qwen2 with head dim 12 (qkv bias, GQA 8q/2kv heads), 2 layers, hidden 96: padded heads")


def tiny_gpt2(max_seq: int = 256) -> ModelSpec:
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=512, n_embd=128, n_layer=2, n_head=4, n_positions=max_seq,
                     bos_token_id=0, eos_token_id=1)
    return _causal_lm("tiny-gpt2", GPT2LMHeadModel(cfg), 512, max_seq,
                      "GPT-2 (LayerNorm, GELU-tanh, learned positions), 2 layers, hidden 128")


def tiny_vit(max_batch: int = 8) -> ModelSpec:
    from transformers import ViTConfig, ViTModel
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    image_size=32, patch_size=8)
    model = ImageEncoder(ViTModel(cfg, add_pooling_layer=False)).eval()

    def make(batch: int = 2, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, 3, 32, 32, generator=g),)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return ModelSpec("tiny-vit", model, make(2), {"pixel_values": {0: batch}}, make,
                     {"batch": (1, max_batch)},
                     description="ViT (conv2d patch embed, CLS token, LayerNorm, GELU), 2 layers, 32x32 images")


def mlp(max_seq: int = 512) -> ModelSpec:
    torch.manual_seed(0)
    model = MLP().eval()

    def make(seq: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(1, seq, 64, generator=g),)
    return ModelSpec("mlp", model, make(8), {"x": {1: _seq_dim(max_seq)}}, make, {"seq": (1, max_seq)},
                     description="Linear(64->256) + ReLU + Linear(256->32) over a sequence")


def small_cnn(max_batch: int = 8) -> ModelSpec:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)

    def make(batch: int = 2, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, 3, 16, 16, generator=g),)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return ModelSpec("cnn", model, make(2), {"x": {0: batch}}, make, {"batch": (1, max_batch)},
                     description="conv-bn-relu-maxpool x2, global average pool, linear, 16x16 images")


def llama2_7b_shape(max_seq: int = 4096) -> ModelSpec:
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig()  # the Llama-2-7B defaults: 32 layers, hidden 4096, 32 heads
    cfg.max_position_embeddings = max_seq
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    return _causal_lm("llama2-7b-shape", model, cfg.vocab_size, max_seq,
                      "Llama-2-7B shapes (32 layers, hidden 4096), meta device: no weights",
                      shape_only=True)


def qwen2_7b_shape(max_seq: int = 4096) -> ModelSpec:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                      num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=max_seq)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(cfg)
    return _causal_lm("qwen2-7b-shape", model, cfg.vocab_size, max_seq,
                      "Qwen2-7B shapes (28 layers, hidden 3584, GQA 28q/4kv), meta device: no weights",
                      shape_only=True)
