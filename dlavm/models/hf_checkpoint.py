"""Load a local Hugging Face causal-LM checkpoint directory as a ``ModelSpec`` (MODEL ``hf:DIR``).

The directory holds ``config.json`` and the weights as safetensors
(``model.safetensors``, or shards listed in ``model.safetensors.index.json``),
and optionally ``tokenizer.json``. Nothing is downloaded and no code from the
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
    """Build the causal LM of ``directory`` in float32, eval mode, with its weights.

    The spec wraps it like the built-in recipes (``input_ids [1, seq] ->
    logits``) with ``seq`` dynamic in ``[1, min(max_seq,
    config.max_position_embeddings)]``. ``spec.extras`` records
    ``checkpoint`` (the directory), ``model_type`` and ``tokenizer`` (the
    path of ``tokenizer.json``, or None).
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
    from transformers import AutoConfig, AutoModelForCausalLM

    from .builtin import _causal_lm
    try:
        json.loads((root / "config.json").read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 -- transformers raises many kinds; the message is what matters
        raise CheckpointError(f"checkpoint '{root}': config.json cannot be read: {e}") from None

    bound = getattr(config, "max_position_embeddings", None)
    if bound is None and max_seq is None:
        raise CheckpointError(f"checkpoint '{root}': config.json has no max_position_embeddings; pass max_seq")
    max_seq = min(x for x in (max_seq, bound) if x is not None)
    if max_seq < 1:
        raise CheckpointError(f"checkpoint '{root}': max_seq must be at least 1, got {max_seq}")

    try:
        with _quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
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
    spec = _causal_lm(root.resolve().name, model, config.vocab_size, max_seq,
                      f"{config.model_type} checkpoint {root}: {layers} layers, hidden {hidden}, "
                      f"vocab {config.vocab_size}")
    spec.extras = {"checkpoint": str(root.resolve()), "model_type": config.model_type,
                   "tokenizer": str(tokenizer.resolve()) if tokenizer.is_file() else None}
    return spec


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
