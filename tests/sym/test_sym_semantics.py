"""Random expressions evaluate exactly like Python ints, and stay canonical.

Each property builds a random expression tree through the public API and
compares it with the tree's direct Python evaluation (``sym_gen.reference``),
negative values and unbounded variables included. Where Python itself raises
ZeroDivisionError the example is skipped: simplification may only *remove*
such errors (e.g. ``0 // y``), never change a defined value.
"""
import pickle

from hypothesis import assume, given
from hypothesis import strategies as st

from dlavm import sym
from dlavm.sym.ops import rebuild

from sym_gen import PROPERTY, VARS, build, envs, reference, trees


def _built(tree):
    try:
        return build(tree)
    except ZeroDivisionError:
        # A divisor folded to the constant 0 at construction (the spec'd error).
        assume(False)


def _ref(tree, env):
    try:
        return reference(tree, env)
    except ZeroDivisionError:
        assume(False)


@PROPERTY
@given(trees, envs())
def test_evaluate_matches_python(tree, env):
    e = _built(tree)
    assert sym.evaluate(e, env) == _ref(tree, env)


@PROPERTY
@given(trees, envs())
def test_bounds_contain_every_value(tree, env):
    e = _built(tree)
    v = _ref(tree, env)
    lo, hi = sym.bounds(e)
    assert lo is None or lo <= v, (str(e), lo, v)
    assert hi is None or v <= hi, (str(e), hi, v)


@PROPERTY
@given(trees, envs())
def test_to_python_and_compile_python_match_evaluate(tree, env):
    e = _built(tree)
    v = _ref(tree, env)
    src = sym.to_python(e)
    assert eval(src, {"__builtins__": {}, "min": min, "max": max}, dict(env)) == v, src
    f = sym.compile_python(e)
    assert f(**{v.name: env[v.name] for v in e.free_vars()}) == v


@PROPERTY
@given(trees, envs(), st.sampled_from(["x", "y", "z", "n", "u", "k"]))
def test_substitute_a_value_then_evaluate(tree, env, name):
    e = _built(tree)
    v = _ref(tree, env)
    s = sym.substitute(e, {name: env[name]})
    assert VARS[name] not in s.free_vars()
    assert sym.evaluate(s, env) == v


@PROPERTY
@given(trees, envs())
def test_substitute_an_expression(tree, env):
    # x in [-20, 20] replaced by an expression over y in [0, 50] with the same range.
    e = _built(tree)
    repl = sym.smin(sym.smax(VARS["y"] - 25, -20), 20)
    lo, hi = sym.bounds(repl)
    assert -20 <= lo and hi <= 20
    env2 = dict(env, x=sym.evaluate(repl, env))
    v = _ref(tree, env2)
    assert sym.evaluate(sym.substitute(e, {VARS["x"]: repl}), env2) == v


@PROPERTY
@given(trees)
def test_every_node_is_a_fixed_point_of_its_constructor(tree):
    # Canonical form: rebuilding any node from its operands gives the node back.
    e = _built(tree)
    for n in sym.walk(e):
        assert rebuild(n.kind, n.args, n.data) is n, str(n)


@PROPERTY
@given(trees)
def test_same_construction_is_same_object_and_pickles(tree):
    e = _built(tree)
    assert build(tree) is e
    assert pickle.loads(pickle.dumps(e)) is e
    assert hash(e) == hash(pickle.loads(pickle.dumps(e)))


@PROPERTY
@given(trees, trees, trees)
def test_commutative_and_associative_forms_hash_cons(ta, tb, tc):
    a, b, c = _built(ta), _built(tb), _built(tc)
    assert a + b is b + a
    assert (a + b) + c is a + (b + c)
    assert a - b is -(b - a)
    assert a * b is b * a
    assert sym.smin(a, b) is sym.smin(b, a)
    assert sym.smax(sym.smax(a, b), c) is sym.smax(a, sym.smax(b, c))
    assert sym.eq(a, b) is sym.eq(b, a)
    assert sym.ne(a, b) is sym.ne(b, a)
    assert sym.gt(a, b) is sym.lt(b, a)
    assert sym.ge(a, b) is sym.le(b, a)
    assert sym.and_(a, b) is sym.and_(b, a)
    assert sym.or_(a, b) is sym.or_(b, a)
    assert sym.not_(sym.not_(sym.lt(a, b))) is sym.lt(a, b)
