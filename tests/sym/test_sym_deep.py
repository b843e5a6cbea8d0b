"""Depth never matters: nothing in dlavm.sym recurses over an expression."""
import pickle
import sys

import pytest

from dlavm import sym

DEPTH = 5000


def _depth(e):
    d = {}
    for n in sym.walk(e):
        d[n] = 1 + max((d[a] for a in n.args), default=0)
    return d[e]


@pytest.fixture(scope="module")
def deep():
    x, y = sym.Var("dx", 0, 100), sym.Var("dy", -50, 50)
    e = x
    for i in range(DEPTH):
        r = i % 4
        if r == 0:
            e = sym.floordiv(e * 3 + y, 2)
        elif r == 1:
            e = sym.smin(e, x * 7 + i)
        elif r == 2:
            e = sym.select(sym.lt(x, y + i % 7), e + 1, x)
        else:
            e = sym.smax(e - 1, y) + x % 5
    return e, x, y


def test_deep_expression_really_is_deep(deep):
    e, _, _ = deep
    assert _depth(e) >= DEPTH
    assert sys.getrecursionlimit() < DEPTH  # so any recursion would have failed


def test_deep_expression_prints_bounds_substitutes_and_exports(deep):
    e, x, y = deep
    text = str(e)
    assert text.count("(") >= DEPTH // 4 and repr(e) == text
    lo, hi = sym.bounds(e)
    assert lo == -50 and hi is not None
    assert sym.to_python(e) == text
    assert sym.to_cpp(e).count("dlavm_floordiv") >= DEPTH // 4
    s = sym.substitute(e, {"dy": 3})
    assert s.free_vars() == {x}
    for vx in (0, 7, 100):
        v = sym.evaluate(e, {"dx": vx, "dy": 3})
        assert sym.evaluate(s, {"dx": vx}) == v
        assert lo <= v <= hi
    assert e.free_vars() == {x, y}
    assert pickle.loads(pickle.dumps(e)) is e
    assert sym.rules is not None and len(list(sym.walk(e))) > DEPTH


def test_deep_evaluation_takes_every_branch():
    # A chain whose every select takes its deep branch.
    x = sym.Var("ex", 0, 10)
    e = x
    for i in range(DEPTH):
        e = sym.select(sym.lt(x, 11), e + (i % 3), 0) if i % 2 else sym.floordiv(e * 5, 4)
    assert _depth(e) >= DEPTH
    ref = 7
    for i in range(DEPTH):
        ref = ref + (i % 3) if i % 2 else ref * 5 // 4
    # lt(x, 11) is always true: the selects fold away and the chain stays deep
    assert sym.evaluate(e, {"ex": 7}) == ref


def test_deep_sums_and_products():
    vs = [sym.Var(f"v{i}", -3, 3) for i in range(300)]
    s = sym.const(0)
    for v in vs:
        s = s + v * 2
    assert s.kind == "add" and len(s.args) == 300 and sym.bounds(s) == (-1800, 1800)
    p = sym.Var("p", 1, 2)
    e = p
    for _ in range(DEPTH):
        e = e * p
    assert e is p ** (DEPTH + 1)
