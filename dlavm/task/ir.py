"""Task IR: an imperative program over symbolic ints that drives the device.

A :class:`Program` is a list of statements:

* :class:`Emit`: one ISA instruction (doc/isa.md). A field value is a plain
  Python value or a ``dlavm.sym`` expression; a non-constant expression is a
  *dynamic word* the host patches before running. ``wait`` is the unit wait
  mask (filled by :func:`dlavm.task.deps.assign_waits`, from the operand
  ranges ``dlavm.target.insn_model.accesses`` gives for the fields).
* :class:`For`: ``body`` repeated for ``var = 0 .. extent-1`` (``extent``
  symbolic; ``var`` is a ``sym.Var`` bounded by ``[0, upper_bound(extent)-1]``).
* :class:`If`: ``then`` when ``cond`` is nonzero, else ``orelse``.
* :class:`RegWrite`, :class:`HostWait`: host register traffic (direct mode,
  debugging).

Statements are immutable dataclasses; passes return new programs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Union

from dlavm import sym


@dataclass(frozen=True)
class Emit:
    """One instruction: ``op`` with ``fields``; ``unit`` is the executing unit."""

    op: str
    fields: dict
    unit: str
    wait: frozenset = frozenset()
    comment: str = ""
    tag: str = ""  # the device op it implements, "dev.mvm#3" (op and node), for the manifest's records

    def with_fields(self, fields: dict) -> "Emit":
        return replace(self, fields=fields)


@dataclass(frozen=True)
class For:
    """``body`` for ``var`` in ``range(extent)``."""

    var: Any
    extent: Any
    body: tuple


@dataclass(frozen=True)
class If:
    """``then`` if ``cond`` (a sym expression, nonzero = true) else ``orelse``."""

    cond: Any
    then: tuple
    orelse: tuple = ()


@dataclass(frozen=True)
class RegWrite:
    """Host write of a 32-bit register (``value`` may be symbolic)."""

    reg: str
    value: Any


@dataclass(frozen=True)
class HostWait:
    """Host polls STATUS until the device is idle."""


Stmt = Union[Emit, For, If, RegWrite, HostWait]


@dataclass
class Program:
    """A lowered device segment: its statements and the dynamic dims it reads."""

    name: str
    body: tuple
    dims: tuple = ()
    attrs: dict = field(default_factory=dict)

    def with_body(self, body) -> "Program":
        return Program(self.name, tuple(body), self.dims, dict(self.attrs))


def is_sym(v: Any) -> bool:
    return isinstance(v, sym.Expr)


def fmt_value(v: Any) -> str:
    """Text of a field value: addresses in hex, expressions in braces."""
    if is_sym(v):
        return str(v.value) if v.is_const else "{" + str(v) + "}"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_program(prog: Program) -> str:
    """Readable text of a program (deterministic; usable as a golden)."""
    dims = ", ".join(f"{d.name} in [{d.lo}, {d.hi}]" for d in prog.dims)
    lines = [f"program {prog.name}({dims}) {{"]
    stack = [(s, 1) for s in reversed(prog.body)]
    while stack:
        s, depth = stack.pop()
        pad = "  " * depth
        if isinstance(s, str):  # a closing brace marker
            lines.append(pad + s)
        elif isinstance(s, Emit):
            parts = [f"{k}={fmt_value(v)}" for k, v in s.fields.items()]
            wait = f" wait={','.join(sorted(s.wait))}" if s.wait else ""
            note = f"  # {s.comment}" if s.comment else ""
            lines.append(f"{pad}{s.op} {' '.join(parts)}{wait}{note}")
        elif isinstance(s, For):
            lines.append(f"{pad}for {s.var.name} in range({fmt_value(s.extent)}) {{")
            stack.append(("}", depth))
            stack.extend((b, depth + 1) for b in reversed(s.body))
        elif isinstance(s, If):
            lines.append(f"{pad}if {fmt_value(s.cond)} {{")
            if s.orelse:
                stack.append(("}", depth))
                stack.extend((b, depth + 1) for b in reversed(s.orelse))
                stack.append(("} else {", depth))
            else:
                stack.append(("}", depth))
            stack.extend((b, depth + 1) for b in reversed(s.then))
        elif isinstance(s, RegWrite):
            lines.append(f"{pad}reg {s.reg} = {fmt_value(s.value)}")
        elif isinstance(s, HostWait):
            lines.append(f"{pad}host_wait")
    lines.append("}")
    return "\n".join(lines)


def count_emits(body) -> int:
    """Instructions in ``body`` (loop bodies counted once)."""
    n, stack = 0, list(body)
    while stack:
        s = stack.pop()
        if isinstance(s, Emit):
            n += 1
        elif isinstance(s, For):
            stack.extend(s.body)
        elif isinstance(s, If):
            stack.extend(s.then)
            stack.extend(s.orelse)
    return n


__all__ = ["Emit", "For", "If", "RegWrite", "HostWait", "Stmt", "Program", "format_program",
           "fmt_value", "is_sym", "count_emits"]
