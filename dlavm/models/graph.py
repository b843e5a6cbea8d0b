"""A model recipe as graph IR in one call, shared by the CLI, the compiler, the demo and tests.

It composes three layers (the recipe, ``dlavm.frontend`` and the import
pipeline of ``dlavm.passes``), so it lives here, above them: the frontend
itself knows neither recipes nor passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlavm.models.registry import load_model


@dataclass
class ImportResult:
    spec: object           # dlavm.models.ModelSpec
    module: object         # dlavm.ir.Module
    timings: dict = field(default_factory=dict)


def import_model(model: str, max_seq: int | None = None, keep_weights: bool = True,
                 fn_name: str = "forward", canonicalize: bool = True, pass_ctx=None) -> ImportResult:
    """Build MODEL (recipe name or ``file.py:factory``), export it and convert it to graph IR.

    With ``canonicalize`` the import pipeline (``dlavm.passes.IMPORT_PIPELINE``)
    runs on the result under ``pass_ctx`` (a ``PassContext``: IR dumps, timings).
    ``timings`` gets ``build_s``, ``export_s``, ``decompose_s``, ``convert_s``
    and ``passes_s``.
    """
    import time

    kwargs = {"max_seq": max_seq} if max_seq is not None else {}
    t0 = time.perf_counter()
    spec = load_model(model, **kwargs)  # refuses a bad MODEL or max_seq before torch is imported
    timings = {"build_s": time.perf_counter() - t0}
    from dlavm.frontend.torch import from_torch
    mod = from_torch(spec.module, spec.example_inputs, spec.dynamic_shapes, name=fn_name,
                     keep_weights=keep_weights and not spec.shape_only, timings=timings)
    if canonicalize:
        from dlavm.ir import PassContext, PassManager
        from dlavm.passes import IMPORT_PIPELINE
        t0 = time.perf_counter()
        mod = PassManager(IMPORT_PIPELINE).run(mod, pass_ctx or PassContext())
        timings["passes_s"] = time.perf_counter() - t0
    return ImportResult(spec, mod, timings)
