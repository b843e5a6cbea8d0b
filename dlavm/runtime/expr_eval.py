"""Evaluate the symbolic-size expressions stored in an artifact manifest.

Manifests carry expressions in ``dlavm.sym.to_python`` form (``seq*2 + 1``,
``(seq + 15) // 16``, ``min(seq, 64)``, ``(a if c else b)``). An artifact is
untrusted input, so an expression is parsed and every AST node checked
against a whitelist (integer literals, names, arithmetic, comparisons,
``min``/``max`` calls, conditional expressions) before it is compiled; a
manifest cannot smuggle in attribute access, subscripts or other calls.
"""
from __future__ import annotations

import ast
from typing import Mapping

_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Call,
    ast.Name, ast.Constant, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not, ast.Invert,
    ast.BitAnd, ast.BitOr, ast.BitXor, ast.And, ast.Or,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)
_FUNCS = {"min": min, "max": max}
_CODE: dict = {}


class ExprError(ValueError):
    """A manifest expression is malformed, uses a forbidden construct, or misses a variable."""


def _compile(expr: str):
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ExprError(f"malformed size expression {expr!r}: {e.msg}") from None
    for node in ast.walk(tree):  # ast.walk is iterative (a deque)
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"size expression {expr!r} uses a forbidden construct ({type(node).__name__})")
        if isinstance(node, ast.Constant) and (not isinstance(node.value, int) or isinstance(node.value, bool)):
            raise ExprError(f"size expression {expr!r} has a non-integer literal {node.value!r}")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS
                                           or node.keywords):
            raise ExprError(f"size expression {expr!r} calls something other than min/max")
    return compile(tree, "<size expression>", "eval")


def eval_expr(expr: str, env: Mapping[str, int]) -> int:
    """The integer value of ``expr`` with variables bound by ``env`` (name -> int)."""
    code = _CODE.get(expr)
    if code is None:
        code = _CODE[expr] = _compile(expr)
    scope = dict(_FUNCS)
    scope.update(env)
    try:
        return int(eval(code, {"__builtins__": {}}, scope))  # safe: AST whitelisted above
    except NameError as e:
        raise ExprError(f"size expression {expr!r} needs a value for {e.name!r}") from None
