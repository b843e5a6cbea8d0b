"""Iterative traversals of the graph IR.

Every walk uses an explicit stack and a dict memo, so a 32-layer LLM graph
(tens of thousands of nodes, chains thousands deep) is walked in linear time
with no recursion. ``Visitor`` is the analogue of ``torch.fx.Interpreter``
(one method per node kind, results memoised per node) and ``Mutator`` of
``torch.fx.Transformer`` (rebuilds a node only when its inputs changed).
"""
from __future__ import annotations

from .node import Call, Constant, Function, GetItem, Literal, Node, Tuple, Var


def post_order(roots) -> list:
    """All nodes reachable from ``roots``, each once, inputs before users.

    The order is deterministic: inputs are visited left to right.
    """
    if isinstance(roots, Node):
        roots = (roots,)
    order: list = []
    done: set = set()
    for root in roots:
        if id(root) in done:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for child in reversed(node.inputs()):
                if id(child) not in done:
                    stack.append((child, False))
    return order


def users(roots) -> dict:
    """Map each node to the list of nodes that use it (in post order)."""
    out: dict = {}
    for node in post_order(roots):
        out.setdefault(node, [])
        for child in node.inputs():
            out.setdefault(child, []).append(node)
    return out


class Visitor:
    """Visit every node once, inputs first; ``self.memo[node]`` holds each result.

    Override ``visit_var``, ``visit_constant``, ``visit_literal``, ``visit_call``,
    ``visit_tuple``, ``visit_get_item``; results of inputs are in ``self.memo``.
    """

    def __init__(self):
        self.memo: dict = {}

    def run(self, roots):
        """Visit all nodes reachable from ``roots``; return the result of the last root."""
        if isinstance(roots, Node):
            roots = (roots,)
        for node in post_order(roots):
            if node not in self.memo:
                self.memo[node] = self.visit(node)
        return self.memo[roots[-1]] if roots else None

    def visit(self, node: Node):
        method = _DISPATCH.get(type(node))
        if method is None:
            raise TypeError(f"unknown IR node kind {type(node).__name__}")
        return getattr(self, method)(node)

    def visit_var(self, node: Var):
        return None

    def visit_constant(self, node: Constant):
        return None

    def visit_literal(self, node: Literal):
        return None

    def visit_call(self, node: Call):
        return None

    def visit_tuple(self, node: Tuple):
        return None

    def visit_get_item(self, node: GetItem):
        return None


_DISPATCH = {
    Var: "visit_var",
    Constant: "visit_constant",
    Literal: "visit_literal",
    Call: "visit_call",
    Tuple: "visit_tuple",
    GetItem: "visit_get_item",
}


class Mutator(Visitor):
    """Rebuild a graph bottom-up. Each ``visit_*`` returns the replacement node.

    ``self.new(node)`` is the already-rewritten version of an input. The
    defaults copy a node only if one of its inputs changed, so an identity
    ``Mutator`` returns the very same graph.
    """

    def new(self, node: Node) -> Node:
        return self.memo[node]

    def visit_var(self, node):
        return node

    def visit_constant(self, node):
        return node

    def visit_literal(self, node):
        return node

    def visit_call(self, node: Call):
        args = tuple(self.new(a) for a in node.args)
        if all(a is b for a, b in zip(args, node.args)):
            return node
        return Call(node.op, args, node.attrs, span=node.span)

    def visit_tuple(self, node: Tuple):
        fields = tuple(self.new(f) for f in node.fields)
        if all(a is b for a, b in zip(fields, node.fields)):
            return node
        return Tuple(fields, span=node.span)

    def visit_get_item(self, node: GetItem):
        value = self.new(node.value)
        if isinstance(value, Tuple):
            return value.fields[node.index]
        return node if value is node.value else GetItem(value, node.index, span=node.span)

    def mutate_function(self, fn: Function) -> Function:
        """Return ``fn`` rewritten (the same object if nothing changed)."""
        params = [self.run(p) if p not in self.memo else self.memo[p] for p in fn.params]
        body = self.run(fn.body)
        if body is fn.body and all(a is b for a, b in zip(params, fn.params)):
            return fn
        return Function(fn.name, params, body, dict(fn.attrs))


def count_ops(root) -> dict:
    """Histogram of op names among the calls reachable from ``root``."""
    hist: dict = {}
    for node in post_order(root.body if isinstance(root, Function) else root):
        if isinstance(node, Call):
            hist[node.op.name] = hist.get(node.op.name, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
