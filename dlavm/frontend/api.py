"""One call from a model name to graph IR, shared by the CLI, the demo and tests."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImportResult:
    spec: object           # dlavm.models.ModelSpec
    module: object         # dlavm.ir.Module
    timings: dict = field(default_factory=dict)


def import_model(model: str, max_seq: int | None = None, keep_weights: bool = True,
                 fn_name: str = "forward") -> ImportResult:
    """Build MODEL (recipe name or ``file.py:factory``), export it and convert it to graph IR.

    ``timings`` gets ``build_s``, ``export_s``, ``decompose_s`` and ``convert_s``.
    """
    import time

    from ..models import load_model
    from .torch import from_torch

    kwargs = {"max_seq": max_seq} if max_seq is not None else {}
    t0 = time.perf_counter()
    spec = load_model(model, **kwargs)
    timings = {"build_s": time.perf_counter() - t0}
    mod = from_torch(spec.module, spec.example_inputs, spec.dynamic_shapes, name=fn_name,
                     keep_weights=keep_weights and not spec.shape_only, timings=timings)
    return ImportResult(spec, mod, timings)
