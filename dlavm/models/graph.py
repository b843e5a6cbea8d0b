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


#: The stages of an import, in order, as ``on_progress`` reports them (stage ``'import'``).
IMPORT_STAGES = ("build model", "torch.export", "decompose", "convert")


def import_model(model: str, max_seq: int | None = None, keep_weights: bool = True,
                 fn_name: str = "forward", canonicalize: bool = True, pass_ctx=None,
                 on_progress=None) -> ImportResult:
    """Build MODEL (recipe name or ``file.py:factory``), export it and convert it to graph IR.

    With ``canonicalize`` the import pipeline (``dlavm.passes.IMPORT_PIPELINE``)
    runs on the result under ``pass_ctx`` (a ``PassContext``: IR dumps, timings).
    ``timings`` gets ``build_s``, ``export_s``, ``decompose_s``, ``convert_s``
    and ``passes_s``. ``on_progress(stage, done, total, detail)`` (as in
    :func:`dlavm.compiler.compile`) is called as each of :data:`IMPORT_STAGES`
    starts (``stage='import'``; ``decompose`` only when the graph needs it), so
    a caller shows progress from the first second, torch.export included.
    """
    import time

    def stage(name: str) -> None:
        if on_progress:
            on_progress("import", IMPORT_STAGES.index(name) + 1, len(IMPORT_STAGES), name)

    kwargs = {"max_seq": max_seq} if max_seq is not None else {}
    stage("build model")
    t0 = time.perf_counter()
    spec = load_model(model, **kwargs)  # refuses a bad MODEL or max_seq before torch is imported
    timings = {"build_s": time.perf_counter() - t0}
    stage("torch.export")
    from dlavm.frontend.torch import from_torch
    from dlavm.frontend.torch.importer import ExportError
    try:
        mod = from_torch(spec.module, spec.example_inputs, spec.dynamic_shapes, name=fn_name,
                         keep_weights=keep_weights and not spec.shape_only, timings=timings, on_stage=stage)
    except ExportError as e:
        raise _with_torch_reason(e) from e
    if canonicalize:
        from dlavm.ir import PassContext, PassManager
        from dlavm.passes import IMPORT_PIPELINE
        t0 = time.perf_counter()
        if pass_ctx is None and on_progress:
            pass_ctx = PassContext(on_progress=lambda name, i, n: on_progress("import pass", i, n, name))
        mod = PassManager(IMPORT_PIPELINE).run(mod, pass_ctx or PassContext())
        timings["passes_s"] = time.perf_counter() - t0
    return ImportResult(spec, mod, timings)


class DimConstraintError(ValueError):
    """torch.export refused the dims' bounds: some size within them breaks a guard the model's code
    implies (e.g. a mask sliced to ``[:T]`` of a buffer of ``T`` rows); the message quotes torch's reason."""


def _with_torch_reason(e: Exception) -> Exception:
    """``e`` (an ExportError), with torch's own reason line added when it is a constraint violation
    (torch's first line only says "Constraints violated (seq)!")."""
    text = str(e.__cause__ or "")
    if "Constraints violated" not in text:
        return e
    lines = [ln.strip() for ln in text.splitlines()]
    reasons = [ln[2:] for ln in lines if ln.startswith("- ")]
    fixes = [ln for ln in lines[lines.index("Suggested fixes:") + 1:] if ln] if "Suggested fixes:" in lines else []
    reason = "; ".join(reasons) or "see TORCH_LOGS=+dynamic"
    hint = f"torch suggests: {'; '.join(fixes)}" if fixes else \
        "bound the dim so that every size within it satisfies the guard (doc/models.md)"
    head = str(e).split(" For more information")[0]
    return DimConstraintError(f"{head} {reason.rstrip('.')} ({hint})")
