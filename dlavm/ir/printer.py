"""A readable text form of the graph IR.

::

    fn @forward(%x: f32[1, seq, 64]) -> f32[1, seq, 64] {
      %0 = linear(%x, @fc1.weight, @fc1.bias) : f32[1, seq, 256]
      %1 = relu(%0) : f32[1, seq, 256]
      return %1
    }

Values are numbered in post order; weights print as ``@name``; literals
inline. The printer is iterative and deterministic, so its output is usable
as a golden text.
"""
from __future__ import annotations

from .node import Call, Constant, Function, GetItem, Literal, Module, Tuple, Var
from .traversal import post_order


def _fmt_attr(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_attr(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _fmt_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_fmt_attr(v)}" for k, v in attrs.items())


def print_function(fn: Function, show_spans: bool = False) -> str:
    """Return the text of one function."""
    names: dict = {}
    lines: list = []
    for p in fn.params:
        names[p] = f"%{p.name}"
    head = ", ".join(f"%{p.name}: {p.type}" for p in fn.params)
    lines.append(f"fn @{fn.name}({head}) -> {fn.ret_type} {{")
    counter = 0
    for node in post_order(fn.body):
        if node in names:
            continue
        if isinstance(node, Var):
            names[node] = f"%{node.name}"  # free var: printed as is
            continue
        if isinstance(node, Constant):
            names[node] = f"@{node.name}"
            continue
        if isinstance(node, Literal):
            names[node] = repr(node.value) if node.type.dtype in ("float32", "int64", "bool") \
                else f"{node.value!r}:{node.type.dtype}"
            continue
        if isinstance(node, Call):
            args = ", ".join(names[a] for a in node.args)
            attrs = _fmt_attrs(node.attrs)
            rhs = f"{node.op.name}({args}{', ' if args and attrs else ''}{attrs})"
        elif isinstance(node, Tuple):
            rhs = "(" + ", ".join(names[f] for f in node.fields) + ")"
        elif isinstance(node, GetItem):
            rhs = f"{names[node.value]}.{node.index}"
        else:  # pragma: no cover - exhaustive over node kinds
            raise TypeError(type(node).__name__)
        name = f"%{counter}"
        counter += 1
        names[node] = name
        line = f"  {name} = {rhs} : {node.type}"
        if show_spans and node.span is not None:
            line += f"  # {node.span}"
        lines.append(line)
    lines.append(f"  return {names[fn.body]}")
    lines.append("}")
    return "\n".join(lines)


def print_module(mod: Module, show_spans: bool = False) -> str:
    """Return the text of every function of ``mod``, then the weight table."""
    parts = [print_function(fn, show_spans) for fn in mod.functions.values()]
    consts: dict = {}
    for fn in mod.functions.values():
        for node in post_order(fn.body):
            if isinstance(node, Constant):
                consts[node.name] = node.type
    if consts:
        rows = [f"  @{name}: {ty}" for name, ty in sorted(consts.items())]
        parts.append("weights {\n" + "\n".join(rows) + "\n}")
    return "\n\n".join(parts)


def summarize_module(mod: Module) -> str:
    """A short summary: per function, signature, node count and op histogram."""
    from .traversal import count_ops
    from .types import dtype_bytes

    out = []
    for fn in mod.functions.values():
        nodes = post_order(fn.body)
        sig = ", ".join(f"%{p.name}: {p.type}" for p in fn.params)
        out.append(f"fn @{fn.name}({sig}) -> {fn.ret_type}")
        out.append(f"  {len(nodes)} nodes, {sum(1 for n in nodes if isinstance(n, Call))} calls")
        hist = count_ops(fn)
        out.append("  ops: " + ", ".join(f"{k} x{v}" for k, v in hist.items()))
        vars_ = fn.sym_vars()
        if vars_:
            from ..sym import bounds
            out.append("  dynamic: " + ", ".join(
                f"{v} in [{bounds(v)[0]}, {bounds(v)[1]}]" for v in vars_))
    total = 0
    seen: dict = {}
    for fn in mod.functions.values():
        for node in post_order(fn.body):
            if isinstance(node, Constant) and node.name not in seen:
                seen[node.name] = int(node.type.numel()) * dtype_bytes(node.type.dtype)
    total = sum(seen.values())
    out.append(f"weights: {len(seen)} tensors, {total / 2**20:.2f} MiB")
    return "\n".join(out)
