"""The torch side of generation checks: a HF causal LM with the device's fake-quantised weights,
decoded greedily with its own KV cache (``use_cache=True``)."""
from __future__ import annotations

import copy

import numpy as np


def _set_weight(module, name: str, value) -> None:
    """Replace one weight by a new Parameter (so a tied embedding / LM head pair is untied)."""
    import torch
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    old = getattr(module, leaf)
    t = torch.from_numpy(value).to(old.dtype)
    setattr(module, leaf, torch.nn.Parameter(t, requires_grad=False) if isinstance(old, torch.nn.Parameter) else t)


def quantized_torch_model(wrapper, device_module, source_params: dict, host_tables: dict | None = None):
    """A copy of ``wrapper`` (the imported ``CausalLMLogits``) whose weights are what the device
    computes with (``fake_quantized_params``) and whose embedding lookups read ``host_tables`` (name ->
    the table the host reads, :func:`host_tables`: stored at the weight precision); returns the wrapped
    HF model. A table tied to the LM head is untied: the lookup reads the host's, the head the device's."""
    import torch

    from dlavm.passes import fake_quantized_params
    tm = copy.deepcopy(wrapper)
    lookups = {}
    for name in host_tables or {}:
        p = _get(tm, name)
        lookups[name] = [m for m in tm.modules() if isinstance(m, torch.nn.Embedding) and m.weight is p]
    for k, v in fake_quantized_params(device_module, source_params).items():
        if (v != source_params[k]).any():
            _set_weight(tm, k, v)
    for name, mods in lookups.items():
        for m in mods:
            m.weight = torch.nn.Parameter(torch.from_numpy(np.asarray(host_tables[name], np.float32).copy()),
                                          requires_grad=False)
    return tm.model.eval()


def host_tables(cm) -> dict:
    """name -> float32 table of every host embedding table of the compiled model ``cm``, as its runtime
    holds it (dequantised from the precision it is stored at)."""
    from .bundle import embedding_tables
    consts = cm.runtime().host_consts
    return {n: np.asarray(consts[n], np.float32) for n in embedding_tables(cm.manifest) if n in consts}


def _get(module, name: str):
    for p in name.split("."):
        module = getattr(module, p)
    return module


def torch_greedy(model, prompt, n: int) -> tuple:
    """``(tokens, last-row float32 logits per step)`` of ``n`` greedy steps with the HF KV cache."""
    import inspect

    import torch
    # transformers renamed the KV-cache argument and output field from ``past_key_values`` to ``cache``
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ids, past, toks, logits = torch.tensor([list(prompt)]), None, [], []
    with torch.no_grad():
        for _ in range(n):
            out = model(input_ids=ids, use_cache=True, **{key: past})
            past = getattr(out, key)
            row = out.logits[0, -1]
            logits.append(row.numpy().astype(np.float32))
            toks.append(int(row.argmax()))
            ids = torch.tensor([[toks[-1]]])
    return toks, logits


__all__ = ["quantized_torch_model", "host_tables", "torch_greedy"]
