"""Shared fixtures of the LLM tests: imported tiny models, compiled LLM artifacts (cached per
session) and the torch reference: HF greedy decoding with ``use_cache=True`` on a copy of the model
whose weights are the device's fake-quantised ones (tied embeddings untied, as the device does)."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm.models import import_model
from dlavm.llm import compile_llm
from dlavm.llm.reference import host_tables, quantized_torch_model, torch_greedy  # noqa: F401 (used by the tests)

_CACHE: dict = {}


def imported(name: str, max_ctx: int):
    key = ("import", name, max_ctx)
    if key not in _CACHE:
        _CACHE[key] = import_model(name, max_seq=max_ctx)
    return _CACHE[key]


def compiled(name: str, fmt: str, max_ctx: int, target: str = "vcu128"):
    """The LLM artifact (in memory) of recipe ``name``, weights ``fmt``, context ``max_ctx``."""
    key = ("llm", name, fmt, max_ctx, target)
    if key not in _CACHE:
        _CACHE[key] = compile_llm(imported(name, max_ctx).module, target=target, weights=fmt, max_seq=max_ctx,
                                  name=name)
    return _CACHE[key]


def torch_model(name: str, fmt: str, max_ctx: int, target: str = "vcu128"):
    """The HF model of recipe ``name`` with the weights the compiled model computes with."""
    key = ("torch", name, fmt, max_ctx, target)
    if key not in _CACHE:
        r = imported(name, max_ctx)
        cm = compiled(name, fmt, max_ctx, target)
        _CACHE[key] = quantized_torch_model(r.spec.module, cm.device_module, r.module.params, host_tables(cm))
    return _CACHE[key]


def prompt_of(n: int, vocab: int = 512, seed: int = 0) -> list:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, n)]


@pytest.fixture(scope="session")
def llm_cache():
    return _CACHE
