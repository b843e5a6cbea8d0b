"""Compare graph-IR execution, or a device's outputs, with torch eager on the same inputs.

A comparison that compared nothing (no output values) is refused with :class:`NothingCompared`,
never reported as agreement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .executor import run_function

#: Largest ``max |device - torch| / max |torch|`` against torch with the same quantised weights
#: that counts as agreement (the device computes in fp16 with fp32 accumulation).
DEVICE_TOLERANCE = 5e-3


class NothingCompared(ValueError):
    """A check whose outputs hold no values: it would "pass" without comparing anything."""


def _where(dims: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in dims.items()) or "example inputs"


@dataclass
class Agreement:
    """Result of one comparison: max abs / rel error, whether allclose held, and how many output
    values were compared (always > 0)."""

    dims: dict
    max_abs: float
    max_rel: float
    ok: bool
    compared: int = 0

    def __str__(self) -> str:
        return f"{_where(self.dims)}: max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e} " \
               f"over {self.compared} values -> {'matches torch' if self.ok else 'MISMATCH'}"


def _flatten(x):
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flatten(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _flatten(item)]
    if hasattr(x, "to_tuple"):
        return _flatten(x.to_tuple())
    raise TypeError(f"cannot compare output of type {type(x).__name__}")


def compare_with_torch(mod, fn_name: str, torch_module, inputs, dims: dict | None = None,
                       rtol: float = 1e-4, atol: float = 1e-5) -> Agreement:
    """Run the IR function and ``torch_module`` on ``inputs``; report their agreement.

    Raises :class:`NothingCompared` when the outputs hold no values."""
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
    compared = sum(w.numel() for w in want)
    if not compared:
        raise NothingCompared(f"{type(torch_module).__name__} at {_where(dims or {})}: its outputs hold no values "
                              f"({len(want)} tensor(s) of shapes {[list(w.shape) for w in want]}): the check would "
                              "compare nothing")
    return Agreement(dict(dims or {}), max_abs, max_rel, bool(ok), compared)


@dataclass
class DeviceAgreement:
    """A device's outputs against torch with the same (fake-)quantised weights and against fp32 torch.

    Errors are ``max |device - torch| / max |torch|`` over every output; ``ok`` when the error
    against quantised torch is at most :data:`DEVICE_TOLERANCE`."""

    dims: dict
    err_quantised: float
    err_fp32: float
    compared: int

    @property
    def ok(self) -> bool:
        return self.err_quantised <= DEVICE_TOLERANCE

    def __str__(self) -> str:
        return (f"{_where(self.dims)}: error vs quantised torch {self.err_quantised:.2e} "
                f"({'ok' if self.ok else 'TOO LARGE'}), vs fp32 torch {self.err_fp32:.2e} "
                f"over {self.compared} values")


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"output shape {list(got.shape)} differs from torch's {list(want.shape)}")
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    return diff / scale if scale else diff


def compare_device_with_torch(outputs, reference_mod, torch_module, inputs, dims: dict | None = None,
                              fn_name: str = "forward") -> DeviceAgreement:
    """``outputs`` (numpy arrays from the device) against ``reference_mod`` (the imported module with the
    device's quantised weights, ``dlavm.passes.fake_quantized_module``) run on the reference executor,
    and against ``torch_module`` in fp32, on the same ``inputs`` (torch tensors or numpy arrays)."""
    inputs = [torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    with torch.no_grad():
        fq = [t.numpy() for t in _flatten(run_function(reference_mod, fn_name, inputs))]
        f32 = [t.numpy() for t in _flatten(torch_module(*inputs))]
    outputs = [np.asarray(o) for o in outputs]
    if not len(outputs) == len(fq) == len(f32):
        raise AssertionError(f"the device returned {len(outputs)} outputs, the reference {len(fq)}, "
                             f"torch {len(f32)}")
    compared = sum(o.size for o in outputs)
    if not compared:
        raise NothingCompared(f"at {_where(dims or {})} the outputs hold no values: the check would compare "
                              "nothing")
    err_q = max(_rel_err(o, w) for o, w in zip(outputs, fq) if o.size)
    err_32 = max(_rel_err(o, w) for o, w in zip(outputs, f32) if o.size)
    return DeviceAgreement(dict(dims or {}), err_q, err_32, compared)
