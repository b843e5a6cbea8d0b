"""Interval bounds of expressions.

Every node carries an inclusive interval ``[_lo, _hi]`` computed once, when
the node is interned, from its operands' intervals (which exist already:
operands are interned first). Nothing here walks an expression, so bounds of
arbitrarily deep expressions cost O(1) per node and never recurse.

Endpoints are ints or ``±INF`` (a float infinity, only ever an endpoint).
The helpers below never form ``inf - inf`` or ``0 * inf`` (an empty product
is 0: a closed interval containing only finite values), and never convert
a huge int to float.

Guarantee (soundness): for every assignment of the free variables within
their declared bounds at which the expression is defined (no division by
zero), its value lies in ``[lo, hi]``. Bounds are exact for sums/products of
independent variables with monotone operators; otherwise they may be wider.
"""
from __future__ import annotations

import math

INF = math.inf


def _is_inf(x) -> bool:
    return x.__class__ is float


def xadd(a, b):
    """a + b for endpoints on the same side (never inf + -inf)."""
    if a.__class__ is float:
        return a
    if b.__class__ is float:
        return b
    return a + b


def xmul(a, b):
    """a * b for endpoints, with 0 * inf = 0."""
    if a == 0 or b == 0:
        return 0
    if a.__class__ is float or b.__class__ is float:
        return INF if (a > 0) == (b > 0) else -INF
    return a * b


def xpow(a, e: int):
    if a.__class__ is float:
        return INF if (a > 0 or e % 2 == 0) else -INF
    return a ** e


def scale_interval(lo, hi, k: int):
    if k == 0:
        return 0, 0
    if k > 0:
        return xmul(lo, k), xmul(hi, k)
    return xmul(hi, k), xmul(lo, k)


def mul_interval(a, b):
    c = (xmul(a[0], b[0]), xmul(a[0], b[1]), xmul(a[1], b[0]), xmul(a[1], b[1]))
    return min(c), max(c)


def pow_interval(lo, hi, e: int):
    if e % 2 == 1 or lo >= 0:
        return xpow(lo, e), xpow(hi, e)
    if hi <= 0:
        return xpow(hi, e), xpow(lo, e)
    return 0, max(xpow(lo, e), xpow(hi, e))


def _fdiv_corner(x, y):
    """floor(x / y) at a corner, y > 0 (y may be +inf), as a bound."""
    if x.__class__ is float:
        return x
    if y.__class__ is float:
        # x / y -> 0 from the side of x's sign as y grows.
        return 0 if x >= 0 else -1
    return x // y


def _fdiv_pos(a, b):
    """Bounds of floor(a / b) for b = [bl, bh] with bl >= 1."""
    # For y > 0 the quotient increases with x; the extreme x decides the side.
    lo = min(_fdiv_corner(a[0], b[0]), _fdiv_corner(a[0], b[1]))
    hi = max(_fdiv_corner(a[1], b[0]), _fdiv_corner(a[1], b[1]))
    return lo, hi


def _neg(iv):
    return -iv[1], -iv[0]


def _split_divisor(b):
    """The nonzero parts of divisor interval b: (positive part, negated negative part)."""
    pos = (max(b[0], 1), b[1]) if b[1] >= 1 else None
    neg = (max(-b[1], 1), -b[0]) if b[0] <= -1 else None
    return pos, neg


def _union(parts):
    parts = [p for p in parts if p is not None]
    if not parts:
        # Divisor is exactly zero: never defined, any interval is sound.
        return -INF, INF
    return min(p[0] for p in parts), max(p[1] for p in parts)


def floordiv_interval(a, b):
    pos, neg = _split_divisor(b)
    # floor(x / -y) = floor(-x / y)
    return _union([_fdiv_pos(a, pos) if pos else None,
                   _fdiv_pos(_neg(a), neg) if neg else None])


def _mod_pos(a, b):
    """Bounds of a mod b (Python: result in [0, b-1]) for b = [bl, bh], bl >= 1."""
    al, ah = a
    bl, bh = b
    if al >= 0 and ah < bl:
        return al, ah
    if bl == bh and not _is_inf(al) and not _is_inf(ah) and al // bl == ah // bl:
        k = al // bl * bl
        return al - k, ah - k
    hi = xadd(bh, -1)
    if al >= 0 and ah < hi:
        hi = ah
    return 0, hi


def mod_interval(a, b):
    pos, neg = _split_divisor(b)
    # a mod -y = -((-a) mod y)
    return _union([_mod_pos(a, pos) if pos else None,
                   _neg(_mod_pos(_neg(a), neg)) if neg else None])


def node_interval(kind: str, args: tuple, data: tuple):
    """Interval of a node from its operands' stored intervals (see module doc)."""
    if kind == "add":
        lo = hi = data[0]
        for t, k in zip(args, data[1:]):
            tl, th = scale_interval(t._lo, t._hi, k)
            lo = xadd(lo, tl)
            hi = xadd(hi, th)
        return lo, hi
    if kind == "mul":
        iv = (1, 1)
        for f, e in zip(args, data):
            iv = mul_interval(iv, pow_interval(f._lo, f._hi, e))
        return iv
    if kind == "floordiv":
        a, b = args
        return floordiv_interval((a._lo, a._hi), (b._lo, b._hi))
    if kind == "mod":
        a, b = args
        return mod_interval((a._lo, a._hi), (b._lo, b._hi))
    if kind == "min":
        return min(x._lo for x in args), min(x._hi for x in args)
    if kind in ("max", "or"):
        return max(x._lo for x in args), max(x._hi for x in args)
    if kind == "and":
        return min(x._lo for x in args), min(x._hi for x in args)
    if kind == "lt":
        a, b = args
        if a._hi < b._lo:
            return 1, 1
        if a._lo >= b._hi:
            return 0, 0
        return 0, 1
    if kind in ("eq", "ne"):
        a, b = args
        disjoint = a._hi < b._lo or b._hi < a._lo
        same_point = a._lo == a._hi == b._lo == b._hi
        if disjoint or same_point:
            v = int(same_point)
            v = v if kind == "eq" else 1 - v
            return v, v
        return 0, 1
    if kind == "select":
        c, a, b = args
        if c._lo > 0 or c._hi < 0:
            return a._lo, a._hi
        if c._lo == c._hi == 0:
            return b._lo, b._hi
        return min(a._lo, b._lo), max(a._hi, b._hi)
    raise AssertionError(f"no interval rule for kind {kind!r}")


def _public(x):
    return None if x.__class__ is float else x


def bounds(e) -> tuple:
    """``(lo, hi)``: inclusive bounds of ``e`` over its variables' declared ranges.

    Each side is an int, or None when unbounded on that side. Sound for all
    operators (see module docstring); O(1): computed when ``e`` was built.
    """
    from .expr import as_expr
    e = as_expr(e)
    return _public(e._lo), _public(e._hi)


def upper_bound(e) -> int:
    """The int upper bound of ``e``; ValueError naming ``e`` if unbounded above."""
    from .expr import as_expr, _short
    e = as_expr(e)
    if e._hi.__class__ is float:
        raise ValueError(f"expression {_short(e)} has no upper bound "
                         "(declare bounds on its variables)")
    return e._hi


def lower_bound(e) -> int:
    """The int lower bound of ``e``; ValueError naming ``e`` if unbounded below."""
    from .expr import as_expr, _short
    e = as_expr(e)
    if e._lo.__class__ is float:
        raise ValueError(f"expression {_short(e)} has no lower bound "
                         "(declare bounds on its variables)")
    return e._lo
