"""Run a graph-IR function on torch for any binding of its dynamic dims.

Host ops run the kernels of ``dlavm.reference.kernels``; a device op runs the
reference kernel of its spec (``dlavm.devops``, doc/device_ops.md).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import host_ops, sym
from ..ir import Call, Constant, Function, GetItem, IRError, Literal, Module, Tuple, Var, Visitor
from ..ir.op import DEVICE_PREFIX, device_spec
from ..ir.types import TensorType
from .kernels import CREATION, DTYPE, KERNELS


class ExecutionError(Exception):
    """The reference executor could not run a graph (bad inputs, missing weights)."""


def bind_dims(fn: Function, inputs) -> dict:
    """Solve the dynamic dims of ``fn`` from concrete input shapes.

    Every parameter dim that is a bare variable binds it; then every dim is
    evaluated and checked against the input (and every variable against its
    declared bounds). Raises ``ExecutionError`` naming the input and dim.
    """
    if len(inputs) != len(fn.params):
        raise ExecutionError(f"function '{fn.name}' takes {len(fn.params)} inputs "
                             f"({', '.join(p.name for p in fn.params)}), got {len(inputs)}")
    env: dict = {}
    for p, x in zip(fn.params, inputs):
        shape = tuple(x.shape)
        if len(shape) != p.type.ndim:
            raise ExecutionError(f"input '{p.name}' must have rank {p.type.ndim} ({p.type}), got shape {shape}")
        for d, n in zip(p.type.shape, shape):
            if d.kind == "var" and d not in env:
                lo, hi = sym.bounds(d)
                if (lo is not None and n < lo) or (hi is not None and n > hi):
                    raise ExecutionError(
                        f"input '{p.name}': dim {d}={n} is outside its bounds [{lo}, {hi}]")
                env[d] = n
    for p, x in zip(fn.params, inputs):
        for i, (d, n) in enumerate(zip(p.type.shape, tuple(x.shape))):
            try:
                want = sym.evaluate(d, env)
            except Exception as e:  # an unbound variable or a bound violation
                raise ExecutionError(f"input '{p.name}' dim {i} ({d}): {e}") from None
            if want != n:
                raise ExecutionError(f"input '{p.name}' dim {i} must be {d} = {want}, got {n}")
        if str(x.dtype).removeprefix("torch.") != p.type.dtype:
            raise ExecutionError(f"input '{p.name}' must be {p.type.dtype}, got {x.dtype}")
    return env


class _Interpreter(Visitor):
    def __init__(self, params: dict, env: dict, inputs: dict, device):
        super().__init__()
        self.params, self.env, self.inputs, self.device = params, env, inputs, device
        self._sym_memo: dict = {}

    def ev(self, e) -> int:
        v = self._sym_memo.get(e)
        if v is None:
            v = self._sym_memo[e] = sym.evaluate(e, self.env)
        return v

    def visit_var(self, node: Var):
        return self.inputs[node]

    def visit_constant(self, node: Constant):
        data = self.params.get(node.name)
        if data is None:
            raise ExecutionError(f"weight @{node.name} has no data (a shape-only model cannot be executed)")
        t = torch.from_numpy(data) if not isinstance(data, torch.Tensor) else data
        return t.to(self.device)

    def visit_literal(self, node: Literal):
        return node.value

    def visit_call(self, node: Call):
        if node.op.name.startswith(DEVICE_PREFIX):
            try:
                fn = device_spec(node.op, "reference executor").reference
            except IRError as e:
                raise ExecutionError(str(e)) from None
        else:
            fn = KERNELS.get(node.op.name)
            if fn is None and host_ops.get(node.op.name) is not None:
                fn = _user_host_op(node)
        if fn is None:
            raise ExecutionError(f"the reference executor has no kernel for op '{node.op.name}'")
        args = [self.memo[a] for a in node.args]
        if node.op.name in CREATION:
            out = fn(args, node.attrs, self.ev, device=self.device)
        else:
            out = fn(args, node.attrs, self.ev)
        want = node.type
        if isinstance(want, TensorType) and out.dtype != DTYPE[want.dtype]:
            raise ExecutionError(f"op '{node.op.name}' produced {out.dtype}, the IR says {want.dtype}"
                                 + (f" at {node.span}" if node.span else ""))
        return out

    def visit_tuple(self, node: Tuple):
        return tuple(self.memo[f] for f in node.fields)

    def visit_get_item(self, node: GetItem):
        return self.memo[node.value][node.index]


def _user_host_op(node: Call):
    """A kernel running user host op ``node`` (``@dlavm.host_op``) on numpy copies of its operands; its
    result must have the node's shape (it is converted to the node's dtype)."""
    def run(args, attrs, ev):
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), "cpu")
        operands = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a for a in args]
        try:
            out = np.asarray(host_ops.call(node.op.name, attrs["call"], operands))
        except Exception as e:  # noqa: BLE001 -- the user's function may raise anything
            raise ExecutionError(f"host op '{node.op.name}' failed: {type(e).__name__}: {e}") from e
        want = tuple(ev(d) for d in attrs["shape"])
        if out.shape != want:
            raise ExecutionError(f"host op '{node.op.name}' returned shape {out.shape}, the model expects {want}"
                                 + (f" at {node.span}" if node.span else ""))
        # np.require, not np.ascontiguousarray: the latter makes a 0-d result 1-d
        return torch.from_numpy(np.require(out.astype(attrs["dtype"]), requirements="C")).to(device)
    return run


def run_function(mod: Module, name: str, inputs, device: str | None = None):
    """Run function ``name`` of ``mod`` on torch tensors ``inputs``.

    Returns a tensor, or a tuple for tuple-typed results. ``device`` defaults to
    the inputs' device. Shapes are checked against the IR (dims and bounds).
    """
    fn = mod[name]
    inputs = [torch.as_tensor(x) for x in inputs]
    env = bind_dims(fn, inputs)
    device = device or (inputs[0].device if inputs else "cpu")
    interp = _Interpreter(mod.params, env, {p: x.to(device) for p, x in zip(fn.params, inputs)}, device)
    return interp.run(fn.body)
