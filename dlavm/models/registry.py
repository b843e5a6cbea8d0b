"""Model lookup: a built-in recipe name, ``hf:path/to/checkpoint_dir`` or ``path/to/file.py:factory``."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

from . import builtin
from .spec import ModelSpec


@dataclass(frozen=True)
class Recipe:
    name: str
    factory: Callable
    summary: str
    shape_only: bool = False


RECIPES = {r.name: r for r in [
    Recipe("tiny-llama", builtin.tiny_llama, "tiny Llama: RMSNorm, RoPE, GQA, SwiGLU (random weights)"),
    Recipe("tiny-qwen2", builtin.tiny_qwen2, "tiny Qwen2: qkv bias, GQA 6q/2kv (random weights)"),
    Recipe("tiny-qwen2-pad", builtin.tiny_qwen2_pad, "tiny Qwen2 with head dim 12: padded to 16 on the device"),
    Recipe("tiny-gpt2", builtin.tiny_gpt2, "tiny GPT-2: LayerNorm, GELU, learned positions (random weights)"),
    Recipe("tiny-vit", builtin.tiny_vit, "tiny ViT encoder: conv2d patch embed (random weights)"),
    Recipe("mlp", builtin.mlp, "two-layer MLP over a sequence (random weights)"),
    Recipe("cnn", builtin.small_cnn, "small CNN with batch norm and pooling (random weights)"),
    Recipe("llama2-7b-shape", builtin.llama2_7b_shape, "Llama-2-7B shapes on the meta device", True),
    Recipe("qwen2-7b-shape", builtin.qwen2_7b_shape, "Qwen2-7B shapes on the meta device", True),
]}


class ModelNotFound(LookupError):
    """MODEL is neither a recipe name nor a loadable ``file.py:factory``."""


def list_recipes() -> list:
    return list(RECIPES.values())


def load_model(spec: str, **kwargs) -> ModelSpec:
    """Build the model named by ``spec``: a recipe name, ``hf:DIR`` (a local Hugging Face
    checkpoint, see ``hf_checkpoint.load_hf_checkpoint``) or ``path/to/file.py:factory``.

    ``kwargs`` go to the recipe or factory (e.g. ``max_seq=128``).
    """
    if spec in RECIPES:
        return RECIPES[spec].factory(**kwargs)
    if spec.startswith("hf:"):
        from .hf_checkpoint import load_hf_checkpoint
        return load_hf_checkpoint(spec[len("hf:"):], **kwargs)
    if ":" in spec:
        path, _, fname = spec.rpartition(":")
        if not os.path.isfile(path):
            raise ModelNotFound(f"model file '{path}' does not exist (from MODEL '{spec}')")
        modspec = importlib.util.spec_from_file_location(f"dlavm_user_model_{abs(hash(path))}", path)
        module = importlib.util.module_from_spec(modspec)
        modspec.loader.exec_module(module)
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise ModelNotFound(f"'{path}' has no callable '{fname}'")
        return ModelSpec.from_factory_result(fname, factory(**kwargs))
    raise ModelNotFound(f"unknown model '{spec}': not a recipe ({', '.join(RECIPES)}) "
                        "and not of the form hf:DIR or path/to/file.py:factory")
