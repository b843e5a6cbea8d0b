"""Example device graphs a spec carries for the conformance suite (tests/conformance).

Each spec's ``examples(rng)`` returns :class:`OpExample`\\ s: a device-level
module exercising the op alone (host float inputs -> ``dev.to_device`` ->
the op -> ``dev.to_host``) with one dynamic dim, and the sizes at which its
lowering changes shape on a given target (token-tile edges). The suite runs
every example on the simulator at ``1``, each edge ``e - 1, e, e + 1`` and
the bound, against the spec's reference kernel, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import sym
from ..ir import Constant, Function, Module, TensorType, Var, call

#: The bound of the dynamic dim of every example (small: examples run on the simulator).
BOUND = 40


def seq_dim(bound: int = BOUND) -> sym.Var:
    return sym.Var("seq", 1, bound)


def dims(*shape) -> tuple:
    return tuple(sym.const(d) if isinstance(d, int) else d for d in shape)


def host_input(name: str, *shape) -> Var:
    """A float32 function parameter of ``shape`` (ints or sym dims)."""
    return Var(name, TensorType(dims(*shape), "float32"))


def weight(params: dict, name: str, data: np.ndarray) -> Constant:
    """A float32 weight constant whose data is ``data`` (stored in ``params``)."""
    params[name] = np.asarray(data, dtype=np.float32)
    return Constant(name, TensorType(dims(*params[name].shape), "float32"))


def one_op(op: str, args, params: dict, out_dtype: str = "float32", **attrs) -> Module:
    """``forward(vars) = to_host(op(to_device(var) | weight, ...))``: ``args`` are host inputs
    (``Var``, moved to the device) or weights (``Constant``, passed as they are)."""
    inputs = [a for a in args if isinstance(a, Var)]
    operands = [call("dev.to_device", a) if isinstance(a, Var) else a for a in args]
    out = call("dev.to_host", call(op, *operands, **attrs), dtype=out_dtype)
    return Module({"forward": Function("forward", inputs, out)}, params)


@dataclass(frozen=True)
class OpExample:
    """``module`` runs the op alone; ``edges(target)`` are the sizes of ``dim`` where its lowering
    changes shape on ``target`` (the suite adds 1, the neighbours of each edge and the bound)."""

    name: str
    module: Module
    dim: str = "seq"
    edges: Callable = field(default=lambda target: ())

    def sizes(self, target) -> list:
        """Every size the suite runs: 1, each edge and its neighbours, and the bound, in range."""
        v = next(d for d in self.module["forward"].sym_vars() if d.name == self.dim)
        lo, hi = sym.bounds(v)
        want = {lo, hi}
        for e in self.edges(target):
            want |= {e - 1, e, e + 1}
        return sorted(n for n in want if lo <= n <= hi)


__all__ = ["BOUND", "OpExample", "dims", "host_input", "one_op", "seq_dim", "weight"]
