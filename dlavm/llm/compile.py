"""``compile_llm``: see the package docstring and doc/llm.md."""
from __future__ import annotations

import time

import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
from dlavm.compiler import CompileError, CompiledModel, compile as compile_module, model_source
from dlavm.passes.kv_cache import KVCacheError, add_kv_cache, kv_cache_bytes
from dlavm.passes.memory_arena import PlanError

from .bundle import bundle_tokenizer, store_host_tables


def _import(model, max_ctx: int | None, on_progress=None, extras: dict | None = None):
    """Graph-IR module and name of ``model``: a recipe name / ``file.py:factory`` / ``hf:DIR`` (named as
    its spec says: a checkpoint by its folder's name), a HF causal LM, or a Module. ``extras`` gets the
    spec's extras (a checkpoint's tokenizer bundle)."""
    from dlavm.ir import Module
    if isinstance(model, Module):
        return model, "model"
    if isinstance(model, str):
        from dlavm.models import import_model
        res = import_model(model, max_seq=max_ctx, on_progress=on_progress)
        if extras is not None:
            extras.update(res.spec.extras or {})
        return res.module, res.spec.name
    import torch

    from dlavm.frontend.torch import from_torch
    from dlavm.models.builtin import CausalLMLogits
    if max_ctx is None:
        raise CompileError("compiling a torch causal LM needs max_seq (the context length the KV cache holds)")
    wrapped = CausalLMLogits(model).eval()
    ids = torch.zeros((1, min(8, max_ctx)), dtype=torch.long)
    seq = torch.export.Dim("seq", min=1, max=max_ctx)
    return from_torch(wrapped, (ids,), {"input_ids": {1: seq}}), type(model).__name__


def llm_module(model, weights: str = "int4", max_ctx: int | None = None, per_layer=None, target=None,
               pass_ctx=None, on_progress=None, extras: dict | None = None, batch: int = 1):
    """The device graph with the KV cache (entries ``logits`` and ``greedy``) of ``model``, with the
    numerics of ``target`` (default: the device pipeline's default target); the device pipeline runs
    under ``pass_ctx`` (a ``dlavm.ir.PassContext``: timings, per-rule statistics) if given; ``on_progress``
    reports the import stages (:func:`dlavm.models.import_model`); ``extras`` gets the model spec's
    extras; ``batch`` > 1 adds the batched-decode entries (:func:`dlavm.passes.kv_cache.add_kv_cache`)."""
    from dlavm.ir import PassContext, PassManager
    from dlavm.passes import device_pipeline
    mod, name = _import(model, max_ctx, on_progress, extras)
    dev = PassManager(device_pipeline(weights, per_layer, target=target)).run(mod, pass_ctx or PassContext())
    try:
        return add_kv_cache(dev, max_ctx, batch), name
    except KVCacheError as e:
        raise CompileError(f"cannot compile {name} for generation: {e}") from None


def compile_llm(model, target="vcu128", weights: str = "int4", max_seq: int | None = None,
                name: str | None = None, per_layer=None, on_progress=None, dump_ir=None,
                batch: int = 1) -> CompiledModel:
    """Compile a decoder-only LM for generation with a device KV cache of ``max_seq`` positions.

    ``model``: a recipe name (``"tiny-llama"``), ``file.py:factory``, a HF causal LM (``input_ids ->
    .logits``) or a graph-IR module. ``max_seq`` is the same bound as :func:`dlavm.compile`'s: for a
    generator it bounds the context, prompt + generated tokens (default: the recipe's sequence bound);
    the manifest records it as the KV cache capacity ``llm.max_ctx``. The artifact's entries are
    ``logits`` and ``greedy`` (doc/llm.md); its
    host embedding table is stored at the precision ``weights`` and a ``hf:DIR`` checkpoint's tokenizer
    is bundled (:mod:`dlavm.llm.bundle`); a MODEL string is recorded as the manifest's ``source``.
    ``on_progress`` and ``dump_ir`` as in :func:`dlavm.compiler.compile`. ``batch`` (``B``, 1 to 8):
    with ``B > 1`` the KV cache has ``B`` slots and the artifact also has the batched-decode entries
    ``logits_batch`` / ``greedy_batch`` (doc/llm.md "Batched decode"); ``B = 1`` is the artifact without
    them, byte for byte.
    """
    t0 = time.perf_counter()
    from dlavm.ir import PassContext
    pass_ctx = PassContext(dump_dir=dump_ir, on_progress=(lambda p, i, n: on_progress("pass", i, n, p))
                           if on_progress else None)
    extras: dict = {}
    mod, default_name = llm_module(model, weights, max_seq, per_layer, target=target, pass_ctx=pass_ctx,
                                   on_progress=on_progress, extras=extras, batch=batch)
    t1 = time.perf_counter()
    source = model_source(model, max_seq) if isinstance(model, str) else None
    try:
        cm = compile_module(mod, target=target, weights=weights, name=name or default_name,
                            on_progress=on_progress, source=source)
    except PlanError as e:
        if batch == 1:
            raise
        slot = kv_cache_bytes(mod)
        raise CompileError(f"the KV cache of {batch} slots x {slot / 2**20:.1f} MiB ({mod.attrs['llm']['max_ctx']} "
                           f"positions each) = {batch * slot / 2**30:.2f} GiB does not fit beside the weights: {e}; "
                           "lower the batch or the max context") from None
    store_host_tables(cm.build, weights, cm.target.int4_group)
    if extras.get("tokenizer_bundle"):
        bundle_tokenizer(cm.build, extras["tokenizer_bundle"])
    cm.manifest = cm.build.manifest
    cm.timings["device_pipeline+kv_cache"] = t1 - t0
    cm.source_module = mod
    cm.pass_records = pass_ctx.records
    return cm


__all__ = ["compile_llm", "llm_module"]
