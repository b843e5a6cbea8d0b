"""Smart constructors: every public operation builds its canonical node here.

Two layers keep expressions canonical:

* the **normal form** (this module): sums are linear combinations
  ``c0 + k1*t1 + ... + kn*tn`` of distinct, sorted, non-constant terms with
  nonzero coefficients; products are monomials (sorted distinct factors with
  exponents); commutative operand lists (min, max, and, or) are flattened,
  de-duplicated and sorted; comparisons are moved to one canonical
  ``lhs REL rhs`` form. This alone gives constant folding of sums and
  products, ``x+0 = x``, ``x*1 = x``, ``x*0 = 0``, ``x-x = 0``,
  ``(x+c1)+c2``, ``c1*(c2*x)``, like-term collection and operand ordering.
* the **rule table** (:mod:`dlavm.sym.rules`), applied by :func:`_build` to
  every newly interned node, for everything that is a rewrite rather than a
  representation (division, modulo, bound-based decisions, ...).

No function here recurses over an expression: each works on the operands'
top-level structure, so construction cost does not grow with depth.
"""
from __future__ import annotations

import numbers
from math import gcd

from .expr import Expr, Var, as_expr, const, _node, _short, sort_operands
from . import pattern

# Products of sums are distributed while the result has at most this many
# terms; beyond it the product stays factored (sound, just less canonical)
# so that repeated products cannot blow up exponentially.
DISTRIBUTE_LIMIT = 16


def _build(kind: str, args: tuple, data: tuple = ()) -> Expr:
    """Intern ``kind(args; data)`` and return its simplified form (memoised)."""
    raw = _node(kind, args, data)
    out = raw._simp
    if out is not None:
        return out
    # Mark "in progress" first: a rule that (indirectly) rebuilds this very
    # node gets the raw node back instead of looping forever.
    object.__setattr__(raw, "_simp", raw)
    out = pattern.rewrite(raw)
    if out is None:
        out = raw
    object.__setattr__(raw, "_simp", out)
    return out


# -- linear forms ---------------------------------------------------------------
def lin(e: Expr):
    """``(constant, ((term, coeff), ...))`` with ``e == constant + sum(coeff*term)``."""
    k = e.kind
    if k == "const":
        return e.data[0], ()
    if k == "add":
        return e.data[0], tuple(zip(e.args, e.data[1:]))
    return 0, ((e, 1),)


def linear(terms: dict, c: int = 0) -> Expr:
    """The canonical sum ``c + sum(k*t for t, k in terms.items())``.

    ``terms`` keys must be non-constant, non-sum expressions (as :func:`lin`
    yields); zero coefficients are dropped.
    """
    items = {t: k for t, k in terms.items() if k}
    if not items:
        return const(c)
    if c == 0 and len(items) == 1:
        (t, k), = items.items()
        if k == 1:
            return t
    ts = sort_operands(items)
    return _build("add", ts, (c,) + tuple(items[t] for t in ts))


def _add_node(terms: tuple, data: tuple) -> Expr:
    """A sum from already canonical (sorted, nonzero) terms; ``1*t + 0`` is ``t``."""
    if len(terms) == 1 and data[0] == 0 and data[1] == 1:
        return terms[0]
    return _build("add", terms, data)


def linear_combination(pairs, c: int = 0) -> Expr:
    """``c + sum(k*e for e, k in pairs)`` for arbitrary expressions ``e``."""
    acc: dict = {}
    for e, k in pairs:
        ce, te = lin(e)
        c += ce * k
        for t, kt in te:
            acc[t] = acc.get(t, 0) + kt * k
    return linear(acc, c)


def add(a, b) -> Expr:
    """a + b."""
    a = as_expr(a)
    b = as_expr(b)
    if a.kind == "const":
        a, b = b, a
    if b.kind == "const":
        c = b.data[0]
        if c == 0:
            return a
        # Fast path (common in shapes): adding a constant keeps the terms.
        if a.kind == "add":
            return _add_node(a.args, (c + a.data[0],) + a.data[1:])
        if a.kind != "const":
            return _build("add", (a,), (c, 1))
    ca, ta = lin(a)
    cb, tb = lin(b)
    acc = dict(ta)
    for t, k in tb:
        acc[t] = acc.get(t, 0) + k
    return linear(acc, ca + cb)


def sub(a, b) -> Expr:
    """a - b."""
    a = as_expr(a)
    b = as_expr(b)
    if a is b:
        return const(0)
    ca, ta = lin(a)
    cb, tb = lin(b)
    acc = dict(ta)
    for t, k in tb:
        acc[t] = acc.get(t, 0) - k
    return linear(acc, ca - cb)


def scale(e, k: int) -> Expr:
    """k * e for an int k."""
    e = as_expr(e)
    if k == 1:
        return e
    if k == 0:
        return const(0)
    kind = e.kind
    # Scaling keeps the terms and their order: build the node directly.
    if kind == "const":
        return const(e.data[0] * k)
    if kind == "add":
        return _add_node(e.args, tuple(x * k for x in e.data))
    return _build("add", (e,), (0, k))


# -- monomials --------------------------------------------------------------------
def mono(t: Expr) -> dict:
    """Factor -> exponent map of a non-constant, non-sum term."""
    if t.kind == "mul":
        return dict(zip(t.args, t.data))
    return {t: 1}


def make_mono(factors: dict) -> Expr:
    """The monomial with these factor exponents (1 when empty).

    A factor whose bounds lie in [0, 1] (a condition) has exponent 1: b**k == b.
    """
    factors = {f: (1 if f._lo >= 0 and f._hi <= 1 else e) for f, e in factors.items() if e}
    if not factors:
        return const(1)
    if len(factors) == 1:
        (f, e), = factors.items()
        if e == 1:
            return f
    fs = sort_operands(factors)
    return _build("mul", fs, tuple(factors[f] for f in fs))


def _mono_mul(t1: Expr, t2: Expr) -> Expr:
    m = mono(t1)
    for f, e in mono(t2).items():
        m[f] = m.get(f, 0) + e
    return make_mono(m)


def content(e: Expr):
    """``(k, p)`` with ``e == k*p``: k the signed gcd of e's coefficients, p primitive.

    The sign makes p's first (canonically ordered) coefficient positive, so
    ``2*x + 2`` and ``-x - 1`` share the primitive part ``x + 1``.
    """
    c, ts = lin(e)
    if c == 0 and len(ts) == 1:
        return ts[0][1], ts[0][0]
    g = c
    for _, k in ts:
        g = gcd(g, k)
    if ts[0][1] < 0:
        g = -g
    if g == 1:
        return 1, e
    return g, linear({t: k // g for t, k in ts}, c // g)


def mul(a, b) -> Expr:
    """a * b (products of small sums are distributed, see DISTRIBUTE_LIMIT)."""
    a = as_expr(a)
    b = as_expr(b)
    if a.kind == "const":
        return scale(b, a.data[0])
    if b.kind == "const":
        return scale(a, b.data[0])
    ca, ta = lin(a)
    cb, tb = lin(b)
    if (len(ta) + (ca != 0)) * (len(tb) + (cb != 0)) <= DISTRIBUTE_LIMIT:
        acc: dict = {}
        for t1, k1 in ta:
            if cb:
                acc[t1] = acc.get(t1, 0) + k1 * cb
            for t2, k2 in tb:
                m = _mono_mul(t1, t2)
                acc[m] = acc.get(m, 0) + k1 * k2
        if ca:
            for t2, k2 in tb:
                acc[t2] = acc.get(t2, 0) + ca * k2
        return linear(acc, ca * cb)
    ka, pa = content(a)
    kb, pb = content(b)
    return scale(_mono_mul(pa, pb), ka * kb)


def power(e, n: int) -> Expr:
    """e ** n for an int n >= 0 (ValueError for negative n)."""
    e = as_expr(e)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"exponent must be an int, got {type(n).__name__}")
    n = int(n)
    if n < 0:
        raise ValueError(f"negative exponent {n} of {_short(e)}: symbolic integers have "
                         "no reciprocals")
    if n == 0:
        return const(1)
    if e.kind == "const":
        return const(e.data[0] ** n)
    c, ts = lin(e)
    if c == 0 and len(ts) == 1:
        t, k = ts[0]
        return scale(make_mono({f: x * n for f, x in mono(t).items()}), k ** n)
    out = const(1)
    base = e
    while n:
        if n & 1:
            out = mul(out, base)
        n >>= 1
        if n:
            base = mul(base, base)
    return out


# -- division -------------------------------------------------------------------------
def floordiv(a, b) -> Expr:
    """floor(a / b) (Python ``//``); ZeroDivisionError if b is the constant 0."""
    a = as_expr(a)
    b = as_expr(b)
    if b.kind == "const" and b.data[0] == 0:
        raise ZeroDivisionError(f"floordiv({_short(a)}, 0): division by zero")
    return _build("floordiv", (a, b))


def mod(a, b) -> Expr:
    """a mod b with Python semantics (result has b's sign); ZeroDivisionError if b is 0."""
    a = as_expr(a)
    b = as_expr(b)
    if b.kind == "const" and b.data[0] == 0:
        raise ZeroDivisionError(f"mod({_short(a)}, 0): modulo by zero")
    return _build("mod", (a, b))


def ceildiv(a, b) -> Expr:
    """ceil(a / b) for any signs; ZeroDivisionError if b is the constant 0."""
    a = as_expr(a)
    b = as_expr(b)
    if b.kind == "const" and b.data[0] == 0:
        raise ZeroDivisionError(f"ceildiv({_short(a)}, 0): division by zero")
    if b._lo >= 1:
        # The readable form for positive divisors: (a + b - 1) // b.
        return floordiv(sub(add(a, b), 1), b)
    return scale(floordiv(scale(a, -1), b), -1)


def split_multiples(x: Expr, y: Expr):
    """``(q, r)`` with ``x == q*y + r`` identically and ``q`` nonzero, or None.

    For a single-term ``y`` (``k*m``, m a monomial), ``q*y`` collects the terms
    of ``x`` whose coefficient ``k`` divides and whose monomial ``m`` divides;
    for a constant or multi-term ``y``, only an exact multiple ``x == q*y``
    with constant ``q`` is recognised. Only top-level forms are inspected.
    """
    if y.kind == "const":
        return None
    cx, tx = lin(x)
    cy, ty = lin(y)
    if cy == 0 and len(ty) == 1:
        my, ky = ty[0]
        fy = mono(my)
        q: dict = {}
        r: dict = {}
        for t, k in tx:
            ft = mono(t)
            if k % ky == 0 and all(ft.get(f, 0) >= e for f, e in fy.items()):
                for f, e in fy.items():
                    ft[f] -= e
                m = make_mono(ft)
                q[m] = q.get(m, 0) + k // ky
            else:
                r[t] = k
        if not q:
            return None
        return linear_combination(q.items()), linear(r, cx)
    if len(tx) != len(ty):
        return None
    dx = dict(tx)
    t0, k0 = ty[0]
    if t0 not in dx or dx[t0] % k0:
        return None
    m = dx[t0] // k0
    if cx != m * cy or any(dx.get(t) != m * k for t, k in ty):
        return None
    return const(m), const(0)


# -- min / max --------------------------------------------------------------------------
def _minmax(kind: str, xs) -> Expr:
    if not xs:
        raise TypeError(f"s{kind} needs at least one operand")
    ops: list = []
    consts: list = []
    for x in xs:
        x = as_expr(x)
        for o in (x.args if x.kind == kind else (x,)):
            (consts if o.kind == "const" else ops).append(o)
    if consts:
        pick = min if kind == "min" else max
        ops.append(const(pick(c.data[0] for c in consts)))
    uniq = dict.fromkeys(ops)
    if len(uniq) == 1:
        return next(iter(uniq))
    return _build(kind, sort_operands(uniq))


def smin(*xs) -> Expr:
    """Minimum of one or more operands."""
    return _minmax("min", xs)


def smax(*xs) -> Expr:
    """Maximum of one or more operands."""
    return _minmax("max", xs)


def prove_le(a: Expr, b: Expr) -> bool:
    """True when bounds prove ``a <= b`` for every in-bounds assignment."""
    if a._hi <= b._lo:
        return True
    if a.free_vars().isdisjoint(b.free_vars()):
        # Independent: the difference's interval is the interval difference,
        # which the check above already tried.
        return False
    return sub(a, b)._hi <= 0


# -- comparisons and logic ----------------------------------------------------------------
def _compare(kind: str, a, b, shift: int = 0) -> Expr:
    """Canonical ``kind(a - b - shift, 0)`` as ``lhs REL rhs`` (kind: lt, eq, ne)."""
    a = as_expr(a)
    b = as_expr(b)
    ca, ta = lin(a)
    cb, tb = lin(b)
    acc = dict(ta)
    for t, k in tb:
        acc[t] = acc.get(t, 0) - k
    acc = {t: k for t, k in acc.items() if k}
    c = ca - cb - shift
    if not acc:
        v = c < 0 if kind == "lt" else (c == 0) == (kind == "eq")
        return const(int(v))
    g = 0
    for k in acc.values():
        g = gcd(g, k)
    if kind == "lt":
        # g*D + c < 0  <=>  D < -c/g  <=>  D + floor(c/g) < 0  (D integer-valued)
        c = c // g
    else:
        if c % g:
            return const(0 if kind == "eq" else 1)
        c //= g
        first = sort_operands(acc)[0]
        if acc[first] < 0:
            g, c = -g, -c
    pos = {t: k // g for t, k in acc.items() if k // g > 0}
    neg = {t: -(k // g) for t, k in acc.items() if k // g < 0}
    if pos:
        lhs, rhs = linear(pos), linear(neg, -c)
    else:
        lhs, rhs = const(c), linear(neg)
    return _build(kind, (lhs, rhs))


def lt(a, b) -> Expr:
    """1 if a < b else 0."""
    return _compare("lt", a, b)


def le(a, b) -> Expr:
    """1 if a <= b else 0 (canonically ``a < b + 1``)."""
    return _compare("lt", a, b, 1)


def gt(a, b) -> Expr:
    """1 if a > b else 0 (canonically ``b < a``)."""
    return _compare("lt", b, a)


def ge(a, b) -> Expr:
    """1 if a >= b else 0 (canonically ``b < a + 1``)."""
    return _compare("lt", b, a, 1)


def eq(a, b) -> Expr:
    """1 if a == b else 0."""
    return _compare("eq", a, b)


def ne(a, b) -> Expr:
    """1 if a != b else 0."""
    return _compare("ne", a, b)


def truth(x) -> Expr:
    """x as a 0/1 value (1 when x is nonzero)."""
    x = as_expr(x)
    if x.kind == "const":
        return const(int(x.data[0] != 0))
    if x._lo >= 0 and x._hi <= 1:
        return x
    if x._lo > 0 or x._hi < 0:
        return const(1)
    return _compare("ne", x, 0)


def _logic(kind: str, xs) -> Expr:
    absorbing = 0 if kind == "and" else 1
    ops: list = []
    for x in xs:
        x = truth(x)
        for o in (x.args if x.kind == kind else (x,)):
            if o.kind == "const":
                if o.data[0] == absorbing:
                    return o
                continue
            ops.append(o)
    uniq = dict.fromkeys(ops)
    if not uniq:
        return const(1 - absorbing)
    if len(uniq) == 1:
        return next(iter(uniq))
    return _build(kind, sort_operands(uniq))


def and_(*xs) -> Expr:
    """1 if every operand is nonzero else 0. Evaluates all operands (no short circuit)."""
    return _logic("and", xs)


def or_(*xs) -> Expr:
    """1 if any operand is nonzero else 0. Evaluates all operands (no short circuit)."""
    return _logic("or", xs)


def not_(x) -> Expr:
    """1 if x is zero else 0."""
    t = truth(x)
    if t.kind == "const":
        return const(1 - t.data[0])
    if t.kind == "lt":
        lhs, rhs = t.args
        return _compare("lt", rhs, lhs, 1)  # not (l < r)  <=>  r <= l
    if t.kind == "eq":
        return _compare("ne", *t.args)
    if t.kind == "ne":
        return _compare("eq", *t.args)
    return _compare("eq", t, 0)


def select(cond, a, b) -> Expr:
    """a if cond is nonzero else b. Only the chosen branch is evaluated."""
    return _build("select", (truth(cond), as_expr(a), as_expr(b)))


def prove(cond) -> bool:
    """True when ``cond`` simplifies to a nonzero constant (proved for all bounds)."""
    t = truth(cond)
    return t.kind == "const" and t.data[0] == 1


# -- rebuilding (substitution, unpickling) -----------------------------------------------
def rebuild(kind: str, args: tuple, data: tuple) -> Expr:
    """Re-simplify a node of this kind from (possibly new) operands."""
    if kind == "const":
        return const(data[0])
    if kind == "var":
        return Var(*data)
    if kind == "add":
        return linear_combination(zip(args, data[1:]), data[0])
    if kind == "mul":
        out = const(1)
        for f, e in zip(args, data):
            out = mul(out, power(f, e))
        return out
    if kind == "floordiv":
        return floordiv(*args)
    if kind == "mod":
        return mod(*args)
    if kind == "min":
        return smin(*args)
    if kind == "max":
        return smax(*args)
    if kind in ("and", "or"):
        return _logic(kind, args)
    if kind in ("lt", "eq", "ne"):
        return _compare(kind, *args)
    if kind == "select":
        return select(*args)
    raise ValueError(f"unknown expression kind {kind!r}")


def rebuild_table(table: tuple) -> Expr:
    """Inverse of ``Expr.__reduce__``: a post-order node table -> its root."""
    nodes: list = []
    for kind, idx, data in table:
        nodes.append(rebuild(kind, tuple(nodes[i] for i in idx), data))
    return nodes[-1]
