"""Model lookup: a built-in recipe name, ``hf:path/to/checkpoint_dir`` or ``path/to/file.py:factory``.

Nothing here imports torch: a recipe's factory is looked up in
``dlavm.models.builtin`` (which does) only when the recipe is built, so
``dlavm models`` and every refusal of a bad MODEL or ``max_seq`` answer on a
host without torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import traceback
from dataclasses import dataclass

from dlavm.artifact.schema import DIM_MAX

from .spec import ModelDimError, ModelSpec


@dataclass(frozen=True)
class Recipe:
    name: str
    factory_name: str  # a function of dlavm.models.builtin
    summary: str
    shape_only: bool = False

    @property
    def factory(self):
        return getattr(importlib.import_module("dlavm.models.builtin"), self.factory_name)


RECIPES = {r.name: r for r in [
    Recipe("tiny-llama", "tiny_llama", "tiny Llama: RMSNorm, RoPE, GQA, SwiGLU (random weights)"),
    Recipe("trained-tiny", "trained_tiny", "small Llama trained on data/ by script/train_tiny.py (trains on first use)"),
    Recipe("tiny-qwen2", "tiny_qwen2", "tiny Qwen2: qkv bias, GQA 6q/2kv (random weights)"),
    Recipe("tiny-qwen2-pad", "tiny_qwen2_pad", "tiny Qwen2 with head dim 12: padded to 16 on the device"),
    Recipe("tiny-gpt2", "tiny_gpt2", "tiny GPT-2: LayerNorm, GELU, learned positions (random weights)"),
    Recipe("tiny-vit", "tiny_vit", "tiny ViT encoder: conv2d patch embed (random weights)"),
    Recipe("mlp", "mlp", "two-layer MLP over a sequence (random weights)"),
    Recipe("cnn", "small_cnn", "small CNN with batch norm and pooling (random weights)"),
    Recipe("llama2-7b-shape", "llama2_7b_shape", "Llama-2-7B shapes on the meta device", True),
    Recipe("qwen2-7b-shape", "qwen2_7b_shape", "Qwen2-7B shapes on the meta device", True),
]}


class ModelNotFound(LookupError):
    """MODEL is neither a recipe name nor a loadable ``file.py:factory``."""


class ModelLoadError(ValueError):
    """MODEL names a user factory that cannot be run (the file does not import, the factory raises or
    returns something else than a model); the message names the file, the line and the cause."""


def list_recipes() -> list:
    return list(RECIPES.values())


def check_max_seq(max_seq, name: str = "max_seq") -> None:
    """Refuse a sequence bound that is not an integer in ``[1, DIM_MAX]`` (dims are patched into 32-bit
    instruction words), naming ``name`` and the value."""
    if isinstance(max_seq, bool) or not isinstance(max_seq, int) or not 1 <= max_seq <= DIM_MAX:
        raise ModelLoadError(f"{name}={max_seq!r}: must be an integer in [1, {DIM_MAX}] "
                             "(the sequence bound of the compiled model)")


def load_model(spec: str, **kwargs) -> ModelSpec:
    """Build the model named by ``spec``: a recipe name, ``hf:DIR`` (a local Hugging Face
    checkpoint, see ``hf_checkpoint.load_hf_checkpoint``) or ``path/to/file.py:factory``.

    ``kwargs`` go to the recipe or factory (e.g. ``max_seq=128``, checked by :func:`check_max_seq`);
    a recipe or factory that does not take one is refused, naming it (doc/models.md).
    Raises :class:`ModelNotFound` for a name that is none of these and :class:`ModelLoadError`
    when a user factory fails; an exception of the user's code never escapes as itself.
    """
    if kwargs.get("max_seq") is not None:
        check_max_seq(kwargs["max_seq"])
    if spec in RECIPES:
        factory = RECIPES[spec].factory
        rejected = [k for k in kwargs if not _takes(factory, k)]
        if rejected:
            takes = ", ".join(inspect.signature(factory).parameters) or "no arguments"
            raise ModelLoadError(f"recipe '{spec}' takes no {rejected[0]} (it takes: {takes})")
        return factory(**kwargs)
    if spec.startswith("hf:"):
        from .hf_checkpoint import load_hf_checkpoint
        return load_hf_checkpoint(spec[len("hf:"):], **kwargs)
    if ":" in spec:
        return _from_factory_file(spec, kwargs)
    raise ModelNotFound(f"unknown model '{spec}': not a recipe ({', '.join(RECIPES)}) "
                        "and not of the form hf:DIR or path/to/file.py:factory")


def recipe_takes_max_seq(spec: str) -> bool:
    """Whether MODEL ``spec`` is a recipe or ``hf:DIR`` that takes ``max_seq`` (a user factory: False,
    as telling needs running the user's file)."""
    return spec.startswith("hf:") or (spec in RECIPES and _takes(RECIPES[spec].factory, "max_seq"))


def _takes(fn, name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name`` (a parameter of that name or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True  # no signature to read (a builtin): let the call decide
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
               for p in params)


def _from_factory_file(spec: str, kwargs: dict) -> ModelSpec:
    path, _, fname = spec.rpartition(":")
    if not os.path.isfile(path):
        raise ModelNotFound(f"model file '{path}' does not exist or is not a file (from MODEL '{spec}')")
    if not path.endswith(".py"):
        raise ModelNotFound(f"model file '{path}' is not a Python file (.py) (from MODEL '{spec}')")
    try:
        modspec = importlib.util.spec_from_file_location(f"dlavm_user_model_{abs(hash(path))}", path)
        module = importlib.util.module_from_spec(modspec)
        modspec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 -- the user's file may raise anything; we name it and the line
        raise ModelLoadError(f"model file '{path}' cannot be imported: {_user_failure(e, path)}") from e
    factory = getattr(module, fname, None)
    if not callable(factory):
        raise ModelNotFound(f"'{path}' has no callable '{fname}'")
    unknown = [k for k in kwargs if not _takes(factory, k)]
    if unknown:
        flag = " (--max-seq)" if unknown[0] == "max_seq" else ""
        raise ModelLoadError(f"model factory '{path}:{fname}' takes no argument {unknown[0]}{flag}: drop it, or add "
                             f"a parameter {unknown[0]} to the factory (doc/models.md)")
    try:
        result = factory(**kwargs)
    except Exception as e:  # noqa: BLE001
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelLoadError(f"model factory '{path}:{fname}' ({given or 'no arguments'}) raised "
                             f"{_user_failure(e, path)}") from e
    try:
        out = ModelSpec.from_factory_result(fname, result, max_seq=kwargs.get("max_seq"))
        if not isinstance(result, ModelSpec):
            # a tuple names the model after its file (nanogpt.py:build -> 'nanogpt', nanogpt.py:small ->
            # 'nanogpt_small'), so the artifacts of different files do not all share a factory's name
            stem = os.path.splitext(os.path.basename(path))[0]
            out.name = stem if fname == "build" else f"{stem}_{fname}"
    except (TypeError, ModelDimError) as e:
        raise ModelLoadError(f"model file '{path}': {e}") from None
    return out


def _user_failure(e: BaseException, path: str) -> str:
    """``Type: message (at FILE:LINE)``, the line being the innermost one in the user's file."""
    where = ""
    if isinstance(e, SyntaxError) and e.lineno:
        where = f" (at {path}:{e.lineno})"
    else:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) ==
                  os.path.abspath(path)]
        if frames:
            where = f" (at {path}:{frames[-1].lineno})"
    msg = e.msg if isinstance(e, SyntaxError) else str(e)
    return f"{type(e).__name__}: {msg}{where}"
