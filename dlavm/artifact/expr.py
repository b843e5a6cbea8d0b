"""Evaluate the symbolic-size expressions stored in an artifact manifest.

Manifests carry expressions in ``dlavm.sym.to_python`` form (``seq*2 + 1``,
``(seq + 15) // 16``, ``min(seq, 64)``, ``(a if c else b)``). A manifest is
untrusted input, so an expression is parsed and every AST node checked
against a whitelist (integer literals, names, arithmetic, comparisons,
``min``/``max`` calls, conditional expressions) before it is compiled; a
manifest cannot smuggle in attribute access, subscripts or other calls.

The work is bounded: an expression is at most :data:`MAX_EXPR_CHARS`
characters and :data:`MAX_EXPR_DEPTH` nodes deep (deeper is refused, never a
``RecursionError``), and ``**`` only takes a literal exponent in
``[0, MAX_POW_EXPONENT]`` on a name or literal base, so no expression can
build an integer larger than a few thousand bits per character.
"""
from __future__ import annotations

import ast
from typing import Mapping

MAX_EXPR_CHARS = 8192
MAX_EXPR_DEPTH = 64
MAX_POW_EXPONENT = 64

_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Call,
    ast.Name, ast.Constant, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not, ast.Invert,
    ast.BitAnd, ast.BitOr, ast.BitXor, ast.And, ast.Or,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)
_FUNCS = {"min": min, "max": max}
_CODE: dict = {}
_NAMES: dict = {}


class ExprError(ValueError):
    """A manifest expression is malformed, uses a forbidden construct, or misses a variable."""


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:  # iterative: a deep tree cannot overflow the interpreter's stack here
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_EXPR_DEPTH:
            break
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(node))
    return deepest


def _parse(expr: str) -> ast.Expression:
    if not isinstance(expr, str):
        raise ExprError(f"a size expression must be a string, got {type(expr).__name__}")
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"size expression is {len(expr)} characters long; the limit is {MAX_EXPR_CHARS}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ExprError(f"malformed size expression {expr!r}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"size expression {expr[:40]!r}... is nested too deeply") from None
    if _depth(tree) > MAX_EXPR_DEPTH:
        raise ExprError(f"size expression {expr[:40]!r}... is nested deeper than {MAX_EXPR_DEPTH} levels")
    names, callees = set(), {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):  # ast.walk is iterative (a deque)
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"size expression {expr!r} uses a forbidden construct ({type(node).__name__})")
        if isinstance(node, ast.Constant) and (not isinstance(node.value, int) or isinstance(node.value, bool)):
            raise ExprError(f"size expression {expr!r} has a non-integer literal {node.value!r}")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS
                                           or node.keywords or len(node.args) < 2):
            raise ExprError(f"size expression {expr!r} calls something other than min/max")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exp, base = node.right, node.left
            if not (isinstance(exp, ast.Constant) and isinstance(exp.value, int)
                    and 0 <= exp.value <= MAX_POW_EXPONENT and isinstance(base, (ast.Name, ast.Constant))):
                raise ExprError(f"size expression {expr!r}: '**' needs a name or literal base and a literal "
                                f"exponent in [0, {MAX_POW_EXPONENT}]")
        if isinstance(node, ast.Name) and id(node) not in callees:
            names.add(node.id)
    _NAMES[expr] = frozenset(names)
    return tree


def check_expr(expr: str) -> frozenset:
    """The variable names of ``expr`` after checking it (raises :class:`ExprError`); compiles it once."""
    if expr not in _CODE:
        _CODE[expr] = compile(_parse(expr), "<size expression>", "eval")
    return _NAMES[expr]


def eval_expr(expr: str, env: Mapping[str, int]) -> int:
    """The integer value of ``expr`` with variables bound by ``env`` (name -> int)."""
    code = _CODE.get(expr)
    if code is None:
        check_expr(expr)
        code = _CODE[expr]
    scope = dict(_FUNCS)
    scope.update(env)
    try:
        return int(eval(code, {"__builtins__": {}}, scope))  # safe: AST whitelisted and bounded above
    except NameError as e:
        raise ExprError(f"size expression {expr!r} needs a value for {e.name!r}") from None
    except ZeroDivisionError:
        raise ExprError(f"size expression {expr!r} divides by zero for {dict(env)}") from None
    except TypeError as e:  # e.g. min() of a single int
        raise ExprError(f"size expression {expr!r} cannot be evaluated: {e}") from None


__all__ = ["ExprError", "eval_expr", "check_expr", "MAX_EXPR_CHARS", "MAX_EXPR_DEPTH", "MAX_POW_EXPONENT"]
