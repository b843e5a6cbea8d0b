"""Well-formedness checks of the graph IR."""
from __future__ import annotations

from .node import Call, Constant, Function, Module, Var
from .op import IRError
from .traversal import post_order


def verify_function(fn: Function, params: dict | None = None, after: str = "") -> None:
    """Raise ``IRError`` unless: every ``Var`` used is a parameter of ``fn``,
    parameter names are unique, every weight exists in ``params`` (when given)
    with the declared shape, and every call's type still matches its relation."""
    ctx = f" (after pass '{after}')" if after else ""
    names = [p.name for p in fn.params]
    if len(set(names)) != len(names):
        raise IRError(f"function '{fn.name}' has duplicate parameter names{ctx}")
    declared = set(fn.params)
    for node in post_order(fn.body):
        if isinstance(node, Var) and node not in declared:
            raise IRError(f"function '{fn.name}' uses %{node.name}, which is not a parameter{ctx}")
        if isinstance(node, Constant) and params is not None:
            if node.name not in params:
                raise IRError(f"function '{fn.name}' references unknown weight @{node.name}{ctx}")
            data = params[node.name]
            if data is not None and tuple(data.shape) != tuple(int(d) for d in node.type.shape):
                raise IRError(f"weight @{node.name} has shape {tuple(data.shape)} but the IR "
                              f"says {node.type}{ctx}")
        if isinstance(node, Call):
            again = node.op.type_rel([a.type for a in node.args], node.attrs)
            if again != node.type:
                raise IRError(f"call of '{node.op.name}' has type {node.type} but its relation "
                              f"now gives {again}{ctx}")


def verify_module(mod: Module, after: str = "") -> None:
    for fn in mod.functions.values():
        verify_function(fn, mod.params, after)
