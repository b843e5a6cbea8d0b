"""AUX stream emission: task program -> 64-byte entries + patch table + loops.

Static loops are unrolled. A loop over a dynamic dim (the token tiles of
``mvm``, the query-row tiles of attention) is emitted **once**, its
iteration variable left symbolic: the entries ``[start, end)`` are a *loop*
with a trip count expression, and the host re-launches them once per
iteration, re-patched for that iteration (doc/backend.md, "AUX streams").
The stream therefore holds one tile per tiled op whatever the bound. Every
field whose value is a non-constant sym expression (of the dims and, inside
a loop, of its variable) is a *patch*: the static stream holds the field at
its upper bound (so the listing is a valid worst-case program) and the host
rewrites the field's bits. An entry under a dynamic condition is *guarded*:
the host turns it into a ``nop`` (keeping its wait mask) while the
condition is false.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from dlavm import sym
from dlavm.target import asm, isa

from dlavm.task.deps import assign_waits
from dlavm.task.ir import Emit, For, If, Program
from dlavm.task.passes import unroll


class StreamError(ValueError):
    """A program cannot be encoded as a stream (names the instruction and field)."""


@dataclass
class Stream:
    """One AUX stream: static instructions, field patches, entry guards and loops."""

    name: str
    insns: list
    patches: list = field(default_factory=list)  # {index, field, word, lo, width, kind, expr}
    guards: list = field(default_factory=list)   # {index, expr}
    loops: list = field(default_factory=list)    # {var, start, end, trips}: entries [start, end) run `trips` times
    comments: list = field(default_factory=list)
    tags: list = field(default_factory=list)     # per entry: the device op it implements ("dev.mvm#3") or None
    exprs: dict = field(default_factory=dict)    # ("patch"|"guard"|"loop", i) -> sym.Expr, for code generators

    def to_bytes(self) -> bytes:
        return isa.encode_stream(self.insns)

    def listing(self) -> str:
        """Assembly listing; dynamic fields, guards and loops are annotated as comments."""
        notes: dict = {}
        for lp in self.loops:
            notes.setdefault(lp["start"], []).append(f"loop {lp['var']} < {{{lp['trips']}}} "
                                                     f"(entries {lp['start']}..{lp['end'] - 1})")
        for p in self.patches:
            notes.setdefault(p["index"], []).append(f"{p['field']}={{{p['expr']}}}")
        for g in self.guards:
            notes.setdefault(g["index"], []).append(f"if {{{g['expr']}}}")
        lines = []
        for i, insn in enumerate(self.insns):
            c = notes.get(i, []) + ([self.comments[i]] if self.comments[i] else [])
            tail = f"  # {'; '.join(c)}" if c else ""
            lines.append(f"{i * isa.INSN_BYTES:08x}: {asm.format_insn(insn)}{tail}")
        return "\n".join(lines) + "\n"


def _norm_guard(g):
    if g is None:
        return None
    g = sym.as_expr(g)
    return None if g.is_const and g.value else g


def _and(g, c):
    return _norm_guard(c if g is None else sym.and_(g, c))


def flatten_loops(prog: Program) -> tuple[list, list]:
    """``([(Emit, guard, loop)], [loop dict])`` of a program whose only loops are dynamic: each loop's
    body appears once, its variable symbolic, and ``loop`` is the index of the loop an entry belongs to
    (None outside loops). A loop dict is ``{var, extent, start, end}``. A loop whose trip count may be 0
    guards its body with ``0 < extent``. Refuses (:class:`StreamError`) a dynamic loop inside another."""
    out: list = []
    loops: list = []

    def walk(stmts, g, loop):
        for s in stmts:
            if isinstance(s, Emit):
                if not (g is not None and g.is_const and not g.value):   # never runs
                    out.append((s, g, loop))
            elif isinstance(s, If):
                walk(s.then, _and(g, s.cond), loop)
                walk(s.orelse, _and(g, sym.not_(s.cond)), loop)
            elif isinstance(s, For):
                if loop is not None:
                    raise StreamError(f"loop over {s.var.name} inside the loop over {loops[loop]['var'].name}: "
                                      "the host re-launches one dynamic loop level per stream")
                ext = sym.as_expr(s.extent)
                inner = g if sym.lower_bound(ext) >= 1 else _and(g, sym.lt(sym.const(0), ext))
                j, start = len(loops), len(out)
                loops.append(None)
                walk(s.body, inner, j)
                loops[j] = {"var": s.var, "extent": ext, "start": start, "end": len(out)}
                if len(out) == start:   # nothing left to run
                    loops.pop()
            else:
                raise StreamError(f"{type(s).__name__}: host statements cannot go into an AUX stream")
    walk(prog.body, None, None)
    return out, loops


def loop_waits(entries: list, loops: list, target) -> list:
    """``entries`` ([(Emit, guard, loop)]) with wait masks right for every trip count: each loop body is
    analysed twice in a row (:func:`~dlavm.task.deps.assign_waits`), the second copy guarded by
    ``1 < extent``. The first copy sees what precedes the loop; the second sees the first, and since a
    loop variable stands for its whole range (operand intervals are taken over every value), any
    iteration's hazards with any earlier one. A body entry gets the union of its two masks; entries
    after the loop were analysed after the second copy (a superset of what the last iteration
    leaves behind). Each re-launch of a body starts on an idle device, where waits are moot."""
    seq, where = [], []   # analysis order; (position in entries, copy)
    i = 0
    for j, lp in enumerate(loops):
        while i < lp["start"]:
            seq.append(entries[i][:2])
            where.append((i, 0))
            i += 1
        body = entries[lp["start"]:lp["end"]]
        for k, (e, g, _) in enumerate(body):
            seq.append((e, g))
            where.append((lp["start"] + k, 0))
        again = sym.lt(sym.const(1), lp["extent"])
        for k, (e, g, _) in enumerate(body):
            seq.append((e, _and(g, again)))
            where.append((lp["start"] + k, 1))
        i = lp["end"]
    while i < len(entries):
        seq.append(entries[i][:2])
        where.append((i, 0))
        i += 1
    waited = assign_waits(seq, target)
    masks = [frozenset() for _ in entries]
    for (pos, _), (e, _) in zip(where, waited):
        masks[pos] = masks[pos] | e.wait
    return [(replace(e, wait=m), g, lp) for (e, g, lp), m in zip(entries, masks)]


def _placeholder(e: sym.Expr) -> int:
    hi = sym.bounds(e)[1]
    if hi is None:
        raise StreamError(f"dynamic field {e} has no upper bound")
    return max(int(hi), 0)


def build_stream(prog: Program, target) -> Stream:
    """Encode ``prog`` for ``target``: static loops unrolled, each dynamic loop once (:func:`flatten_loops`,
    waits by :func:`loop_waits`); ``len(insns)`` is fixed for every dims binding and, since a dynamic
    loop's body is not repeated in the stream, independent of the dims' bounds."""
    entries, loops = flatten_loops(unroll(prog, max_trip=1 << 62))
    entries = loop_waits(entries, loops, target)
    st = Stream(prog.name, [])
    for j, lp in enumerate(loops):
        st.loops.append({"var": lp["var"].name, "start": lp["start"], "end": lp["end"],
                         "trips": sym.to_python(lp["extent"])})
        st.exprs[("loop", j)] = lp["extent"]
    for index, (e, guard, _) in enumerate(entries):
        fmt = isa.op_format(e.op)
        values = {}
        for name, v in e.fields.items():
            if isinstance(v, sym.Expr) and not v.is_const:
                f = fmt.field(name)
                if f.kind not in ("uint", "addr"):
                    raise StreamError(f"{e.op}.{name}: a {f.kind} field cannot be dynamic ({v})")
                st.patches.append({"index": index, "field": name, "word": f.word, "lo": f.lo,
                                   "width": f.width, "kind": f.kind, "expr": sym.to_python(v)})
                st.exprs[("patch", len(st.patches) - 1)] = v
                values[name] = _placeholder(v)
            else:
                values[name] = v.value if isinstance(v, sym.Expr) else v
        try:
            st.insns.append(isa.make(e.op, wait=e.wait, **values))
            isa.encode(st.insns[-1])
        except isa.EncodingError as exc:
            raise StreamError(f"instruction {index} ({e.comment or e.op}): {exc}") from None
        if guard is not None:
            st.guards.append({"index": index, "expr": sym.to_python(guard)})
            st.exprs[("guard", len(st.guards) - 1)] = guard
        st.comments.append(e.comment)
        st.tags.append(e.tag or None)
    return st


__all__ = ["Stream", "StreamError", "build_stream", "flatten_loops", "loop_waits"]
