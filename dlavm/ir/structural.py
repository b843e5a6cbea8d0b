"""Structural equality and hashing of graph IR functions.

Two functions are structurally equal when they compute the same DAG: same
ops, attributes, literals, weight names and types, with parameters matched by
position (parameter and value names do not matter). Sharing is respected: a
node used twice in one graph must correspond to one node used twice in the
other. Both walks are iterative.
"""
from __future__ import annotations

from .node import Call, Constant, Function, GetItem, Literal, Node, Tuple, Var
from .traversal import post_order


def _local_key(node: Node, param_index: dict):
    """Everything about a node except its inputs."""
    if isinstance(node, Var):
        return ("var", param_index.get(node, node.name), node.type)
    if isinstance(node, Constant):
        return ("const", node.name, node.type)
    if isinstance(node, Literal):
        return ("lit", type(node.value).__name__, node.value, node.type.dtype)
    if isinstance(node, Call):
        return ("call", node.op.name, _attrs_key(node.attrs), len(node.args))
    if isinstance(node, Tuple):
        return ("tuple", len(node.fields))
    if isinstance(node, GetItem):
        return ("getitem", node.index)
    raise TypeError(type(node).__name__)


def _attrs_key(attrs: dict):
    return tuple((k, _freeze(v)) for k, v in attrs.items())


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, float) and v != v:  # NaN compares equal to itself here
        return ("nan",)
    return (type(v).__name__, v)


def structural_hash(fn: Function) -> int:
    """A hash equal for structurally equal functions."""
    index = {p: i for i, p in enumerate(fn.params)}
    memo: dict = {}
    for node in post_order(fn.body):
        memo[node] = hash((_local_key(node, index), tuple(memo[c] for c in node.inputs())))
    return hash((tuple(p.type for p in fn.params), memo[fn.body]))


def structural_equal(a: Function, b: Function) -> bool:
    """True if ``a`` and ``b`` compute the same graph (see module docstring)."""
    if len(a.params) != len(b.params):
        return False
    ia = {p: i for i, p in enumerate(a.params)}
    ib = {p: i for i, p in enumerate(b.params)}
    fwd: dict = {}
    bwd: dict = {}
    for pa, pb in zip(a.params, b.params):
        if pa.type != pb.type:
            return False
        fwd[pa], bwd[pb] = pb, pa
    stack = [(a.body, b.body)]
    while stack:
        x, y = stack.pop()
        if x in fwd or y in bwd:
            if fwd.get(x) is not y or bwd.get(y) is not x:
                return False
            continue
        if type(x) is not type(y) or x.type != y.type:
            return False
        if _local_key(x, ia) != _local_key(y, ib):
            return False
        fwd[x], bwd[y] = y, x
        xs, ys = x.inputs(), y.inputs()
        if len(xs) != len(ys):
            return False
        stack.extend(zip(xs, ys))
    return True
