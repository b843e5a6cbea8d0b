"""Manifest size expressions are evaluated safely and exactly like dlavm.sym."""
import pytest

from dlavm import sym
from dlavm.artifact.expr import ExprError, eval_expr


def test_matches_sym_on_generated_expressions():
    s = sym.Var("seq", 1, 512)
    k = sym.Var("kv", 0, 512)
    exprs = [s * 2 + 1, sym.ceildiv(s, 16), sym.smin(s, 64), sym.floordiv(s + k, 7) % 5,
             sym.select(sym.lt(s, 100), s, 100), sym.smax(s - k, 0)]
    for e in exprs:
        for sv, kv in [(1, 0), (17, 3), (512, 512), (100, 99)]:
            assert eval_expr(sym.to_python(e), {"seq": sv, "kv": kv}) == sym.evaluate(e, {"seq": sv, "kv": kv})


@pytest.mark.parametrize("bad", ["__import__('os')", "().__class__", "seq[0]", "open('x')", "1.5 * seq",
                                 "lambda: 1", "min(seq, key=1)", "seq ** 2", "not seq", "seq and 1", "~seq"])
def test_forbidden_constructs_are_refused(bad):
    with pytest.raises(ExprError):
        eval_expr(bad, {"seq": 1})


def test_missing_variable_is_named():
    with pytest.raises(ExprError, match="needs a value for 'kv'"):
        eval_expr("seq + kv", {"seq": 1})
