"""A tiny HF Llama checkpoint with its tokenizer, as a user brings one: ``config.json``,
``model.safetensors``, ``generation_config.json`` (examples/models/hf_tiny.py), plus a small BPE
``tokenizer.json`` trained here, ``tokenizer_config.json`` (BOS/EOS, ``add_bos_token``, a chat template)
and ``special_tokens_map.json``."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("the compiler maps each layer of the model onto the accelerator and the runtime streams the "
        "instructions to the device while the host waits for the tokens of the reply ") * 4
#: the vocabulary of examples/models/hf_tiny.py's Llama
MODEL_VOCAB = 256
#: ids 0, 1, 2 as the tiny Llama config's pad/bos/eos defaults (bos 1, eos 2)
SPECIALS = ["<unk>", "<s>", "</s>"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ bos_token }}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %} [assistant]{% endif %}")


def train_tokenizer(vocab: int = 120):
    """A BPE (ByteLevel pre-tokenizer and decoder, alphabet = the characters of TEXT) of ``vocab`` ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS,
                                                        show_progress=False))
    tok.add_tokens([f"<x{i}>" for i in range(tok.get_vocab_size(), MODEL_VOCAB)])  # every id of the model decodes
    return tok


def write_checkpoint(out: Path, tokenizer_config: dict | None = None, chat_template: bool = True) -> Path:
    """``out/llama``: the tiny Llama of examples/models/hf_tiny.py with the files of the module docstring."""
    spec = importlib.util.spec_from_file_location("hf_tiny", ROOT / "examples" / "models" / "hf_tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.write(Path(out), names=["llama"])["llama"]
    train_tokenizer().save(str(path / "tokenizer.json"))
    cfg = {"add_bos_token": True, "bos_token": "<s>", "eos_token": {"content": "</s>", "special": True}}
    if chat_template:
        cfg["chat_template"] = CHAT_TEMPLATE
    cfg.update(tokenizer_config or {})
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (path / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return path
