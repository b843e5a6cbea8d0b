"""Task-IR passes. Each takes a :class:`Program` and returns a new one.

Guarantees afterwards:

* :func:`fold`: every constant sym field is a Python int; an ``If`` with a
  constant condition is replaced by its branch; a ``For`` with extent 0 is
  gone, with extent 1 it is its body with the variable = 0.
* :func:`dce`: no empty ``For``/``If``, no ``nop`` without a wait mask.
* :func:`simplify_loops`: ``fold`` + ``dce``.
* :func:`unroll`: every ``For`` with a constant extent <= ``max_trip`` is
  replaced by its iterations.
* :func:`unroll_to_bound`: no ``For`` left; a dynamic loop becomes
  ``upper_bound(extent)`` iterations, each under ``If(i < extent)`` (the
  stream backend turns a false guard into a NOP).
* :func:`specialize`: the given dims are replaced by their values, then folded.

Region nesting is bounded by loop depth (two or three), so the passes recurse
over regions but iterate over statements.
"""
from __future__ import annotations

from dataclasses import replace

from dlavm import sym

from .ir import Emit, For, HostWait, If, Program, RegWrite, is_sym


def _sub(v, mapping):
    if is_sym(v) and mapping:
        return sym.substitute(v, mapping)
    return v


def substitute_body(body, mapping: dict) -> tuple:
    """``body`` with variables replaced (``mapping``: Var or name -> int or Expr)."""
    out = []
    for s in body:
        if isinstance(s, Emit):
            out.append(replace(s, fields={k: _sub(v, mapping) for k, v in s.fields.items()}))
        elif isinstance(s, For):
            out.append(For(s.var, _sub(s.extent, mapping), substitute_body(s.body, mapping)))
        elif isinstance(s, If):
            out.append(If(_sub(s.cond, mapping), substitute_body(s.then, mapping),
                          substitute_body(s.orelse, mapping)))
        elif isinstance(s, RegWrite):
            out.append(RegWrite(s.reg, _sub(s.value, mapping)))
        else:
            out.append(s)
    return tuple(out)


def _const(v):
    return v.value if is_sym(v) and v.is_const else v


def _fold_body(body) -> tuple:
    out = []
    for s in body:
        if isinstance(s, Emit):
            out.append(replace(s, fields={k: _const(v) for k, v in s.fields.items()}))
        elif isinstance(s, For):
            ext = _const(s.extent)
            if isinstance(ext, int) and ext <= 0:
                continue
            if isinstance(ext, int) and ext == 1:
                out.extend(_fold_body(substitute_body(s.body, {s.var: 0})))
                continue
            out.append(For(s.var, s.extent, _fold_body(s.body)))
        elif isinstance(s, If):
            c = _const(s.cond)
            if isinstance(c, int):
                out.extend(_fold_body(s.then if c else s.orelse))
                continue
            out.append(If(s.cond, _fold_body(s.then), _fold_body(s.orelse)))
        elif isinstance(s, RegWrite):
            out.append(RegWrite(s.reg, _const(s.value)))
        else:
            out.append(s)
    return tuple(out)


def fold(prog: Program) -> Program:
    """Constant-fold fields, conditions and trip counts (see module table)."""
    return prog.with_body(_fold_body(prog.body))


def _dce_body(body) -> tuple:
    out = []
    for s in body:
        if isinstance(s, Emit) and s.op == "nop" and not s.wait:
            continue
        if isinstance(s, For):
            inner = _dce_body(s.body)
            if inner:
                out.append(For(s.var, s.extent, inner))
            continue
        if isinstance(s, If):
            then, orelse = _dce_body(s.then), _dce_body(s.orelse)
            if then or orelse:
                out.append(If(s.cond, then, orelse))
            continue
        out.append(s)
    return tuple(out)


def dce(prog: Program) -> Program:
    """Remove statements with no effect (see module table)."""
    return prog.with_body(_dce_body(prog.body))


def simplify_loops(prog: Program) -> Program:
    """``fold`` then ``dce``."""
    return dce(fold(prog))


def _unroll_body(body, max_trip: int | None) -> tuple:
    out = []
    for s in body:
        if isinstance(s, For):
            inner = _unroll_body(s.body, max_trip)
            ext = _const(s.extent)
            if isinstance(ext, int) and (max_trip is None or ext <= max_trip):
                for i in range(ext):
                    out.extend(substitute_body(inner, {s.var: i}))
            elif max_trip is None:
                hi = sym.upper_bound(sym.as_expr(s.extent))
                for i in range(hi):
                    guard = sym.lt(sym.const(i), s.extent)
                    out.append(If(guard, substitute_body(inner, {s.var: i})))
            else:
                out.append(For(s.var, s.extent, inner))
        elif isinstance(s, If):
            out.append(If(s.cond, _unroll_body(s.then, max_trip), _unroll_body(s.orelse, max_trip)))
        else:
            out.append(s)
    return tuple(out)


def unroll(prog: Program, max_trip: int = 8) -> Program:
    """Unroll constant-extent loops of at most ``max_trip`` iterations, then fold."""
    return simplify_loops(prog.with_body(_unroll_body(prog.body, max_trip)))


def unroll_to_bound(prog: Program) -> Program:
    """Unroll every loop; dynamic ones to their bound under ``If(i < extent)`` guards."""
    return simplify_loops(prog.with_body(_unroll_body(prog.body, None)))


def specialize(prog: Program, dims: dict) -> Program:
    """Replace dims (name -> int) by their values and fold; the result is static for those dims."""
    p = prog.with_body(substitute_body(prog.body, dims))
    p.dims = tuple(d for d in prog.dims if d.name not in dims)
    return simplify_loops(p)


def flatten(prog: Program) -> list:
    """``[(Emit, guard)]`` of a loop-free program: ``guard`` is a sym condition or ``None``.

    Raises ``ValueError`` if a ``For`` remains (run :func:`unroll_to_bound` first).
    """
    out = []
    stack = [(s, None) for s in reversed(prog.body)]
    while stack:
        s, g = stack.pop()
        if isinstance(s, Emit):
            out.append((s, g))
        elif isinstance(s, If):
            cond = s.cond if g is None else sym.and_(g, s.cond)
            neg = sym.not_(s.cond) if g is None else sym.and_(g, sym.not_(s.cond))
            stack.extend((b, _norm_guard(neg)) for b in reversed(s.orelse))
            stack.extend((b, _norm_guard(cond)) for b in reversed(s.then))
        elif isinstance(s, For):
            raise ValueError(f"flatten: loop over {s.var.name} remains; unroll it first")
        elif isinstance(s, (RegWrite, HostWait)):
            raise ValueError("flatten: host statements cannot go into an AUX stream")
    return out


def _norm_guard(g):
    g = sym.as_expr(g)
    return None if g.is_const and g.value else g


__all__ = ["fold", "dce", "simplify_loops", "unroll", "unroll_to_bound", "specialize", "flatten",
           "substitute_body"]
