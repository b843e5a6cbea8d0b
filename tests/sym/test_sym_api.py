"""The public API: identity, conversions, printing, bounds, errors."""
import copy
import pickle

import pytest

from dlavm import sym
from dlavm.sym import Var, const

seq = Var("seq", 1, 4096)
heads = Var("heads", 1, 64)
u = Var("u", None, None)
w = Var("w", -10, None)


def test_exports_exact_names():
    expected = {"Expr", "Var", "const", "as_expr", "walk", "floordiv", "ceildiv", "mod",
                "smin", "smax", "select", "lt", "le", "gt", "ge", "eq", "ne", "and_", "or_",
                "not_", "prove", "bounds", "lower_bound", "upper_bound", "substitute",
                "evaluate", "UnboundVarError", "to_python", "to_cpp", "compile_python"}
    assert set(sym.__all__) == expected
    assert all(hasattr(sym, name) for name in expected)


# -- variables -----------------------------------------------------------------------
def test_var_identity_is_name_and_bounds():
    assert Var("seq", 1, 4096) is seq
    other = Var("seq", 1, 2048)
    assert other is not seq and other != seq
    assert isinstance(seq, Var) and isinstance(seq, sym.Expr)
    assert (seq.name, seq.lo, seq.hi) == ("seq", 1, 4096)
    assert seq.kind == "var" and not seq.is_const
    assert seq.free_vars() == frozenset({seq})


def test_same_name_different_bounds_prints_unambiguously():
    other = Var("seq", 1, 2048)
    e = seq + other
    assert str(e) == "seq{1..2048} + seq{1..4096}"
    with pytest.raises(ValueError, match="several variables named 'seq'"):
        sym.to_python(e)
    with pytest.raises(ValueError, match="several variables named 'seq'"):
        sym.to_cpp(e)
    # Operands are ordered by variable (name, bounds), not by printed text.
    assert sym.to_python(e, names={other: "seq_small"}) == "seq_small + seq"
    # A name-keyed env applies to every variable of that name (both bounds checked).
    assert sym.evaluate(e, {"seq": 5}) == 10
    with pytest.raises(ValueError, match=r"\[1, 2048\]"):
        sym.evaluate(e, {"seq": 3000})


@pytest.mark.parametrize("args, err", [
    (("1x", 0, 1), ValueError), (("min", 0, 1), ValueError), (("class", 0, 1), ValueError),
    (("int64_t", 0, 1), ValueError), (("dlavm_floordiv", 0, 1), ValueError),
    (("a", 5, 1), ValueError), (("a", 0.5, 1), TypeError), (("a", True, 3), TypeError),
    ((3, 0, 1), ValueError),
])
def test_var_rejects_bad_declarations(args, err):
    with pytest.raises(err):
        Var(*args)


def test_expr_cannot_be_constructed_or_mutated_directly():
    with pytest.raises(TypeError):
        sym.Expr()
    with pytest.raises(AttributeError):
        seq.kind = "const"


# -- constants, conversions, equality ----------------------------------------------------------
def test_const_and_as_expr():
    assert const(5) is sym.as_expr(5)
    assert const(5).is_const and const(5).value == 5 and const(5).kind == "const"
    assert sym.as_expr(seq) is seq
    for bad in (True, 2.0, "3", None):
        with pytest.raises(TypeError):
            sym.as_expr(bad)
    with pytest.raises(TypeError):
        const(False)


def test_equality_and_hash_with_ints():
    assert const(3) == 3 and 3 == const(3) and const(3) != 4
    assert hash(const(3)) == hash(3)
    assert {3: "a"}[const(3)] == "a"
    assert (seq == 3) is False and (seq != 3) is True
    assert seq + 1 == 1 + seq
    assert {seq * 2: 1}[2 * seq] == 1
    assert (seq == "seq") is False


def test_int_bool_value_only_for_constants():
    assert int(const(7)) == 7 and [0, 1, 2][const(1)] == 1 and bool(const(0)) is False
    with pytest.raises(TypeError, match="seq"):
        int(seq + 1)
    with pytest.raises(TypeError, match=r"seq \+ 1"):
        range(seq + 1)
    with pytest.raises(TypeError, match="truth value"):
        bool(sym.lt(seq, 100))
    with pytest.raises(TypeError, match="no constant value"):
        (seq * 2).value


def test_operators_refuse_other_types():
    for bad in (1.5, True, "a", None):
        with pytest.raises(TypeError):
            seq + bad
        with pytest.raises(TypeError):
            bad * seq
    with pytest.raises(TypeError, match="true division"):
        seq / 2
    with pytest.raises(ValueError, match="negative exponent"):
        seq ** -1
    assert seq ** 2 is seq * seq and seq ** const(3) is seq * seq * seq


def test_comparison_operators_are_not_overloaded():
    with pytest.raises(TypeError):
        seq < 3  # noqa: B015
    assert sym.lt(seq, 5000) is const(1)


def test_copy_and_pickle_keep_identity():
    e = sym.ceildiv(seq * heads, 128)
    assert copy.copy(e) is e and copy.deepcopy([e])[0] is e
    assert pickle.loads(pickle.dumps(e)) is e
    assert pickle.loads(pickle.dumps(seq)) is seq


def test_free_vars_kind_walk():
    e = sym.smin(seq * heads, 4096) + u
    assert e.free_vars() == frozenset({seq, heads, u})
    assert e.kind == "add"
    nodes = list(sym.walk(e))
    assert nodes[-1] is e and len(nodes) == len(set(nodes))
    assert all(nodes.index(a) < nodes.index(n) for n in nodes for a in n.args)


# -- printing ---------------------------------------------------------------------------
@pytest.mark.parametrize("build, text", [
    (lambda: seq * 2 + 1, "seq*2 + 1"),
    (lambda: sym.ceildiv(seq, 128), "(seq + 127) // 128"),
    (lambda: sym.floordiv(seq, 128) * 4, "(seq // 128)*4"),
    (lambda: seq % 128, "seq % 128"),
    (lambda: 1 - seq, "-seq + 1"),
    (lambda: heads * seq * 4 - u, "heads*seq*4 - u"),
    (lambda: sym.smin(u, seq), "min(seq, u)"),
    (lambda: sym.smax(u, 0), "max(u, 0)"),
    (lambda: u ** 2 + u, "u + u**2"),
    (lambda: sym.le(seq, 128), "seq < 129"),
    (lambda: sym.eq(u, seq), "seq == u"),
    (lambda: sym.and_(sym.lt(u, 3), sym.ne(u, 0)), "(u < 3) & (u != 0)"),
    (lambda: sym.select(sym.lt(seq, 100), seq, 100), "(seq if seq < 100 else 100)"),
    (lambda: sym.floordiv(u, seq * heads), "u // (heads*seq)"),
])
def test_str_format(build, text):
    e = build()
    assert str(e) == text and repr(e) == text and f"{e}" == text


def test_to_cpp_format():
    e = sym.ceildiv(seq * heads, 128) * 128 + sym.smin(u, 7)
    assert sym.to_cpp(e) == "dlavm_floordiv(heads*seq + 127, 128)*128 + dlavm_min(u, 7)"
    assert sym.to_cpp(sym.select(sym.lt(u, 0), 3, 5)) == "int64_t(u < 0 ? 3 : 5)"
    cond = sym.and_(sym.lt(u, 0), sym.lt(seq, 9))
    assert sym.to_cpp(sym.select(cond, u, 5)) == \
        "int64_t((int64_t(seq < 9) & int64_t(u < 0)) != 0 ? u : 5)"
    assert sym.to_cpp(u * 2 ** 40) == "u*INT64_C(1099511627776)"
    assert sym.to_cpp(u, names={"u": "args.u"}) == "args.u"
    with pytest.raises(ValueError, match="int64_t"):
        sym.to_cpp(u + 2 ** 70)


def test_shared_dag_prints_with_let_bindings_and_exports_refuse():
    x, y = Var("x", 0, 100), Var("y", -50, 50)
    e, ref = x, 3
    for _ in range(60):  # each step uses e twice: the tree doubles every step
        e = sym.select(sym.lt(e, y), e + 1, x)
        ref = ref + 1 if ref < 40 else 3
    text = str(e)
    assert text.startswith("let %0 = ") and len(text) < 20_000
    with pytest.raises(ValueError, match="characters"):
        sym.to_cpp(e)
    assert sym.evaluate(e, {"x": 3, "y": 40}) == ref


# -- bounds -------------------------------------------------------------------------------
X, Y, Z, N = Var("x", -20, 20), Var("y", 0, 50), Var("z", 1, 8), Var("n", -8, -1)


@pytest.mark.parametrize("build, expected", [
    (lambda: X + Y, (-20, 70)),
    (lambda: X * Y, (-1000, 1000)),
    (lambda: X * X, (0, 400)),
    (lambda: sym.floordiv(X, 3), (-7, 6)),
    (lambda: sym.floordiv(X, Z), (-20, 20)),
    (lambda: sym.floordiv(X, N), (-20, 20)),
    (lambda: sym.floordiv(Y, N), (-50, 0)),
    (lambda: X % 8, (0, 7)),
    (lambda: X % -8, (-7, 0)),
    (lambda: Y % Z, (0, 7)),
    (lambda: sym.ceildiv(seq, 128) * 128, (128, 4096)),
    (lambda: sym.smin(Y, w), (-10, 50)),
    (lambda: sym.floordiv(u, 4), (None, None)),
    (lambda: sym.floordiv(w, 2), (-5, None)),
    (lambda: sym.floordiv(Y, w), (-50, 50)),  # |w| >= 1 wherever defined
    (lambda: sym.lt(X, Y), (0, 1)),
])
def test_bounds(build, expected):
    assert sym.bounds(build()) == expected


def test_upper_and_lower_bound():
    assert sym.upper_bound(sym.ceildiv(seq * heads, 128)) == 2048
    assert sym.lower_bound(seq - 5) == -4
    assert sym.bounds(7) == (7, 7)
    with pytest.raises(ValueError, match="no upper bound"):
        sym.upper_bound(u + 1)
    with pytest.raises(ValueError, match="no lower bound"):
        sym.lower_bound(w * -1 + 1)


def test_prove():
    assert sym.prove(sym.le(sym.ceildiv(seq, 128) * 128, 4096))
    assert not sym.prove(sym.lt(seq, 4096))
    assert sym.prove(sym.lt(seq, 4097))


# -- evaluate / substitute ---------------------------------------------------------------
def test_evaluate_env_by_name_or_var():
    e = sym.ceildiv(seq, 128) * heads
    assert sym.evaluate(e, {"seq": 129, "heads": 2}) == 4
    assert sym.evaluate(e, {seq: 129, heads: 2}) == 4
    assert sym.evaluate(const(3)) == 3


def test_evaluate_names_all_missing_variables():
    with pytest.raises(sym.UnboundVarError) as info:
        sym.evaluate(seq * heads + u, {"heads": 1})
    assert isinstance(info.value, KeyError)
    assert "seq [1, 4096]" in str(info.value) and "u [-inf, +inf]" in str(info.value)


def test_evaluate_checks_declared_bounds():
    with pytest.raises(ValueError, match=r"value 5000 for variable 'seq' is outside its "
                                         r"declared bounds \[1, 4096\]"):
        sym.evaluate(seq + 1, {"seq": 5000})
    assert sym.evaluate(seq + 1, {"seq": 5000}, check_bounds=False) == 5001
    with pytest.raises(TypeError):
        sym.evaluate(seq, {"seq": 2.0})


def test_division_by_zero():
    with pytest.raises(ZeroDivisionError):
        seq // 0
    with pytest.raises(ZeroDivisionError):
        seq % (heads - heads)
    with pytest.raises(ZeroDivisionError):
        sym.ceildiv(seq, 0)
    with pytest.raises(ZeroDivisionError, match="seq // u"):
        sym.evaluate(seq // u, {"seq": 3, "u": 0})
    # select evaluates only the chosen branch, like the exports
    guarded = sym.select(sym.ne(u, 0), seq // u, 0)
    assert sym.evaluate(guarded, {"seq": 3, "u": 0}) == 0


def test_substitute():
    e = sym.ceildiv(seq, 128) * heads
    assert sym.substitute(e, {"seq": 256}) is heads * 2
    assert sym.substitute(e, {seq: heads * 64}) is sym.floordiv(heads * 64 + 127, 128) * heads
    with pytest.raises(ValueError, match="outside its declared bounds"):
        sym.substitute(e, {"seq": 0})
    with pytest.raises(ValueError, match="not inside"):
        sym.substitute(e, {"seq": u})
    assert sym.substitute(e, {"seq": u}, check_bounds=False).free_vars() == {u, heads}
    with pytest.raises(TypeError):
        sym.substitute(e, {3: 4})


def test_compile_python():
    f = sym.compile_python(sym.ceildiv(seq, 128) * heads + sym.lt(seq, heads))
    assert f(seq=129, heads=2) == 4
    assert sym.compile_python(const(4))() == 4
    assert type(sym.compile_python(sym.lt(seq, heads))(seq=1, heads=2)) is int
