"""Load a local Hugging Face checkpoint directory (a causal LM, or an encoder such as BERT) as a
``ModelSpec`` (MODEL ``hf:DIR``).

The directory holds ``config.json`` and the weights as safetensors
(``model.safetensors``, or shards listed in ``model.safetensors.index.json``),
and optionally ``tokenizer.json`` with its special tokens and chat template
(``tokenizer_config.json``, ``special_tokens_map.json``,
``generation_config.json``, ``chat_template.jinja``), which
:func:`tokenizer_bundle` reads for the artifact. Nothing is downloaded and no code from the
checkpoint is run (``trust_remote_code`` stays off). The weights must match
the model ``config.json`` describes exactly: a missing, unexpected or
mis-shaped tensor is refused, naming it.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .spec import ModelSpec


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the directory and the cause."""


def load_hf_checkpoint(directory, max_seq: int | None = None) -> ModelSpec:
    """Build the model of ``directory`` in float32, eval mode, with its weights.

    A causal LM is wrapped like the built-in recipes (``input_ids [1, seq] ->
    logits``); an encoder-only checkpoint (e.g. ``BertModel``, see
    :func:`_is_causal_lm`) as ``input_ids [1, seq] -> last_hidden_state``.
    ``seq`` is dynamic in ``[1, max_seq]``, ``max_seq`` defaulting to
    ``config.max_position_embeddings``; a larger one is refused, naming both
    (never clamped). Its name is the directory's name; ``extras["kind"]`` is
    ``causal-lm`` or ``encoder``.
    ``spec.extras`` records ``checkpoint`` (the directory), ``model_type``,
    ``tokenizer`` (the path of ``tokenizer.json``, or None) and
    ``tokenizer_bundle`` (:func:`tokenizer_bundle`, or None).
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory '{root}' does not exist")
    if not (root / "config.json").is_file():
        raise CheckpointError(f"checkpoint '{root}' has no config.json")
    if not ((root / "model.safetensors").is_file() or (root / "model.safetensors.index.json").is_file()):
        raise CheckpointError(f"checkpoint '{root}' has no model.safetensors (nor model.safetensors.index.json); "
                              "only safetensors weights are loaded")
    import torch  # after the cheap checks: a missing directory is reported on a host without torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from .builtin import _causal_lm, _encoder
    try:
        json.loads((root / "config.json").read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 -- transformers raises many kinds; the message is what matters
        raise CheckpointError(f"checkpoint '{root}': config.json cannot be read: {e}") from None

    bound = getattr(config, "max_position_embeddings", None)
    if bound is None and max_seq is None:
        raise CheckpointError(f"checkpoint '{root}': config.json has no max_position_embeddings; pass max_seq")
    if max_seq is not None and bound is not None and max_seq > bound:  # never clamped silently
        raise CheckpointError(f"checkpoint '{root}': max_seq={max_seq} is larger than the model's "
                              f"max_position_embeddings={bound} (config.json): give at most {bound}")
    max_seq = bound if max_seq is None else max_seq
    if max_seq < 1:
        raise CheckpointError(f"checkpoint '{root}': max_seq must be at least 1, got {max_seq}")
    causal = _is_causal_lm(config)

    try:
        with _quiet_transformers():
            model, info = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(
                root, config=config, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=torch.float32, output_loading_info=True,
                ignore_mismatched_sizes=True)  # reported below, naming the tensors
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint '{root}': the weights cannot be loaded: {e}") from None
    problems = [f"{kind} {', '.join(sorted(_describe(k) for k in info.get(key) or ()))}"
                for key, kind in (("missing_keys", "missing tensors:"), ("unexpected_keys", "unexpected tensors:"),
                                  ("mismatched_keys", "tensors of the wrong shape:"))
                if info.get(key)]
    if problems:
        raise CheckpointError(f"checkpoint '{root}' does not match its config.json "
                              f"({type(model).__name__}): " + "; ".join(problems))
    model = model.float().eval()

    tokenizer = root / "tokenizer.json"
    layers = getattr(config, "num_hidden_layers", None)
    hidden = getattr(config, "hidden_size", None)
    spec = (_causal_lm if causal else _encoder)(
        root.resolve().name, model, config.vocab_size, max_seq,
        f"{config.model_type} checkpoint {root}: {layers} layers, hidden {hidden}, vocab {config.vocab_size}"
        + ("" if causal else " (encoder: input_ids -> last hidden state)"))
    spec.extras = {"checkpoint": str(root.resolve()), "model_type": config.model_type,
                   "kind": "causal-lm" if causal else "encoder",
                   "tokenizer": str(tokenizer.resolve()) if tokenizer.is_file() else None,
                   "tokenizer_bundle": tokenizer_bundle(root, config) if tokenizer.is_file() else None}
    return spec


#: The largest tokenizer config file read (tokenizer_config.json, special_tokens_map.json, generation_config.json).
_CONFIG_MAX_BYTES = 16 << 20


def _json_file(root: Path, name: str) -> dict:
    """``root/name`` as a JSON object ({} when absent); a file that is not one is refused, naming it."""
    path = root / name
    if not path.is_file():
        return {}
    if path.stat().st_size > _CONFIG_MAX_BYTES:
        raise CheckpointError(f"checkpoint '{root}': {name} is larger than {_CONFIG_MAX_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint '{root}': {name} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint '{root}': {name} must hold a JSON object")
    return data


def _token_text(v):
    """A special token as tokenizer_config.json / special_tokens_map.json write it: a string or
    ``{"content": ...}``."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def tokenizer_bundle(root, config=None) -> dict:
    """What ``dlavm.llm.compile_llm`` bundles into the artifact from the checkpoint ``root`` (which holds a
    ``tokenizer.json``): ``{"json": bytes, "bos_id", "eos_ids", "add_bos", "chat_template": str | None}``.

    * BOS: the ``bos_token`` of tokenizer_config.json, else of special_tokens_map.json, looked up in the
      tokenizer; else ``bos_token_id`` of generation_config.json, else of config.json; else none.
    * EOS: ``eos_token_id`` of generation_config.json (an id or a list), else the ``eos_token`` of
      tokenizer_config.json / special_tokens_map.json, else config.json's ``eos_token_id``.
    * ``add_bos``: tokenizer_config.json's ``add_bos_token``; when it says nothing, whether the
      tokenizer's post-processor puts the BOS token first (Llama 3 style); false without a BOS.
    * the chat template: ``chat_template.jinja``, else tokenizer_config.json's ``chat_template`` (the
      ``default`` one of a list of named templates); none if neither.
    """
    from tokenizers import Tokenizer as HFTokenizer
    root = Path(root)
    raw = (root / "tokenizer.json").read_bytes()
    try:
        tok = HFTokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 -- tokenizers raises a bare Exception for schema errors
        raise CheckpointError(f"checkpoint '{root}': tokenizer.json is not a tokenizer HF tokenizers can read: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    tcfg, smap, gen = (_json_file(root, n) for n in ("tokenizer_config.json", "special_tokens_map.json",
                                                     "generation_config.json"))
    cfg = config.to_dict() if config is not None else _json_file(root, "config.json")
    vocab = tok.get_vocab_size(with_added_tokens=True)

    def ids(v):
        out = [v] if isinstance(v, int) and not isinstance(v, bool) else v if isinstance(v, list) else []
        return [i for i in out if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab]

    def by_text(key):
        for src in (tcfg, smap):
            t = _token_text(src.get(key))
            if t is not None and tok.token_to_id(t) is not None:
                return [tok.token_to_id(t)]
        return []

    bos = by_text("bos_token") or ids(gen.get("bos_token_id")) or ids(cfg.get("bos_token_id"))
    eos = ids(gen.get("eos_token_id")) or by_text("eos_token") or ids(cfg.get("eos_token_id"))
    bos_id = bos[0] if bos else None
    add_bos = tcfg.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = _post_processor_adds(raw, bos_id)
    template = None
    if (root / "chat_template.jinja").is_file():
        template = (root / "chat_template.jinja").read_text(encoding="utf-8")
    elif isinstance(tcfg.get("chat_template"), str):
        template = tcfg["chat_template"]
    elif isinstance(tcfg.get("chat_template"), list):
        named = {t.get("name"): t.get("template") for t in tcfg["chat_template"] if isinstance(t, dict)}
        template = named.get("default") if isinstance(named.get("default"), str) else None
    return {"json": raw, "bos_id": bos_id, "eos_ids": list(dict.fromkeys(eos)),
            "add_bos": bool(add_bos and bos_id is not None), "chat_template": template}


def _post_processor_adds(raw: bytes, bos_id) -> bool:
    """True when tokenizer.json's post-processor (``TemplateProcessing``) starts a single sequence with
    the BOS token."""
    try:
        post = json.loads(raw).get("post_processor") or {}
    except ValueError:
        return False
    posts = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for p in posts:
        if isinstance(p, dict) and p.get("type") == "TemplateProcessing":
            single = p.get("single") or []
            first = single[0] if single and isinstance(single[0], dict) else {}
            tok_id = (first.get("SpecialToken") or {}).get("id")
            special = (p.get("special_tokens") or {}).get(tok_id) or {}
            return bos_id is not None and bos_id in (special.get("ids") or [])
    return False


def _is_causal_lm(config) -> bool:
    """A checkpoint saved from a causal LM (``*ForCausalLM``, ``*LMHeadModel``) loads with its head;
    one saved as a bare model (``BertModel``, ``architectures`` naming no LM head) loads as an
    encoder (``AutoModel``: ``input_ids -> last_hidden_state``). Without ``architectures``: a causal
    LM if transformers has one for the config."""
    archs = getattr(config, "architectures", None) or []
    if archs:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING
    return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


def _describe(entry) -> str:
    """A loading-info entry: a tensor name, or (name, checkpoint shape, model shape)."""
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        name, got, want = entry
        return f"{name} ({list(got)} in the checkpoint, {list(want)} in the model)"
    return str(entry)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers logs a loading report and a progress bar; library code prints nothing
    (problems are raised as CheckpointError instead)."""
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()
