"""A small pattern matcher for table-driven rewriting (in the spirit of tinygrad's UPat).

A rule is ``Rule(name, pattern, rewrite)``. A :class:`Pat` matches a node by
kind (one kind or a tuple of kinds), optionally its operands (positionally,
same arity), and an optional predicate; named sub-patterns bind the matched
node (or, for ``const`` patterns, the plain ``int`` value). A name used twice
must bind the same thing, so ``select(c, a, a)`` is written with ``a`` twice.
``rewrite(**bindings)`` returns a replacement (Expr or int) or None for
"does not apply". :func:`rewrite` tries a node's rules in table order and
returns the first replacement.

Replacements are built with the public constructors, which simplify their
own results; so one successful rule already yields a fixed point, and the
nesting of constructor calls is bounded by the rules, not by the depth of the
expression.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .expr import as_expr


class Pat:
    """Pattern over a node: ``Pat(kind, src, name, where)`` (all optional)."""

    __slots__ = ("kinds", "src", "name", "where", "is_const")

    def __init__(self, kind=None, src=None, name: Optional[str] = None,
                 where: Optional[Callable] = None):
        self.kinds = (kind,) if isinstance(kind, str) else (tuple(kind) if kind else None)
        self.src = tuple(src) if src is not None else None
        self.name = name
        self.where = where
        self.is_const = self.kinds == ("const",)

    def __repr__(self):
        k = "|".join(self.kinds) if self.kinds else "*"
        inner = "" if self.src is None else "(" + ", ".join(map(repr, self.src)) + ")"
        return f"{k}{inner}" + (f":{self.name}" if self.name else "")


def X(name: str, where: Optional[Callable] = None) -> Pat:
    """Any expression, bound to ``name`` (predicate receives the Expr)."""
    return Pat(None, None, name, where)


def C(name: Optional[str] = None, where: Optional[Callable] = None) -> Pat:
    """A constant; binds its ``int`` value (predicate receives the int)."""
    return Pat("const", None, name, where)


@dataclass(frozen=True)
class Rule:
    """One rewrite: where ``pattern`` matches, ``fn(**bindings)`` may replace the node."""

    name: str
    pattern: Pat
    fn: Callable

    @property
    def kinds(self) -> tuple:
        return self.pattern.kinds


def match(pat: Pat, e) -> Optional[dict]:
    """Bindings if ``pat`` matches expression ``e``, else None (iterative)."""
    binds: dict = {}
    stack = [(pat, e)]
    while stack:
        p, x = stack.pop()
        if p.kinds is not None and x.kind not in p.kinds:
            return None
        if p.src is not None:
            if len(p.src) != len(x.args):
                return None
            stack.extend(zip(p.src, x.args))
        v = x.data[0] if p.is_const else x
        if p.name is not None:
            if p.name in binds:
                old = binds[p.name]
                if old is not v and old != v:
                    return None
            else:
                binds[p.name] = v
        if p.where is not None and not p.where(v):
            return None
    return binds


_INDEX: dict = {}
_TABLES: list = []


def register(rules) -> None:
    """Add rules (in order) to the active table, indexed by the kinds they match."""
    for r in rules:
        if not r.kinds:
            raise ValueError(f"rule {r.name!r}: the top pattern must name its kind(s)")
        _TABLES.append(r)
        for k in r.kinds:
            _INDEX.setdefault(k, []).append(r)


def rules_for(kind: str) -> tuple:
    """The rules tried on nodes of ``kind``, in order."""
    return tuple(_INDEX.get(kind, ()))


def rewrite(node):
    """The first replacement any rule for ``node.kind`` produces, or None."""
    rules = _INDEX.get(node.kind)
    if not rules:
        return None
    for r in rules:
        b = match(r.pattern, node)
        if b is None:
            continue
        out = r.fn(**b)
        if out is None:
            continue
        out = as_expr(out)
        if out is not node:
            return out
    return None
