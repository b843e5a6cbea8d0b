"""The instruction-level diff of two listings, grouped so a reviewer reads patterns, not words.

:func:`diff_listings` aligns each stream's instructions (``difflib`` over
``(mnemonic, device op, layer)`` keys, so an inserted instruction shifts
nothing after it), compares every field's text and returns a
:class:`DiffResult`. :func:`format_diff` prints it:

* header differences (target, ISA, dims, ``at``, address mode);
* the memory map: buffers moved (grouped by the same delta), resized,
  added or removed; with relocated addresses a moved buffer shows here
  only, not in every instruction that uses it. A buffer only in A and one
  only in B of the same pool and size are one *renamed* buffer (weights
  renamed by a format change: ``model.layers.0.x`` -> ``layers.0.x``) when
  their bytes are equal (both sides artifacts: the manifests' sha256), or,
  where the bytes are not known on both sides (a listing file, KV
  buffers), when the unpaired buffers
  of the pool line up one to one in address order with equal sizes
  (:func:`pair_renamed`); instructions then compare with A's labels
  renamed, so a rename shows once, not in every instruction that uses it;
* changed fields, grouped: the same ``(op, field, old -> new)`` across many
  instructions is one line with a count, the layers and the indices; what
  is left and differs by the same amount (``m: 32 -> 33``,
  ``x: act+0x0 -> act+0x10000``) is grouped by that delta. The first
  instruction of each group is shown with its neighbours;
* instructions only in one side, grouped by (side, op, device op).
"""
from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field

from .listing import CompareError, Insn, Listing

HEADER_KEYS = ("target", "isa", "dims", "at", "addresses")


@dataclass(frozen=True)
class Change:
    """Field ``field`` of instruction ``ia`` (A) / ``ib`` (B) of ``stream`` went ``old`` -> ``new``."""

    stream: str
    ia: int
    ib: int
    op: str
    field: str
    old: str
    new: str
    layer: int | None
    tag: str


@dataclass(frozen=True)
class Gap:
    """Instruction ``index`` of ``stream`` exists only on ``side`` ('A' or 'B')."""

    stream: str
    side: str
    index: int
    insn: Insn


@dataclass
class DiffResult:
    a: Listing
    b: Listing
    header: list = field(default_factory=list)    # (key, old, new)
    #: (kind, label, old, new): moved / resized / only in A / only in B; ("renamed", (label A, label B),
    #: (addr, size) in A, (addr, size) in B, how: "content" or "position")
    memory: list = field(default_factory=list)
    streams: list = field(default_factory=list)   # (side, name): a stream only on one side
    changes: list = field(default_factory=list)
    gaps: list = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.header or self.memory or self.streams or self.changes or self.gaps)


def _key(i: Insn, tagged: bool) -> tuple:
    return (i.op, i.kind, i.layer) if tagged else (i.op,)


def _static(text: str) -> str:
    """A field's text without its ``{expr}``: all a bare stream (no patch table) can be compared on."""
    return text.split("{", 1)[0]


def pair_renamed(a: Listing, b: Listing, only_a: list, only_b: list) -> list:
    """``[(label A, label B, how)]``: buffers of ``only_a`` (labels only in A) and ``only_b`` that are one
    buffer renamed (see the module docstring); ``how`` is ``"content"`` (equal bytes: both listings know
    them, :attr:`Listing.contents`) or ``"position"`` (the bytes are not known on both sides: the unpaired
    buffers of a pool line up one to one in address order with equal sizes). A buffer whose bytes both
    sides know and that differ is never paired."""
    ma = {lab: (addr, size) for lab, addr, size in a.memory}
    mb = {lab: (addr, size) for lab, addr, size in b.memory}
    pairs = []
    by_key: dict = defaultdict(list)   # weights with known bytes: paired by (pool, size, sha256)
    for lab in sorted(only_b, key=lambda x: mb[x][0]):
        if lab in b.contents:
            by_key[(lab.split(":", 1)[0], mb[lab][1], b.contents[lab])].append(lab)
    for lab in sorted(only_a, key=lambda x: ma[x][0]):   # equal bytes twice: paired in address order
        cands = by_key.get((lab.split(":", 1)[0], ma[lab][1], a.contents.get(lab)))
        if cands:
            pairs.append((lab, cands.pop(0), "content"))
    # buffers whose bytes are not known on both sides (a listing file, KV buffers): by position and size
    both = bool(a.contents) and bool(b.contents)
    left_a = [x for x in only_a if not (both and x in a.contents) and x not in {p[0] for p in pairs}]
    left_b = [y for y in only_b if not (both and y in b.contents) and y not in {p[1] for p in pairs}]
    for pool in sorted({x.split(":", 1)[0] for x in left_a} & {y.split(":", 1)[0] for y in left_b}):
        xs = sorted((x for x in left_a if x.split(":", 1)[0] == pool), key=lambda x: ma[x][0])
        ys = sorted((y for y in left_b if y.split(":", 1)[0] == pool), key=lambda y: mb[y][0])
        if len(xs) == len(ys) and all(ma[x][1] == mb[y][1] for x, y in zip(xs, ys)):
            pairs += [(x, y, "position") for x, y in zip(xs, ys)]
    return pairs


_LABEL_END = r"(?=$|[+{\]\s,)])"


def _renamer(renames: dict):
    """A function that rewrites every whole label of ``renames`` (A's name -> B's) in a field's text."""
    if not renames:
        return lambda text: text
    pattern = re.compile(r"(?<![\w.:])(" + "|".join(re.escape(k) for k in sorted(renames, key=len, reverse=True))
                         + ")" + _LABEL_END)
    return lambda text: pattern.sub(lambda m: renames[m.group(1)], text)


def _compare(stream: str, x: Insn, y: Insn, out: list, bare: bool = False, rename=None) -> None:
    if x.op != y.op:
        out.append(Change(stream, x.index, y.index, y.op, "op", x.op, y.op, y.layer, y.tag))
        return
    names = list(x.fields) + [n for n in y.fields if n not in x.fields]
    for n in names:
        old, new = x.fields.get(n, ""), y.fields.get(n, "")
        if rename is not None:
            old = rename(old)
        if bare:
            old, new = _static(old), _static(new)
        if old != new:
            out.append(Change(stream, x.index, y.index, x.op, n, old, new, y.layer, y.tag))
    if x.note != y.note and not bare:
        out.append(Change(stream, x.index, y.index, x.op, "guard", x.note or "-", y.note or "-", y.layer, y.tag))


def diff_listings(a: Listing, b: Listing) -> DiffResult:
    """Every difference between ``a`` (old) and ``b`` (new); see the module docstring."""
    res = DiffResult(a, b)
    bare = "-" in (a.header.get("model", "-"), b.header.get("model", "-"))  # a raw stream knows no header
    for k in HEADER_KEYS:
        if bare and "-" in (a.header.get(k, "-"), b.header.get(k, "-")):
            continue
        if a.header.get(k, "-") != b.header.get(k, "-"):
            res.header.append((k, a.header.get(k, "-"), b.header.get(k, "-")))
    ma = {lab: (addr, size) for lab, addr, size in a.memory}
    mb = {lab: (addr, size) for lab, addr, size in b.memory}
    renames: dict = {}
    if ma and mb:
        pairs = pair_renamed(a, b, [x for x in ma if x not in mb], [y for y in mb if y not in ma])
        renames = {x: y for x, y, _ in pairs}
        res.memory += [("renamed", (x, y), ma[x], mb[y], how) for x, y, how in pairs]
        for lab, (addr, size) in ma.items():
            if lab in renames:
                continue
            if lab not in mb:
                res.memory.append(("only in A", lab, (addr, size), None))
            else:
                addr2, size2 = mb[lab]
                if size2 != size:
                    res.memory.append(("resized", lab, (addr, size), (addr2, size2)))
                if addr2 != addr:
                    res.memory.append(("moved", lab, (addr, size), (addr2, size2)))
        res.memory += [("only in B", lab, None, v) for lab, v in mb.items()
                       if lab not in ma and lab not in renames.values()]
    rename = _renamer(renames) if renames else None
    pairs = [(n, a.streams[n], b.streams[n]) for n in a.streams if n in b.streams]
    if len(a.streams) == len(b.streams) == 1 and not pairs:   # e.g. a .bin stream against an artifact
        (_, xs), (nb, ys) = next(iter(a.streams.items())), next(iter(b.streams.items()))
        pairs = [(nb, xs, ys)]
    else:
        res.streams += [("A", n) for n in a.streams if n not in b.streams]
        res.streams += [("B", n) for n in b.streams if n not in a.streams]
    for name, xs, ys in pairs:
        tagged = any(i.tag != "-" for i in xs) and any(i.tag != "-" for i in ys)  # a .bin stream has no tags
        sm = difflib.SequenceMatcher(None, [_key(i, tagged) for i in xs], [_key(i, tagged) for i in ys],
                                     autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            n = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
            for k in range(n):
                _compare(name, xs[i1 + k], ys[j1 + k], res.changes, bare, rename)
            res.gaps += [Gap(name, "A", xs[i].index, xs[i]) for i in range(i1 + n, i2)]
            res.gaps += [Gap(name, "B", ys[j].index, ys[j]) for j in range(j1 + n, j2)]
    return res


# --- grouping -----------------------------------------------------------------------------------

_REL = re.compile(r"^(?P<base>[^{]*?)(?:\+(?P<off>0x[0-9a-f]+))?(?P<expr>\{.*\})?$")


def _numeric(text: str):
    """(base, number) of a field text: ``32`` -> ('', 32), ``act+0x40`` -> ('act', 64), else None."""
    m = _REL.match(text)
    if not m:
        return None
    base, off = m.group("base"), m.group("off")
    try:
        if off is not None:
            return base, int(off, 16)
        return "", int(base, 0)
    except ValueError:
        return (base, 0) if base and ":" in base else None


def group_changes(changes: list) -> list:
    """``[(description, [Change])]``: same (op, field, old, new), then same (op, field, delta)."""
    exact: dict = defaultdict(list)
    for c in changes:
        exact[(c.op, c.field, c.old, c.new)].append(c)
    groups, singles = [], []
    for (op, f, old, new), cs in exact.items():
        (groups if len(cs) > 1 else singles).append((f"{op}.{f}: {old} -> {new}", cs))
    by_delta: dict = defaultdict(list)
    rest = []
    for desc, cs in singles:
        c = cs[0]
        x, y = _numeric(c.old), _numeric(c.new)
        if x and y and x[0] == y[0] and "{" not in c.old + c.new:
            by_delta[(c.op, c.field, x[0], y[1] - x[1])].append(c)
        else:
            rest.append((desc, cs))
    for (op, f, base, delta), cs in by_delta.items():
        if len(cs) > 1:
            sign = "+" if delta >= 0 else "-"
            amount = f"{abs(delta):#x}" if base or cs[0].old.startswith("0x") else str(abs(delta))
            groups.append((f"{op}.{f}: {sign}{amount} (e.g. {cs[0].old} -> {cs[0].new})", cs))
        else:
            c = cs[0]
            rest.append((f"{op}.{f}: {c.old} -> {c.new}", cs))
    out = groups + rest
    out.sort(key=lambda g: (g[1][0].stream, g[1][0].ib, g[1][0].field))
    return out


def _layers(layers) -> str:
    nums = sorted({x for x in layers if x is not None})
    parts, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    txt = ",".join(parts)
    if any(x is None for x in layers):
        txt = (txt + ",-") if txt else "-"
    return txt


def _indices(items, limit: int = 8) -> str:
    shown = " ".join(f"#{i}" for i in items[:limit])
    return shown + (f" ... (+{len(items) - limit})" if len(items) > limit else "")


def _context(listing: Listing, stream: str, index: int, marker: str, context: int) -> list:
    rows = listing.streams.get(stream, [])
    pos = next((k for k, r in enumerate(rows) if r.index == index), None)
    if pos is None:
        return []
    out = []
    for k in range(max(0, pos - context), min(len(rows), pos + context + 1)):
        out.append(f"      {marker if k == pos else ' '} {rows[k].short()}")
    return out


def format_diff(res: DiffResult, context: int = 1, max_groups: int = 60) -> str:
    """Readable, grouped text of ``res`` (see the module docstring); ``context`` is an integer >= 0."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise CompareError(f"context={context!r}: must be an integer >= 0 (neighbouring instructions shown)")
    a, b = res.a, res.b
    lines = [f"--- A: {a.source or '(A)'}  ({a.count} instructions)",
             f"+++ B: {b.source or '(B)'}  ({b.count} instructions)"]
    if res.same:
        lines.append("identical")
        return "\n".join(lines) + "\n"
    for k, old, new in res.header:
        lines.append(f"header {k}: {old} -> {new}")
    if res.memory:
        lines.append("memory map:")
        moved = defaultdict(list)
        renamed = defaultdict(list)
        for kind, lab, old, new, *how in res.memory:
            if kind == "renamed":
                renamed[(how[0], new[0] - old[0])].append(lab)
            elif kind == "moved":
                moved[new[0] - old[0]].append(lab)
            elif kind == "resized":
                lines.append(f"  resized {lab}: {old[1]:#x} -> {new[1]:#x} bytes")
            else:
                v = old or new
                lines.append(f"  {kind}: {lab} at {v[0]:#x} ({v[1]:#x} bytes)")
        for delta, labs in moved.items():
            sign = "+" if delta >= 0 else "-"
            names = ", ".join(labs[:4]) + (f", ... (+{len(labs) - 4})" if len(labs) > 4 else "")
            lines.append(f"  moved {len(labs)} buffer(s) by {sign}{abs(delta):#x}: {names}")
        for (how, delta), pairs in renamed.items():
            by = "equal bytes" if how == "content" else "same position and size"
            where = f", moved by {'+' if delta >= 0 else '-'}{abs(delta):#x}" if delta else ""
            lines.append(f"  renamed {len(pairs)} buffer(s) ({by}{where}):")
            lines += [f"    {x} -> {y}" for x, y in pairs[:4]]
            if len(pairs) > 4:
                lines.append(f"    ... (+{len(pairs) - 4})")
    for side, name in res.streams:
        lines.append(f"stream {name}: only in {side}")
    groups = group_changes(res.changes)
    by_field: dict = {}
    for desc, cs in groups:
        by_field.setdefault((cs[0].op, cs[0].field), []).append((desc, cs))
    if groups:
        lines.append(f"{len(res.changes)} changed field(s), {len(by_field)} (op, field) group(s):")
    for n_shown, ((op, fld), pats) in enumerate(by_field.items()):
        if n_shown == max_groups:
            lines.append(f"  ... {len(by_field) - max_groups} more group(s)")
            break
        allc = [c for _, cs in pats for c in cs]
        lines.append(f"  {op}.{fld}: x{len(allc)}  layers {_layers([c.layer for c in allc])}  ops {_tags(allc)}"
                     + (f"  ({len(pats)} patterns)" if len(pats) > 1 else ""))
        for desc, cs in pats[:8]:
            streams = sorted({c.stream for c in cs})
            where = "; ".join(f"{s} {_indices([c.ib for c in cs if c.stream == s])}" for s in streams)
            lines.append(f"    {desc.split(': ', 1)[1]}  x{len(cs)}  layers {_layers([c.layer for c in cs])}"
                         f"  at {where}")
        if len(pats) > 8:
            lines.append(f"    ... {len(pats) - 8} more pattern(s)")
        first = pats[0][1][0]
        tagged_b = any(r.tag != "-" for r in b.streams.get(first.stream, []))
        lines += (_context(b, first.stream, first.ib, ">", context) if tagged_b or first.stream not in a.streams
                  else _context(a, first.stream, first.ia, ">", context))
    if res.gaps:
        gg: dict = defaultdict(list)
        for g in res.gaps:
            gg[(g.side, g.insn.op, g.insn.kind, g.stream)].append(g)
        lines.append(f"{len(res.gaps)} instruction(s) only on one side:")
        for (side, op, kind, stream), gs in gg.items():
            lines.append(f"  only in {side}: {op} ({kind}) x{len(gs)}  layers {_layers([g.insn.layer for g in gs])}"
                         f"  at {stream} {_indices([g.index for g in gs])}")
            lines += _context(a if side == "A" else b, stream, gs[0].index, side == "A" and "-" or "+", context)
    n = len(res.changes) + len(res.gaps) + len(res.memory) + len(res.header) + len(res.streams)
    lines.append(f"{n} difference(s)")
    return "\n".join(lines) + "\n"


def _tags(cs) -> str:
    tags = sorted({c.tag for c in cs}, key=lambda t: (t.split("#")[0], int(t.split("#")[1]) if "#" in t else 0))
    return ",".join(tags[:6]) + (f",... (+{len(tags) - 6})" if len(tags) > 6 else "")


__all__ = ["Change", "Gap", "DiffResult", "diff_listings", "format_diff", "group_changes", "pair_renamed"]
