"""Symbolic device addresses and the relocation step that resolves them.

Lowering runs once. A rule never sees a number for a buffer's address: it
gets a :class:`BufRef` (a buffer handle plus a byte offset, which may be a
symbolic expression such as ``i * tile_bytes``) and does address arithmetic
on it. Memory is planned after every function has been lowered, when the
sizes of all packed weights and scratch buffers are known, and
:func:`relocate` then replaces each handle by ``address + offset``.

Keys: an activation is keyed by its graph node and the function it belongs
to (each function has its own arena); a packed weight, scratch or persistent
buffer by its name (pools shared by every function).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from dlavm import sym

from .ir import Emit, For, If, Program


class RelocationError(ValueError):
    """A handle cannot be resolved (no address planned for it); names the buffer."""


@dataclass(frozen=True, eq=False)
class BufRef:
    """``offset`` bytes into the buffer ``key`` (a graph node of function ``fn``, or a pool name)."""

    key: Any
    fn: str | None = None
    offset: Any = 0

    def __add__(self, other):
        if isinstance(other, BufRef):
            raise TypeError("cannot add two device addresses")
        if not isinstance(other, (int, sym.Expr)) or isinstance(other, bool):
            return NotImplemented
        return BufRef(self.key, self.fn, _simplify(self.offset + other))

    __radd__ = __add__

    def __sub__(self, other):
        if not isinstance(other, (int, sym.Expr)) or isinstance(other, bool):
            return NotImplemented
        return BufRef(self.key, self.fn, _simplify(self.offset - other))

    def __bool__(self) -> bool:
        return True

    def same_buffer(self, other) -> bool:
        return isinstance(other, BufRef) and other.key is self.key and other.fn == self.fn

    def __repr__(self) -> str:
        name = self.key if isinstance(self.key, str) else getattr(getattr(self.key, "op", None), "name", "value")
        return f"&{name}+{self.offset}"


def _simplify(x):
    if isinstance(x, sym.Expr) and x.is_const:
        return x.value
    return x


def resolver(plan, fn_name: str) -> Callable[[BufRef], Any]:
    """``ref -> address`` for the memory plan of function ``fn_name``."""
    def resolve(ref: BufRef):
        if ref.fn is not None and ref.fn != fn_name:
            raise RelocationError(f"{ref!r} belongs to function '{ref.fn}', not '{fn_name}'")
        try:
            base = plan.address(ref.key)
        except KeyError:
            raise RelocationError(f"no address was planned for {ref!r} in function '{fn_name}'") from None
        return _simplify(base + ref.offset)
    return resolve


def relocate_value(v, resolve):
    """``v`` with every :class:`BufRef` inside (tuples, lists, dict values) resolved."""
    if isinstance(v, BufRef):
        return resolve(v)
    if isinstance(v, tuple):
        return tuple(relocate_value(x, resolve) for x in v)
    if isinstance(v, list):
        return [relocate_value(x, resolve) for x in v]
    if isinstance(v, dict):
        return {k: relocate_value(x, resolve) for k, x in v.items()}
    return v


def relocate_stmts(stmts, resolve) -> tuple:
    out = []
    for s in stmts:
        if isinstance(s, Emit):
            s = replace(s, fields=relocate_value(s.fields, resolve))
        elif isinstance(s, For):
            s = For(s.var, s.extent, relocate_stmts(s.body, resolve))
        elif isinstance(s, If):
            s = If(s.cond, relocate_stmts(s.then, resolve), relocate_stmts(s.orelse, resolve))
        out.append(s)
    return tuple(out)


def relocate_program(prog: Program, resolve) -> Program:
    return replace(prog, body=relocate_stmts(prog.body, resolve))


def has_refs(v) -> bool:
    """True when ``v`` (a field value, statement list, ...) still holds an unresolved handle."""
    if isinstance(v, BufRef):
        return True
    if isinstance(v, (tuple, list)):
        return any(has_refs(x) for x in v)
    if isinstance(v, dict):
        return any(has_refs(x) for x in v.values())
    if isinstance(v, Emit):
        return has_refs(v.fields)
    if isinstance(v, For):
        return has_refs(v.body)
    if isinstance(v, If):
        return has_refs(v.then) or has_refs(v.orelse)
    return False


__all__ = ["BufRef", "RelocationError", "relocate_program", "relocate_stmts", "relocate_value", "resolver",
           "has_refs"]
