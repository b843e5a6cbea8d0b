"""The normal form and each rule of the simplification table, by example.

Every rule in ``dlavm.sym.rules.RULES`` has an example here, and
``test_every_rule_has_a_firing_example`` checks that each one really fires
(on fresh variables, so no memoised result hides it). Soundness for all
values is the job of the property tests in test_sym_semantics.py.
"""
import itertools

import pytest

from dlavm import sym
from dlavm.sym import const, floordiv, mod, smax, smin
from dlavm.sym import pattern
from dlavm.sym.pattern import C, Pat, X, match
from dlavm.sym.rules import RULES

_fresh = itertools.count()


def fresh_vars():
    """New variables (new names) and a new constant ``big``, so that every
    construction below is new (results are memoised per node)."""
    i = next(_fresh)
    return {"big": 10 ** 6 + 7919 * i} | {name: sym.Var(f"{name}{i}", lo, hi) for name, lo, hi in [
        ("x", -20, 20), ("y", 0, 50), ("z", 1, 8), ("n", -8, -1), ("u", None, None),
        ("s", 8, 4096)]}


def rule_examples(v):
    """(rule name, got, expected) triples; expected is an Expr, int or str."""
    x, y, z, n, u, s, big = (v[k] for k in ("x", "y", "z", "n", "u", "s", "big"))
    return [
        ("fold floordiv", floordiv(const(big), const(-7)), big // -7),
        ("fold mod", mod(const(big), const(-7)), big % -7),
        ("decided by bounds", floordiv(y, 64), 0),
        ("decided by bounds", sym.lt(y, 51), 1),
        ("floordiv by negative constant", floordiv(u, -3), floordiv(-u, 3)),
        ("floordiv by one", floordiv(u, 1), u),
        ("floordiv of zero", floordiv(0, u), 0),
        ("nested floordiv", floordiv(floordiv(u, 4), 8), floordiv(u, 32)),
        ("floordiv splits multiples", floordiv(u * 8 + x + 17, 8), u + 2 + floordiv(x + 1, 8)),
        ("floordiv common factor", floordiv(u * 6 + 4, 8), floordiv(u * 3 + 2, 4)),
        ("floordiv below divisor", floordiv(z - 1, z), 0),
        ("floordiv splits symbolic multiples", floordiv(u * z, z), u),
        ("floordiv splits symbolic multiples", floordiv((u + 1) * z * 6, z * 3), u * 2 + 2),
        ("floordiv splits symbolic multiples", floordiv(u * z * 3 + x, z), u * 3 + floordiv(x, z)),
        ("floordiv splits symbolic multiples", sym.ceildiv(u * z, z), u),
        ("floordiv splits symbolic multiples", floordiv(u * 2 + x * 2, u + x), 2),
        ("mod by negative constant", mod(u, -3), -mod(u * 2, 3)),
        ("mod by one", mod(u, 1), 0),
        ("mod of zero", mod(0, u), 0),
        ("nested mod", mod(mod(u, 8), 4), mod(u, 4)),
        ("mod reduces coefficients", mod(u * 9 + 10, 4), mod(u + 2, 4)),
        ("mod common factor", mod(u * 2, 8), mod(u, 4) * 2),
        ("mod within one period", mod(y, 64), y),
        ("mod within one period", mod(n, 8), n + 8),
        ("mod below divisor", mod(z - 1, s), z - 1),
        ("mod below divisor", mod(z - 1, z), z - 1),
        ("mod splits symbolic multiples", mod(u * z, z), 0),
        ("mod splits symbolic multiples", mod(u * z + x, z), mod(x, z)),
        ("min/max drops dominated operands", smin(y, 60), y),
        ("min/max drops dominated operands", smax(z, 1, n), z),
        ("min/max drops dominated operands", smin(u, u + 1), u),
        ("min/max drops dominated operands", smax(s, s + y), s + y),
        ("recombine floordiv and mod", floordiv(u, 8) * 8 + mod(u, 8), u),
        ("recombine floordiv and mod", (floordiv(u, 8) * 24 + mod(u, 8) * 3) + x, u * 3 + x),
        ("select on constant", sym.select(1, u, x), u),
        ("select with equal branches", sym.select(sym.lt(u, 0), x, x), x),
        ("select is its condition", sym.select(sym.lt(u, 0), 1, 0), sym.lt(u, 0)),
        ("select is the negated condition", sym.select(sym.lt(u, 0), 0, 1), sym.ge(u, 0)),
    ]


@pytest.mark.parametrize("i", range(len(rule_examples(fresh_vars()))))
def test_rule_example(i):
    name, got, expected = rule_examples(fresh_vars())[i]
    if isinstance(expected, str):
        assert str(got) == expected, name
    else:
        assert got is sym.as_expr(expected), f"{name}: {got} != {expected}"


def test_every_rule_has_a_firing_example(monkeypatch):
    fired = set()
    index = {}
    for kind, rules in pattern._INDEX.items():
        wrapped = []
        for r in rules:
            def fn(*a, _r=r, **k):
                out = _r.fn(*a, **k)
                if out is not None:
                    fired.add(_r.name)
                return out
            wrapped.append(pattern.Rule(r.name, r.pattern, fn))
        index[kind] = wrapped
    monkeypatch.setattr(pattern, "_INDEX", index)
    rule_examples(fresh_vars())
    assert {r.name for r in RULES} - fired == set()


# -- the normal form (construction, not rules) --------------------------------------------
V = fresh_vars()
x, y, z, n, u, s = (V[k] for k in ("x", "y", "z", "n", "u", "s"))


def test_constant_folding_and_identities():
    assert const(3) + 4 is const(7)
    assert const(3) * -4 is const(-12)
    assert x + 0 is x and 0 + x is x
    assert x * 1 is x and 1 * x is x
    assert x * 0 is const(0)
    assert x - x is const(0)
    assert (x + 1) + 2 is x + 3
    assert 2 * (3 * x) is 6 * x
    assert -(-x) is x
    assert (x + y) - y is x


def test_like_terms_are_collected_in_a_linear_normal_form():
    e = x + y + x + 3 - 1
    assert e is 2 * x + y + 2
    assert e.kind == "add"
    assert e.args == (x, y) and e.data == (2, 2, 1)  # constant, then coefficients
    assert str(e) == f"{x}*2 + {y} + 2"


def test_products_are_monomials_and_small_products_distribute():
    assert u * u is u ** 2
    assert (u * y) * u is y * u ** 2
    assert (u + 1) * (u - 1) is u ** 2 - 1
    assert (u + 1) * 2 is 2 * u + 2
    assert ((u + 1) ** 2).kind == "add"


def test_comparisons_have_one_canonical_form():
    assert sym.lt(x + 1, 5) is sym.lt(x, 4)
    assert sym.le(x, 3) is sym.lt(x, 4)
    assert sym.gt(5, x) is sym.lt(x, 5)
    assert sym.lt(2 * u, 5) is sym.lt(u, 3)  # 2u < 5  <=>  u < 3
    assert sym.eq(2 * u, 3) is const(0)  # no integer solution
    assert sym.eq(2 * u, 4) is sym.eq(u, 2)
    assert sym.not_(sym.lt(u, 3)) is sym.le(3, u)
    assert sym.not_(sym.eq(u, 3)) is sym.ne(u, 3)
    assert sym.lt(x, 21) is const(1) and sym.lt(x, -20) is const(0)


def test_logic_folds_and_flattens():
    a, b = sym.lt(u, 0), sym.lt(x, 3)
    assert sym.and_(a, 1) is a and sym.and_(a, 0) is const(0)
    assert sym.or_(a, 1) is const(1) and sym.or_(a, 0) is a
    assert sym.and_(a, sym.and_(b, a)) is sym.and_(a, b)
    assert sym.and_(u) is sym.ne(u, 0)  # non-boolean operands become "!= 0"


def test_bound_rules_are_sound_for_negative_values():
    # None of these may simplify: x and u can be negative.
    assert floordiv(x, 4).kind == "floordiv"
    assert mod(x, 4).kind == "mod"
    assert smin(x, 19).kind == "min"
    assert floordiv(x * 4 + 3, 4) is x  # floor((4x + 3) / 4) == x for every x
    assert mod(x * 4 + 3, 4) is const(3)
    assert floordiv(-u, 4) is not -floordiv(u, 4)
    assert sym.ceildiv(u, 4) is floordiv(u + 3, 4)
    assert sym.ceildiv(u, -4) is -floordiv(u, 4)


def test_min_max_with_bounds():
    assert smin(x, 20) is x
    assert smax(x, -20) is x
    assert smin(n, y) is n  # n <= -1 < 0 <= y
    assert smax(s, 7) is s


# -- the pattern engine --------------------------------------------------------------------
def test_pattern_binds_constants_as_ints_and_checks_repeated_names():
    e = floordiv(u * 3 + 1, 4)  # stays a floordiv node
    assert e.kind == "floordiv"
    b = match(Pat("floordiv", (X("a"), C("d"))), e)
    assert b == {"a": e.args[0], "d": 4}
    assert match(Pat("floordiv", (X("a"), C("d", lambda v: v > 4))), e) is None
    sel = pattern.Rule("t", Pat("min", (X("a"), X("a"))), lambda a: a)
    assert match(sel.pattern, smin(u, x)) is None


def test_register_requires_a_kind():
    with pytest.raises(ValueError, match="kind"):
        pattern.register([pattern.Rule("bad", X("a"), lambda a: a)])
    assert pattern.rules_for("floordiv")[0].name == "fold floordiv"
