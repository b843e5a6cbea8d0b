"""Wait-bit assignment (doc/isa.md section 5) for a flat instruction list.

Hardware does not compare addresses, so software sets a wait bit for every
read-after-write (any unit, including the same one), and every
write-after-read and write-after-write between different units. This pass
computes them from each instruction's operand byte ranges, which it takes
from the shared instruction model (:func:`dlavm.target.insn_model.accesses`
on the instruction's fields, the same formulas the simulator uses). A
symbolic operand counts as the interval from the lower bound of its address
to the upper bound of its address + span (:func:`operand_ranges`), which
holds every byte it touches for every dynamic size, so the mask is right
for all of them.

Bookkeeping: ``known[U][X]`` is the index of the last instruction on unit X
that unit U knows has completed (because an earlier U instruction waited on
X; U runs its instructions in order). An instruction on U conflicts with
every earlier X instruction after ``known[U][X]`` whose ranges overlap its
own as above; it then waits on X. A *guarded* instruction (it may be turned
into a NOP at run time) gets its wait bits but does not advance ``known``,
because a NOP runs on the issue stage, not on U. It does advance
``known_under[guard]``, which only instructions with the very same guard
use: when one of them runs, the earlier ones with that guard ran too.
"""
from __future__ import annotations

from dataclasses import replace

from dlavm import sym
from dlavm.target.insn_model import accesses
from dlavm.target.isa import WAIT_UNITS


def _bound(v, which) -> int:
    return which(sym.as_expr(v)) if isinstance(v, sym.Expr) else int(v)


def _as_field_var(name: str, v):
    """A dynamic field as a variable over the values it can take: its bounds, clamped at 0
    (every dynamic field is an unsigned word, which the encoder refuses to make negative)."""
    if not isinstance(v, sym.Expr) or v.is_const:
        return v
    return sym.Var(f"field_{name}", max(0, _bound(v, sym.lower_bound)), _bound(v, sym.upper_bound))


def operand_ranges(e, target) -> tuple[list, list]:
    """``(reads, writes)``: conservative ``[lo, hi)`` byte intervals of Emit ``e``'s operands.

    Each holds every byte the operand touches at every binding of the dims: its low end is the
    lower bound of the address, its high end the upper bound of address + span. Both are taken
    twice, from the fields' expressions (which keeps relations between dims, e.g. ``pos + m``
    is ``kv_len``) and from each dynamic field as an independent unsigned value (which keeps
    ``pos >= 0``); the tighter of the two sound bounds is used.
    """
    exact = accesses(e.op, e.fields, target)
    unsigned = accesses(e.op, {k: _as_field_var(k, v) for k, v in e.fields.items()}, target)
    reads, writes = [], []
    for a, u in zip(exact, unsigned):
        if min(_bound(a.nbytes, sym.upper_bound), _bound(u.nbytes, sym.upper_bound)) <= 0:
            continue
        lo = max(_bound(a.addr, sym.lower_bound), _bound(u.addr, sym.lower_bound))
        hi = min(_bound(a.addr + a.span, sym.upper_bound), _bound(u.addr + u.span, sym.upper_bound),
                 _bound(a.addr, sym.upper_bound) + _bound(a.span, sym.upper_bound))
        (writes if a.write else reads).append((lo, hi))
    return reads, writes


def _overlap(xs, ys) -> bool:
    return any(a < d and c < b for a, b in xs for c, d in ys)


def assign_waits(entries: list, target) -> list:
    """``entries`` ([(Emit, guard)]) of a program for ``target``, with each Emit's ``wait`` set; order kept.

    Guarantees: for every pair (earlier i on X, later j on U) with a hazard as
    defined above, j waits on X or some instruction on U between them that
    is not guarded waits on X after i was issued.
    """
    units = WAIT_UNITS
    history = {u: [] for u in units}  # unit -> [(index, reads, writes)]
    known = {u: {x: -1 for x in units} for u in units + ("seq",)}
    known_under: dict = {}  # guard -> unit -> unit -> index (see the module docstring)
    out = []
    for idx, (e, guard) in enumerate(entries):
        reads, writes = operand_ranges(e, target)
        u = e.unit
        wait = set(e.wait)
        mine = known_under.setdefault(guard, {v: {x: -1 for x in units} for v in units + ("seq",)}) \
            if guard is not None else None
        for x in units:
            floor = known[u][x] if mine is None else max(known[u][x], mine[u][x])
            for j, r, w in reversed(history[x]):
                if j <= floor:
                    break
                if _overlap(w, reads) or (x != u and (_overlap(w, writes) or _overlap(r, writes))):
                    wait.add(x)
                    break
        for x in wait:
            if history[x]:
                (known if guard is None else mine)[u][x] = history[x][-1][0]
        if u in history:
            history[u].append((idx, reads, writes))
        out.append((replace(e, wait=frozenset(wait)), guard))
    return out


__all__ = ["assign_waits", "operand_ranges"]
