"""Write small Hugging Face checkpoints (random weights, real architectures) to load as ``hf:DIR``.

    python examples/models/hf_tiny.py OUT        # OUT/llama, OUT/gpt2, OUT/bert
    dlavm check hf:OUT/bert

Each is what ``save_pretrained`` writes: ``config.json`` and ``model.safetensors``.
"""
import argparse
from pathlib import Path

import torch


def configs():
    from transformers import BertConfig, GPT2Config, LlamaConfig
    return {
        "llama": LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128),
        "gpt2": GPT2Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                           bos_token_id=255, eos_token_id=255),
        "bert": BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=128),
    }


def write(out: Path, names=None) -> dict:
    from transformers import AutoModel, AutoModelForCausalLM
    paths = {}
    for name, cfg in configs().items():
        if names and name not in names:
            continue
        torch.manual_seed(0)
        cls = AutoModel if name == "bert" else AutoModelForCausalLM
        model = cls.from_config(cfg).eval()
        paths[name] = out / name
        model.save_pretrained(paths[name], safe_serialization=True)
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    for name, path in write(args.out).items():
        print(f"{name}: {path}")
