"""AUX stream emission: task program -> 64-byte entries + patch table.

Dynamic loops are unrolled to their bound (:func:`~dlavm.task.unroll_to_bound`);
an iteration past the run-time trip count is *guarded*: the host turns that
entry into a ``nop`` (keeping its wait mask) before starting the stream.
Every field whose value is a non-constant sym expression is a *patch*: the
static stream holds the field at its upper bound (so the listing is a valid
worst-case program) and the host rewrites the field's bits with the value of
the expression for the actual dims. See doc/backend.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlavm import sym
from dlavm.target import asm, isa

from dlavm.task.deps import assign_waits
from dlavm.task.ir import Program
from dlavm.task.passes import flatten, unroll_to_bound


class StreamError(ValueError):
    """A program cannot be encoded as a stream (names the instruction and field)."""


@dataclass
class Stream:
    """One AUX stream: static instructions, field patches and entry guards."""

    name: str
    insns: list
    patches: list = field(default_factory=list)  # {index, field, word, lo, width, kind, expr}
    guards: list = field(default_factory=list)   # {index, expr}
    comments: list = field(default_factory=list)
    tags: list = field(default_factory=list)     # per entry: the device op it implements ("dev.mvm#3") or None
    exprs: dict = field(default_factory=dict)    # ("patch", i) / ("guard", i) -> sym.Expr, for code generators

    def to_bytes(self) -> bytes:
        return isa.encode_stream(self.insns)

    def listing(self) -> str:
        """Assembly listing; dynamic fields and guards are annotated as comments."""
        notes: dict = {}
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


def _placeholder(e: sym.Expr) -> int:
    hi = sym.bounds(e)[1]
    if hi is None:
        raise StreamError(f"dynamic field {e} has no upper bound")
    return max(int(hi), 0)


def build_stream(prog: Program, target) -> Stream:
    """Encode ``prog`` for ``target``; guarantees ``len(insns)`` is fixed for every dims binding."""
    entries = [(e, g) for e, g in flatten(unroll_to_bound(prog))
               if not (g is not None and g.is_const and not g.value)]
    entries = assign_waits(entries, target)
    st = Stream(prog.name, [])
    for index, (e, guard) in enumerate(entries):
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


__all__ = ["Stream", "StreamError", "build_stream"]
