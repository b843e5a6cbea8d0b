"""The simplification rule table.

Each entry is ``Rule(name, pattern, rewrite)`` (see :mod:`dlavm.sym.pattern`).
The table is tried, in order, on every newly interned node of the pattern's
kind; the first rule whose rewrite returns a value replaces the node. Every
rule must be *sound for all integers* (negative values included): where a
rule depends on signs or ranges it checks the operands' bounds, which are
themselves sound. A rule may turn an expression that would divide by zero
into one that does not (e.g. ``0 // y -> 0``), never the reverse.

To add a rule: write the pattern and a rewrite returning the replacement or
None, append it to ``RULES`` next to its kind, and add a test in
``tests/sym/test_sym_rules.py`` that checks it fires and one property test
that random expressions still evaluate like Python (doc/sym.md).
"""
from __future__ import annotations

from math import gcd

from .expr import const
from .ops import (add, floordiv, lin, linear, linear_combination, mod, not_, prove_le, scale,
                  smax, smin, split_multiples, sub)
from .pattern import C, Pat, Rule, X, register

# Kinds whose value is fully determined when their interval is one point.
# (Sums and products are left alone: a variable declared [5, 5] stays a
# variable so that evaluate() still checks the value it is given.)
_DECIDABLE = ("floordiv", "mod", "min", "max", "lt", "eq", "ne", "and", "or", "select")


def _pos(v):
    return v > 0


def _neg(v):
    return v < 0


def _gt1(v):
    return v > 1


def _decided(n):
    if n._lo == n._hi and n._lo.__class__ is int:
        return const(n._lo)
    return None


# -- floordiv ------------------------------------------------------------------
def _fdiv_split(x, d):
    """(q*d + r) // d == q + r // d: peel off terms whose coefficient d divides,
    and reduce the constant into [0, d)."""
    c, ts = lin(x)
    q: dict = {}
    r: dict = {}
    for t, k in ts:
        if k % d == 0:
            q[t] = k // d
        else:
            r[t] = k
    qc, rc = divmod(c, d)
    if not q and qc == 0:
        return None
    return linear_combination(((linear(q, qc), 1), (floordiv(linear(r, rc), d), 1)))


def _common_factor(x, d):
    """g with g | d and g | every coefficient of x (None if 1)."""
    c, ts = lin(x)
    g = gcd(d, c)
    for _, k in ts:
        g = gcd(g, k)
    return g if g > 1 else None


def _fdiv_gcd(x, d):
    """(g*x') // (g*d') == x' // d' for g > 0."""
    g = _common_factor(x, d)
    if g is None:
        return None
    c, ts = lin(x)
    return floordiv(linear({t: k // g for t, k in ts}, c // g), d // g)


# -- mod ---------------------------------------------------------------------------
def _mod_reduce(x, d):
    """x mod d only depends on x's coefficients and constant modulo d."""
    c, ts = lin(x)
    red = {t: k % d for t, k in ts}
    if all(red[t] == k for t, k in ts) and 0 <= c < d:
        return None
    return mod(linear(red, c % d), d)


def _mod_gcd(x, d):
    """(g*x') mod (g*d') == g * (x' mod d') for g > 0."""
    g = _common_factor(x, d)
    if g is None:
        return None
    c, ts = lin(x)
    return scale(mod(linear({t: k // g for t, k in ts}, c // g), d // g), g)


def _mod_one_period(x, d):
    """If all of x's range lies in one period [k*d, k*d + d), x mod d == x - k*d."""
    lo, hi = x._lo, x._hi
    if lo.__class__ is int and hi.__class__ is int and lo // d == hi // d:
        return sub(x, lo // d * d)
    return None


def _below_divisor(x, y) -> bool:
    """Bounds prove 0 <= x < y."""
    # Constant divisors need only the interval test (and "decided by bounds"
    # already covers them); the difference test is for symbolic ones.
    return x._lo >= 0 and (x._hi < y._lo or (y.kind != "const" and prove_le(add(x, 1), y)))


def _fdiv_split_symbolic(x, y):
    """(q*y + r) // y == q + r // y for symbolic y (any nonzero value)."""
    qr = split_multiples(x, y)
    return None if qr is None else add(qr[0], floordiv(qr[1], y))


def _mod_split_symbolic(x, y):
    """(q*y + r) mod y == r mod y."""
    qr = split_multiples(x, y)
    return None if qr is None else mod(qr[1], y)


# -- min / max ---------------------------------------------------------------------
def _drop_dominated(n):
    """Drop operands that bounds prove never decide the min (max)."""
    if n.kind == "min":
        def covers(a, b):  # a makes b redundant
            return prove_le(a, b)
    else:
        def covers(a, b):
            return prove_le(b, a)
    keep: list = []
    for o in n.args:
        if any(covers(k, o) for k in keep):
            continue
        keep = [k for k in keep if not covers(o, k)]
        keep.append(o)
    if len(keep) == len(n.args):
        return None
    return smin(*keep) if n.kind == "min" else smax(*keep)


# -- add --------------------------------------------------------------------------------
def _recombine_divmod(n):
    """k*d*(x // d) + k*(x mod d) == k*x (d a nonzero constant)."""
    terms = dict(zip(n.args, n.data[1:]))
    for t, k in terms.items():
        if t.kind != "mod" or t.args[1].kind != "const":
            continue
        x, d = t.args[0], t.args[1].data[0]
        q = floordiv(x, d)
        if terms.get(q) == k * d:
            rest = {u: ku for u, ku in terms.items() if u is not t and u is not q}
            return linear_combination(((linear(rest, n.data[0]), 1), (x, k)))
    return None


RULES = [
    # Constant folding and identities first: cheap, and the most specific.
    Rule("fold floordiv", Pat("floordiv", (C("a"), C("b"))), lambda a, b: a // b),
    Rule("fold mod", Pat("mod", (C("a"), C("b"))), lambda a, b: a % b),
    Rule("floordiv by negative constant", Pat("floordiv", (X("x"), C("d", _neg))),
         lambda x, d: floordiv(scale(x, -1), -d)),
    Rule("floordiv by one", Pat("floordiv", (X("x"), C("d", lambda v: v == 1))),
         lambda x, d: x),
    Rule("floordiv of zero", Pat("floordiv", (C("a", lambda v: v == 0), X("y"))),
         lambda a, y: 0),
    Rule("mod by negative constant", Pat("mod", (X("x"), C("d", _neg))),
         lambda x, d: scale(mod(scale(x, -1), -d), -1)),
    Rule("mod by one", Pat("mod", (X("x"), C("d", lambda v: v == 1))), lambda x, d: 0),
    Rule("mod of zero", Pat("mod", (C("a", lambda v: v == 0), X("y"))), lambda a, y: 0),
    # A node whose interval is one point is that constant.
    Rule("decided by bounds", Pat(_DECIDABLE, name="n"), _decided),
    # floordiv by a positive constant or a symbolic divisor.
    Rule("nested floordiv", Pat("floordiv", (Pat("floordiv", (X("x"), C("a", _pos))),
                                             C("b", _pos))),
         lambda x, a, b: floordiv(x, a * b)),
    Rule("floordiv splits multiples", Pat("floordiv", (X("x"), C("d", _gt1))), _fdiv_split),
    Rule("floordiv common factor", Pat("floordiv", (X("x"), C("d", _gt1))), _fdiv_gcd),
    Rule("floordiv below divisor", Pat("floordiv", (X("x"), X("y"))),
         lambda x, y: 0 if _below_divisor(x, y) else None),
    Rule("floordiv splits symbolic multiples", Pat("floordiv", (X("x"), X("y"))),
         _fdiv_split_symbolic),
    # mod by a positive constant or a symbolic divisor.
    Rule("nested mod", Pat("mod", (Pat("mod", (X("x"), C("a", _pos))), C("b", _pos))),
         lambda x, a, b: mod(x, b) if a % b == 0 else None),
    Rule("mod reduces coefficients", Pat("mod", (X("x"), C("d", _gt1))), _mod_reduce),
    Rule("mod common factor", Pat("mod", (X("x"), C("d", _gt1))), _mod_gcd),
    Rule("mod within one period", Pat("mod", (X("x"), C("d", _pos))), _mod_one_period),
    Rule("mod below divisor", Pat("mod", (X("x"), X("y"))),
         lambda x, y: x if _below_divisor(x, y) else None),
    Rule("mod splits symbolic multiples", Pat("mod", (X("x"), X("y"))), _mod_split_symbolic),
    Rule("min/max drops dominated operands", Pat(("min", "max"), name="n"), _drop_dominated),
    Rule("recombine floordiv and mod", Pat("add", name="n"), _recombine_divmod),
    Rule("select on constant", Pat("select", (C("c"), X("a"), X("b"))),
         lambda c, a, b: a if c else b),
    Rule("select with equal branches", Pat("select", (X("c"), X("a"), X("a"))),
         lambda c, a: a),
    Rule("select is its condition", Pat("select", (X("c"), C(None, lambda v: v == 1),
                                                   C(None, lambda v: v == 0))),
         lambda c: c),
    Rule("select is the negated condition", Pat("select", (X("c"), C(None, lambda v: v == 0),
                                                           C(None, lambda v: v == 1))),
         lambda c: not_(c)),
]

register(RULES)
