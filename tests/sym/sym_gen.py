"""Random expression trees for the dlavm.sym tests.

A tree is a tuple: ``("var", name)``, ``("const", v)`` or ``(op, *children)``.
``build`` turns it into a ``sym.Expr`` through the public API; ``reference``
computes its value directly with Python ints (the semantics the library must
reproduce). Both are used by the hypothesis strategies and by the
fixed-seed generator of the C++ test.
"""
import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dlavm import sym

# Deterministic, bounded property tests: same examples every run, no database.
PROPERTY = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# name -> (lo, hi) declared bounds; None = unbounded. Negative ranges included.
VAR_BOUNDS = {
    "x": (-20, 20),
    "y": (0, 50),
    "z": (1, 8),
    "n": (-8, -1),
    "u": (None, None),
    "k": (3, None),
}
VARS = {name: sym.Var(name, lo, hi) for name, (lo, hi) in VAR_BOUNDS.items()}
# Values drawn for unbounded sides stay within this window.
WINDOW = (-100, 100)

BINARY = ("add", "sub", "mul", "floordiv", "mod", "ceildiv", "min", "max",
          "lt", "le", "gt", "ge", "eq", "ne", "and", "or")
UNARY = ("neg", "not", "abs")
CONSTS = (-128, -7, -3, -2, -1, 0, 1, 2, 3, 4, 7, 8, 127, 128)


def value_range(name):
    lo, hi = VAR_BOUNDS[name]
    return (WINDOW[0] if lo is None else lo), (WINDOW[1] if hi is None else hi)


def build(tree):
    """The sym.Expr for a tree (iterative: trees may be deep)."""
    done = {}
    stack = [tree]
    while stack:
        t = stack[-1]
        if id(t) in done:
            stack.pop()
            continue
        if t[0] in ("var", "const"):
            done[id(t)] = VARS[t[1]] if t[0] == "var" else sym.const(t[1])
            stack.pop()
            continue
        kids = [c for c in t[1:] if isinstance(c, tuple)]
        pending = [c for c in kids if id(c) not in done]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        done[id(t)] = _apply_sym(t[0], [done[id(c)] if isinstance(c, tuple) else c
                                        for c in t[1:]])
    return done[id(tree)]


def _apply_sym(op, a):
    f = {
        "add": lambda p, q: p + q, "sub": lambda p, q: p - q, "mul": lambda p, q: p * q,
        "floordiv": lambda p, q: p // q, "mod": lambda p, q: p % q,
        "ceildiv": sym.ceildiv, "min": sym.smin, "max": sym.smax,
        "lt": sym.lt, "le": sym.le, "gt": sym.gt, "ge": sym.ge, "eq": sym.eq, "ne": sym.ne,
        "and": sym.and_, "or": sym.or_, "not": sym.not_, "neg": lambda p: -p,
        "abs": abs, "select": sym.select, "pow": lambda p, e: p ** e,
    }[op]
    return f(*a)


def reference(tree, env):
    """Python-int value of a tree (raises ZeroDivisionError like Python)."""
    op = tree[0]
    if op == "var":
        return env[tree[1]]
    if op == "const":
        return tree[1]
    if op == "select":  # lazy, like the exports
        return reference(tree[2] if reference(tree[1], env) else tree[3], env)
    if op == "pow":
        return reference(tree[1], env) ** tree[2]
    a = [reference(c, env) for c in tree[1:]]
    return {
        "add": lambda p, q: p + q, "sub": lambda p, q: p - q, "mul": lambda p, q: p * q,
        "floordiv": lambda p, q: p // q, "mod": lambda p, q: p % q,
        "ceildiv": lambda p, q: -((-p) // q), "min": min, "max": max,
        "lt": lambda p, q: int(p < q), "le": lambda p, q: int(p <= q),
        "gt": lambda p, q: int(p > q), "ge": lambda p, q: int(p >= q),
        "eq": lambda p, q: int(p == q), "ne": lambda p, q: int(p != q),
        "and": lambda p, q: int(bool(p) and bool(q)), "or": lambda p, q: int(bool(p) or bool(q)),
        "not": lambda p: int(not p), "neg": lambda p: -p, "abs": abs,
    }[op](*a)


# -- hypothesis strategies ------------------------------------------------------------
leaves = st.one_of(st.sampled_from([("var", n) for n in VAR_BOUNDS]),
                   st.sampled_from(CONSTS).map(lambda v: ("const", v)),
                   st.integers(-300, 300).map(lambda v: ("const", v)))


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(BINARY), children, children),
        st.tuples(st.sampled_from(UNARY), children),
        st.tuples(st.just("select"), children, children, children),
        st.tuples(st.just("pow"), children, st.integers(0, 3)),
    )


_general = st.recursive(leaves, _extend, max_leaves=12)

# Shape/index arithmetic: linear forms divided, reduced and clamped by small
# positive constants (exercises the floordiv/mod/min/max rules much more than
# uniform trees do).
DIVISORS = (2, 3, 4, 8, 16, 128)
_shape_leaves = st.one_of(st.sampled_from([("var", n) for n in VAR_BOUNDS]),
                          st.sampled_from((0, 1, 2, 3, 4, 7, 8, 127, 128)).map(
                              lambda v: ("const", v)))


def _extend_shape(children):
    divisor = st.one_of(st.sampled_from(DIVISORS).map(lambda v: ("const", v)),
                        st.just(("var", "z")))
    return st.one_of(
        st.tuples(st.sampled_from(("add", "sub", "min", "max")), children, children),
        st.tuples(st.just("mul"), children, st.sampled_from(DIVISORS + (-1, -2)).map(
            lambda v: ("const", v))),
        st.tuples(st.sampled_from(("floordiv", "mod", "ceildiv")), children, divisor),
    )


shape_trees = st.recursive(_shape_leaves, _extend_shape, max_leaves=10)
trees = st.one_of(_general, shape_trees)


@st.composite
def envs(draw):
    return {name: draw(st.integers(*value_range(name))) for name in VAR_BOUNDS}


# -- fixed-seed generator (C++ test: one compile for many expressions) ------------------------
def random_tree(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.6:
            return ("var", rng.choice(list(VAR_BOUNDS)))
        return ("const", rng.choice(CONSTS + (rng.randint(-1000, 1000),)))
    r = rng.random()
    if r < 0.75:
        return (rng.choice(BINARY), random_tree(rng, depth - 1), random_tree(rng, depth - 1))
    if r < 0.85:
        return (rng.choice(UNARY), random_tree(rng, depth - 1))
    if r < 0.95:
        return ("select",) + tuple(random_tree(rng, depth - 1) for _ in range(3))
    return ("pow", random_tree(rng, depth - 1), rng.randint(0, 3))


def random_env(rng: random.Random):
    return {name: rng.randint(*value_range(name)) for name in VAR_BOUNDS}
