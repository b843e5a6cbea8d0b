"""Symbolic integers: hash-consed expressions over bounded variables.

Tensor shapes, loop bounds and buffer sizes are ``Expr`` objects built from
variables (``Var("seq", 1, 4096)``), constants and the operators
``+ - * // % **``. Construction simplifies by a normal form plus a rule table
(``dlavm.sym.rules``); ``bounds`` gives sound worst-case ranges;
``to_python``/``to_cpp`` export with identical semantics. See doc/sym.md.
"""
from .expr import Expr, Var, as_expr, const, walk
from . import ops as _ops
from . import rules as _rules  # noqa: F401  (registers the rule table)
from .bounds import bounds, lower_bound, upper_bound
from .codegen import compile_python, to_cpp, to_python
from .evaluate import UnboundVarError, evaluate, substitute
from .ops import (and_, ceildiv, eq, floordiv, ge, gt, le, lt, mod, ne, not_, or_, prove,
                  select, smax, smin)

__all__ = [
    "Expr", "Var", "const", "as_expr", "walk",
    "floordiv", "ceildiv", "mod", "smin", "smax", "select",
    "lt", "le", "gt", "ge", "eq", "ne", "and_", "or_", "not_", "prove",
    "bounds", "lower_bound", "upper_bound",
    "substitute", "evaluate", "UnboundVarError",
    "to_python", "to_cpp", "compile_python",
]

del _ops
