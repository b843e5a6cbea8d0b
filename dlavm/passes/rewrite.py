"""A small rewrite engine: rules are data, applied bottom-up to a fixed point.

A ``Rule`` names the op it fires on, the attribute values it applies to and
a function ``(node) -> Node | None`` that returns a replacement or ``None``.
``rewrite(fn, rules)`` rebuilds the graph with a ``Mutator``, offering each
rebuilt call to the rules for its op until none fires, so rules compose (a
rule may produce a node another rule simplifies) without any rule knowing of
the others - the tinygrad ``PatternMatcher`` idea over our IR.

A rule that declares its attributes (``attrs=``) must account for every
attribute its op declares: each is either pinned to the values the rule is
valid for, or marked ``READ`` (the rule's function looks at it). A rule that
would silently ignore an attribute (``div(x, 1)`` is not ``x`` under
``rounding_mode="floor"``) cannot be written: the rule is refused when it is
made, naming the attribute. Every replacement must keep the call's type
(dtype and shape, so no rule can change a broadcast); the engine checks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from ..ir import Call, Function, Mutator, Node, get_op

MAX_STEPS_PER_NODE = 64


class RewriteError(RuntimeError):
    """A rule is malformed or broke the engine's contract (names the rule and op)."""


class _Read:
    def __repr__(self) -> str:
        return "READ"


#: ``Rule(attrs={name: READ})``: the rule's function takes this attribute into account itself.
READ = _Read()


def _attr_ok(want, value) -> bool:
    if want is READ:
        return True
    if callable(want):
        return bool(want(value))
    return value == want


@dataclass(frozen=True)
class Rule:
    """``fn(node)`` returns a replacement for a call of ``op`` or None.

    ``attrs`` maps each declared attribute of ``op`` to the value a call
    must have, a predicate on the value, or ``READ``; a rule made with
    ``attrs`` that leaves one out is refused (module docstring). Without
    ``attrs`` nothing is checked (tables whose patterns test attributes
    themselves). The stored ``fn`` checks ``attrs`` first, so a table that
    embeds this rule's ``fn`` elsewhere (legalize reuses canonicalize's)
    keeps the precondition.
    """

    name: str
    op: str
    fn: Callable
    attrs: Mapping | None = None

    def __post_init__(self):
        if self.attrs is None:
            return
        declared = set(get_op(self.op).attr_specs)
        unknown = sorted(set(self.attrs) - declared)
        if unknown:
            raise RewriteError(f"rule '{self.name}': op '{self.op}' has no attribute(s) {unknown}")
        silent = sorted(declared - set(self.attrs))
        if silent:
            raise RewriteError(f"rule '{self.name}' does not say which values of attribute(s) {silent} "
                               f"of op '{self.op}' it is valid for: pin them in attrs= or mark them READ")
        body, wanted = self.fn, dict(self.attrs)

        def guarded(node):
            if all(_attr_ok(w, node.attrs[k]) for k, w in wanted.items()):
                return body(node)
            return None
        object.__setattr__(self, "fn", guarded)


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
                        raise RewriteError(f"rule '{rule.name}' changed the type of a "
                                           f"'{cur.op.name}' from {cur.type} to {out.type}")
                    self.stats[rule.name] = self.stats.get(rule.name, 0) + 1
                    _give_span(out, cur.span)
                    cur = out
                    break
            else:
                return cur
        raise RewriteError(f"rewrite rules did not reach a fixed point on '{node.op.name}'")


def _give_span(node: Node, span, depth: int = 4) -> None:
    """The calls a rule just made (no span yet, a few levels deep) report the source they stand for."""
    stack = [(node, 0)]
    while span is not None and stack:
        n, d = stack.pop()
        if isinstance(n, Call) and n.span is None:
            n.span = span
            if d < depth:
                stack.extend((a, d + 1) for a in n.args)


def rewrite(fn: Function, rules, stats: dict | None = None, uses: dict | None = None) -> Function:
    """Apply ``rules`` to every call of ``fn`` bottom-up until none fires.

    Guarantees the result has the same parameters and result type, and every
    replaced call's type is kept; ``stats`` (if given) counts the firings per
    rule name. ``uses`` (a ``dlavm.ir.users`` map, if given) stays exact while
    rewriting: a rebuilt or replaced node inherits the users of the node it
    stands for, so rules that ask whether a value has one user see the answer
    for the graph being built.
    """
    return _Rewriter(rules, stats if stats is not None else {}, uses).mutate_function(fn)
