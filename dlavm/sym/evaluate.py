"""Substitution and evaluation (both iterative: explicit stacks, dict memos)."""
from __future__ import annotations

import numbers

from .expr import Expr, Var, as_expr, _short, walk
from .ops import rebuild


class UnboundVarError(KeyError):
    """evaluate() was not given a value for some variables (named in the message)."""

    def __str__(self):
        return str(self.args[0]) if self.args else "unbound variables"


def _lookup_tables(mapping):
    by_var: dict = {}
    by_name: dict = {}
    for k, v in mapping.items():
        if isinstance(k, Var):
            by_var[k] = v
        elif isinstance(k, str):
            by_name[k] = v
        else:
            raise TypeError(f"keys must be sym.Var or variable names, got {type(k).__name__} "
                            f"{k!r}")
    return by_var, by_name


def _fmt_range(v: Var) -> str:
    lo = "-inf" if v.lo is None else v.lo
    hi = "+inf" if v.hi is None else v.hi
    return f"[{lo}, {hi}]"


def _check_int_in_range(v: Var, x: int) -> None:
    if (v.lo is not None and x < v.lo) or (v.hi is not None and x > v.hi):
        raise ValueError(f"value {x} for variable {v.name!r} is outside its declared "
                         f"bounds {_fmt_range(v)}")


def substitute(e, mapping, *, check_bounds: bool = True) -> Expr:
    """``e`` with variables replaced and the result re-simplified.

    ``mapping`` maps a ``Var`` or a variable name (all variables of that name)
    to an int or Expr; a ``Var`` key wins over its name. With
    ``check_bounds``, an int outside the variable's declared bounds, or an
    expression whose bounds are not inside them, raises ValueError: rules that
    used the old bounds would otherwise be unsound for the new value.
    """
    e = as_expr(e)
    by_var, by_name = _lookup_tables(mapping)
    memo: dict = {}
    for n in walk(e):
        if n.kind == "var":
            if n in by_var:
                val = by_var[n]
            elif n.name in by_name:
                val = by_name[n.name]
            else:
                memo[n] = n
                continue
            new = as_expr(val)
            if check_bounds:
                if new.kind == "const":
                    _check_int_in_range(n, new.data[0])
                elif new._lo < n._lo or new._hi > n._hi:
                    lo, hi = ("-inf" if new._lo == -float("inf") else new._lo,
                              "+inf" if new._hi == float("inf") else new._hi)
                    raise ValueError(f"substituting {_short(new)} (bounds [{lo}, {hi}]) for "
                                     f"variable {n.name!r} {_fmt_range(n)}: its range is not "
                                     "inside the variable's bounds")
            memo[n] = new
        elif not n.args:
            memo[n] = n
        else:
            new_args = tuple(memo[a] for a in n.args)
            if all(x is y for x, y in zip(new_args, n.args)):
                memo[n] = n
            else:
                memo[n] = rebuild(n.kind, new_args, n.data)
    return memo[e]


def _apply(kind: str, n: Expr, vals: list) -> int:
    if kind == "add":
        s = n.data[0]
        for v, k in zip(vals, n.data[1:]):
            s += v * k
        return s
    if kind == "mul":
        p = 1
        for v, k in zip(vals, n.data):
            p *= v ** k
        return p
    if kind in ("floordiv", "mod"):
        a, b = vals
        if b == 0:
            raise ZeroDivisionError(f"division by zero in {_short(n)}")
        return a // b if kind == "floordiv" else a % b
    if kind == "min":
        return min(vals)
    if kind == "max":
        return max(vals)
    if kind == "lt":
        return int(vals[0] < vals[1])
    if kind == "eq":
        return int(vals[0] == vals[1])
    if kind == "ne":
        return int(vals[0] != vals[1])
    if kind == "and":
        return int(all(vals))
    if kind == "or":
        return int(any(vals))
    raise AssertionError(f"no evaluation rule for kind {kind!r}")


def evaluate(e, env=None, *, check_bounds: bool = True) -> int:
    """The int value of ``e`` with variables taken from ``env``.

    ``env`` maps a ``Var`` or a variable name (applies to every variable of
    that name) to an int. Raises :class:`UnboundVarError` (a KeyError) naming
    every variable without a value, ValueError for a value outside its
    variable's declared bounds (when ``check_bounds``), and ZeroDivisionError
    naming the subexpression that divides by zero. ``select`` evaluates only
    the chosen branch, exactly as the Python and C++ exports do.
    """
    e = as_expr(e)
    if e.kind == "const":
        return e.data[0]
    by_var, by_name = _lookup_tables(env or {})
    vals: dict = {}
    missing = []
    for v in e.free_vars():
        x = by_var[v] if v in by_var else by_name.get(v.name)
        if x is None:
            missing.append(v)
            continue
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise TypeError(f"value for variable {v.name!r} must be an int, got "
                            f"{type(x).__name__} {x!r}")
        x = int(x)
        if check_bounds:
            _check_int_in_range(v, x)
        vals[v] = x
    if missing:
        names = ", ".join(sorted(f"{v.name} {_fmt_range(v)}" for v in missing))
        raise UnboundVarError(f"no value for variable(s) {names} in {_short(e)}")

    stack = [e]
    while stack:
        n = stack[-1]
        if n in vals:
            stack.pop()
            continue
        kind = n.kind
        if kind == "const":
            vals[n] = n.data[0]
            stack.pop()
            continue
        if kind == "select":
            c, a, b = n.args
            if c not in vals:
                stack.append(c)
                continue
            chosen = a if vals[c] else b
            if chosen not in vals:
                stack.append(chosen)
                continue
            vals[n] = vals[chosen]
            stack.pop()
            continue
        pending = [a for a in n.args if a not in vals]
        if pending:
            stack.extend(pending)
            continue
        vals[n] = _apply(kind, n, [vals[a] for a in n.args])
        stack.pop()
    return vals[e]
