"""Wait-bit assignment (doc/isa.md section 5) for a flat instruction list.

Hardware does not compare addresses, so software sets a wait bit for every
read-after-write (any unit, including the same one), and every
write-after-read and write-after-write between different units. This pass
computes them from each instruction's operand byte ranges, using the upper
bound of symbolic sizes, so the mask is right for every dynamic size.

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
from dlavm.target.isa import WAIT_UNITS



def _ranges(rs) -> list:
    out = []
    for a, n in rs:
        a = sym.upper_bound(sym.as_expr(a)) if isinstance(a, sym.Expr) else int(a)
        n = sym.upper_bound(sym.as_expr(n)) if isinstance(n, sym.Expr) else int(n)
        if n > 0:
            out.append((a, a + n))
    return out


def _overlap(xs, ys) -> bool:
    return any(a < d and c < b for a, b in xs for c, d in ys)


def assign_waits(entries: list) -> list:
    """``entries`` ([(Emit, guard)]) with each Emit's ``wait`` set; order kept.

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
        reads, writes = _ranges(e.reads), _ranges(e.writes)
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


__all__ = ["assign_waits"]
