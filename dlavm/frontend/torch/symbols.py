"""torch's symbolic sizes (sympy expressions over ``s0, s1, ...``) -> ``dlavm.sym``.

Conversion is iterative and memoised on the sympy object. Variables keep
torch's bounds (``ExportedProgram.range_constraints``) and take the user's
``Dim`` names where the dim is an input dim.
"""
from __future__ import annotations

import sympy

from ... import sym
from ...ir import IRError


class SymbolTable:
    """Maps torch's sympy symbols to ``sym`` variables, and sympy exprs to ``sym`` exprs."""

    def __init__(self, ranges: dict, names: dict):
        self._vars: dict = {}
        self._memo: dict = {}
        for s, vr in ranges.items():
            if not s.is_Symbol:
                continue  # the range of a derived dim (``Dim("seq") + 2``): an expression over symbols
            lo = int(vr.lower) if vr.lower.is_finite else None
            hi = int(vr.upper) if vr.upper.is_finite else None
            self._vars[s] = sym.Var(names.get(s, str(s)), lo, hi)

    def var(self, s: sympy.Symbol):
        v = self._vars.get(s)
        if v is None:
            # A symbol torch introduced without a range (e.g. unbacked): no bounds.
            v = self._vars[s] = sym.Var(str(s), None, None)
        return v

    def convert(self, expr):
        """A ``sym.Expr`` for an int, a torch.SymInt, or a sympy expression."""
        if isinstance(expr, bool):
            raise IRError(f"expected a size, got bool {expr}")
        if isinstance(expr, int):
            return sym.const(expr)
        if hasattr(expr, "node") and hasattr(expr.node, "expr"):  # torch.SymInt
            maybe = expr.node.maybe_as_int() if hasattr(expr.node, "maybe_as_int") else None
            if maybe is not None:
                return sym.const(int(maybe))
            expr = expr.node.expr
        if expr in self._memo:
            return self._memo[expr]
        stack = [(expr, False)]
        while stack:
            e, expanded = stack.pop()
            if e in self._memo:
                continue
            if e.is_Integer:
                self._memo[e] = sym.const(int(e))
                continue
            if e.is_Symbol:
                self._memo[e] = self.var(e)
                continue
            if not expanded:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if a not in self._memo)
                continue
            self._memo[e] = self._combine(e, [self._memo[a] for a in e.args])
        return self._memo[expr]

    def _combine(self, e, args):
        name = type(e).__name__
        if isinstance(e, sympy.Add):
            out = args[0]
            for a in args[1:]:
                out = out + a
            return out
        if isinstance(e, sympy.Mul):
            out = args[0]
            for a in args[1:]:
                out = out * a
            return out
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) >= 0:
            out = sym.const(1)
            for _ in range(int(e.exp)):
                out = out * args[0]
            return out
        if name == "FloorDiv":
            return sym.floordiv(args[0], args[1])
        if name == "CeilToInt" or name == "CeilDiv":
            return sym.ceildiv(args[0], args[1]) if len(args) == 2 else args[0]
        if name in ("Mod", "PythonMod"):
            return sym.mod(args[0], args[1])
        if name == "Max":
            out = args[0]
            for a in args[1:]:
                out = sym.smax(out, a)
            return out
        if name == "Min":
            out = args[0]
            for a in args[1:]:
                out = sym.smin(out, a)
            return out
        raise IRError(f"cannot convert the symbolic size {e} (sympy {name}) to a DLAVM expression")
