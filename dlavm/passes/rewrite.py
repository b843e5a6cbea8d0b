"""A small rewrite engine: rules are data, applied bottom-up to a fixed point.

A ``Rule`` names the op it fires on and a function ``(node) -> Node | None``
that returns a replacement or ``None``. ``rewrite(fn, rules)`` rebuilds the
graph with a ``Mutator``, offering each rebuilt call to the rules for its op
until none fires, so rules compose (a rule may produce a node another rule
simplifies) without any rule knowing of the others - the tinygrad
``PatternMatcher`` idea over our IR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Call, Function, Mutator, Node

MAX_STEPS_PER_NODE = 64


@dataclass(frozen=True)
class Rule:
    """``fn(node)`` returns a replacement for a call of ``op`` or None."""

    name: str
    op: str
    fn: Callable


class _Rewriter(Mutator):
    def __init__(self, rules, stats: dict, uses: dict | None):
        super().__init__()
        self.by_op: dict = {}
        for r in rules:
            self.by_op.setdefault(r.op, []).append(r)
        self.stats = stats
        self.uses = uses

    def visit_call(self, node: Call) -> Node:
        old_uses = self.uses.get(node) if self.uses is not None else None
        cur = super().visit_call(node)
        for _ in range(MAX_STEPS_PER_NODE):
            if old_uses is not None:
                self.uses.setdefault(cur, old_uses)
            if not isinstance(cur, Call):
                return cur
            for rule in self.by_op.get(cur.op.name, ()):
                out = rule.fn(cur)
                if out is not None and out is not cur:
                    if out.type != cur.type:
                        raise AssertionError(f"rule '{rule.name}' changed the type of a "
                                             f"'{cur.op.name}' from {cur.type} to {out.type}")
                    self.stats[rule.name] = self.stats.get(rule.name, 0) + 1
                    cur = out
                    break
            else:
                return cur
        raise RuntimeError(f"rewrite rules did not reach a fixed point on '{node.op.name}'")


def rewrite(fn: Function, rules, stats: dict | None = None, uses: dict | None = None) -> Function:
    """Apply ``rules`` to every call of ``fn`` bottom-up until none fires.

    Guarantees the result has the same parameters and result type; ``stats``
    (if given) counts the firings per rule name. ``uses`` (a ``dlavm.ir.users``
    map, if given) stays exact while rewriting: a rebuilt or replaced node
    inherits the users of the node it stands for, so rules that ask whether a
    value has one user see the answer for the graph being built.
    """
    return _Rewriter(rules, stats if stats is not None else {}, uses).mutate_function(fn)
