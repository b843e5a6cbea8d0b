"""Compare graph-IR execution with torch eager on the same inputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .executor import run_function


@dataclass
class Agreement:
    """Result of one comparison: max abs / rel error and whether allclose held."""

    dims: dict
    max_abs: float
    max_rel: float
    ok: bool

    def __str__(self) -> str:
        d = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{d}: max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e} -> " \
               f"{'matches torch' if self.ok else 'MISMATCH'}"


def _flatten(x):
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flatten(item)]
    if hasattr(x, "to_tuple"):
        return _flatten(x.to_tuple())
    raise TypeError(f"cannot compare output of type {type(x).__name__}")


def compare_with_torch(mod, fn_name: str, torch_module, inputs, dims: dict | None = None,
                       rtol: float = 1e-4, atol: float = 1e-5) -> Agreement:
    """Run the IR function and ``torch_module`` on ``inputs``; report their agreement."""
    with torch.no_grad():
        want = _flatten(torch_module(*inputs))
        got = _flatten(run_function(mod, fn_name, inputs))
    if len(want) != len(got):
        raise AssertionError(f"torch returned {len(want)} tensors, the IR {len(got)}")
    max_abs = max_rel = 0.0
    ok = True
    for w, g in zip(want, got):
        if w.shape != g.shape or w.dtype != g.dtype:
            raise AssertionError(f"output mismatch: torch {tuple(w.shape)} {w.dtype}, "
                                 f"IR {tuple(g.shape)} {g.dtype}")
        if w.is_floating_point():
            diff = (w - g).abs()
            max_abs = max(max_abs, float(diff.max()) if diff.numel() else 0.0)
            max_rel = max(max_rel, float((diff / w.abs().clamp_min(1e-6)).max()) if diff.numel() else 0.0)
            ok &= torch.allclose(g, w, rtol=rtol, atol=atol)
        else:
            ok &= torch.equal(g, w)
    return Agreement(dict(dims or {}), max_abs, max_rel, bool(ok))
