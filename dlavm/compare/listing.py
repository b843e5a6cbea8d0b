"""Instruction listings: what the diff tool compares and what a golden file stores.

A :class:`Listing` is a decoded, readable view of every AUX stream of a
compiled model: per instruction its index, layer, op tag and every field as
*text*, with addresses relocated (:mod:`dlavm.compare.relocate`) unless raw
addresses are asked for, and dynamic fields written ``value{expr}`` (the
patch-table expression, spaces removed). Two listings are equal exactly
when their texts are; the text format (:func:`render`) is also the golden
file format (:func:`parse`), so a golden is a listing saved to disk.

Specialised at dim values (``at={"seq": 129}``), every patch is evaluated
and an entry whose guard is false is shown as what the device runs: a
``nop`` keeping its wait mask, with a note ``off <op> if {guard}``. A
loop's body (entries the host re-launches once per iteration, doc/backend.md)
is listed once, at its first iteration (its variable 0), its first entry
noted ``loop i<{trips}`` (``=n`` at dim values); the loop variable is listed as
``i`` whatever the compiler named it.
Without ``at`` the listing is symbolic: each dynamic field holds its
upper-bound placeholder (the static stream) and its expression.

Each instruction's op tag and layer are the manifest's instruction records
(``streams[name].insns``, written by the backend from the lowering), read
as they are.

Sources: an artifact directory, an in-memory compiled model
(:func:`from_manifest`, a typed :class:`dlavm.artifact.Manifest`), a raw
``.bin`` stream, an ``.asm`` listing, or a listing/golden file. See
doc/compare.md.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from dlavm.artifact import ExprError, Manifest, eval_expr
from dlavm.backend.insn_records import operand_unused
from dlavm.target import asm, isa

from .relocate import MemoryMap, relocate_expr

MAGIC = "# dlavm instruction listing v1"
#: How a listing names the variable of the loop an entry belongs to (one loop per entry, doc/backend.md).
LOOP_VAR = "i"


class CompareError(ValueError):
    """An input cannot be compared (not an artifact or stream, bad dims); names the file or the cause."""


@dataclass
class Insn:
    """One listed instruction. ``fields`` maps field name (and ``wait``) to its text."""

    index: int
    op: str
    tag: str = "-"
    layer: int | None = None
    fields: dict = field(default_factory=dict)
    note: str = ""

    @property
    def kind(self) -> str:
        """The device op the instruction belongs to (``dev.mvm``), or its mnemonic."""
        return self.tag.split("#")[0] if self.tag != "-" else self.op

    @property
    def layer_text(self) -> str:
        return f"L{self.layer}" if self.layer is not None else "-"

    def line(self) -> str:
        toks = [f"{self.index:04d}", self.layer_text, self.tag, self.op]
        toks += [f"{k}={v}" for k, v in self.fields.items()]
        return " ".join(toks) + (f" ; {self.note}" if self.note else "")

    def short(self) -> str:
        return f"{self.index:04d} {self.layer_text} {self.tag} {self.op}"


@dataclass
class Listing:
    """Header (ordered key -> text), memory map ``[(label, addr, size)]`` and streams {name: [Insn]}.

    ``contents`` maps the label of each weight buffer to the sha256 of its bytes (from the artifact's
    manifest; empty for a listing read from text), so the diff can pair weights renamed between two
    artifacts by content (:func:`dlavm.compare.diff.pair_renamed`).
    """

    header: dict = field(default_factory=dict)
    memory: list = field(default_factory=list)
    streams: dict = field(default_factory=dict)
    source: str = ""
    contents: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.streams.values())


# --- from an artifact ---------------------------------------------------------------------------

def _fmt_value(kind: str, v) -> str:
    if kind == "flag":
        return str(int(bool(v)))
    if kind == "f32":  # as stored: an assembled 1e-05 and a decoded 9.99999974e-06 are the same bits
        return repr(struct.unpack("<f", struct.pack("<f", float(v)))[0])
    return str(v)


def _dims_text(dims: Mapping) -> str:
    return ", ".join(f"{d} in [{b.lo}, {b.hi}]" for d, b in dims.items())


def at_text(at: Mapping | None) -> str:
    return ",".join(f"{k}={v}" for k, v in at.items()) if at else "-"


def parse_at(text: str | None) -> dict:
    """``"seq=1,kv=127"`` -> ``{"seq": 1, "kv": 127}`` (``None``, ``""`` or ``"-"``: empty)."""
    out: dict = {}
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item or item == "-":
            continue
        key, sep, val = item.partition("=")
        try:
            out[key.strip()] = int(val, 0)
        except ValueError:
            raise CompareError(f"bad dim binding {item!r}: expected NAME=INT, e.g. seq=1,kv=127") from None
        if not sep or not key.strip():
            raise CompareError(f"bad dim binding {item!r}: expected NAME=INT")
    return out


def _check_at(at: Mapping, dims: Mapping, source: str) -> None:
    for d, v in at.items():
        if d not in dims:
            raise CompareError(f"{source}: no dynamic dim {d!r} (dims: {_dims_text(dims) or 'none'})")
        b = dims[d]
        if not b.lo <= v <= b.hi:
            raise CompareError(f"{source}: {d}={v} is outside the bounds [{b.lo}, {b.hi}] it was compiled for")


def _eval(expr: str, env: Mapping, where: str) -> int:
    try:
        return eval_expr(expr, env)
    except ExprError as e:
        raise CompareError(f"{where}: {e}; give it with --at") from None


def from_manifest(manifest: Manifest, read_file: Callable[[str], bytes], at: Mapping | None = None,
                  raw: bool = False, source: str = "", header: Mapping | None = None) -> Listing:
    """The listing of every stream of an artifact (``read_file(relpath) -> bytes``)."""
    at = dict(at or {})
    dims = manifest.dims
    _check_at(at, dims, source or "artifact")
    mm = MemoryMap.from_manifest(manifest)
    starts = mm.starts()
    target = manifest.target.load()   # which operands an instruction uses: dlavm.target.insn_model
    hdr = dict(header or {})
    hdr.setdefault("model", manifest.model)
    hdr.update({"target": manifest.target.name, "isa": manifest.isa_version,
                "dims": _dims_text(dims) or "-", "at": at_text(at), "addresses": "raw" if raw else "relocated"})
    out = Listing(hdr, [] if raw else mm.describe(), {}, source)
    if not raw:   # the manifest lists every file's sha256: a weight's content hash costs no read
        out.contents = {mm.label(w.addr): manifest.files[w.file] for w in manifest.weights
                        if w.file in manifest.files}
    for name, s in manifest.streams.items():
        try:
            insns = isa.decode_stream(read_file(s.file))
        except isa.EncodingError as e:
            raise CompareError(f"{source}: stream {s.file}: {e}") from None
        if len(insns) != s.count:
            raise CompareError(f"{source}: stream {s.file} holds {len(insns)} instructions, the manifest "
                               f"says {s.count}")
        patches: dict = {}
        for p in s.patches:
            patches.setdefault(p.index, {})[p.field] = p.expr
        guards = {g.index: g.expr for g in s.guards}
        loop_at = {}   # entry -> (its loop, whether it is the loop's first entry)
        for lp in s.loops:
            loop_at.update((k, (lp, k == lp.start)) for k in range(lp.start, lp.end))
        fn = name.rsplit(".", 1)[0]
        rows = []
        for i, insn in enumerate(insns):
            where = f"{source or 'artifact'}: stream {name} entry {i}"
            tag, layer = s.insns[i].tag or "-", s.insns[i].layer
            guard = guards.get(i)
            wait = ",".join(u for u in isa.WAIT_UNITS if u in insn.wait)
            lp, first = loop_at.get(i, (None, False))
            env = {**at, lp.var: 0} if at and lp is not None else at   # a loop body shown at its first trip
            loop_note = (f"loop {LOOP_VAR}<{{{_squash(lp.trips)}}}" + (f"={_eval(lp.trips, at, where)}" if at else "")
                         if first else "")
            # the variable's name is the compiler's (node-numbered): listed as LOOP_VAR, so that the same
            # change to every tiled op reads as one pattern in a diff
            canon = (lambda e, v=lp.var: re.sub(rf"\b{re.escape(v)}\b", LOOP_VAR, e)) if lp else (lambda e: e)
            if at and guard is not None and not _eval(guard, env, where):
                fields = {"wait": wait} if wait else {}
                rows.append(Insn(i, "nop", tag, layer, fields,
                                 " ".join(x for x in (loop_note, f"off {insn.op} if {{{_squash(canon(guard))}}}")
                                          if x)))
                continue
            fields = {}
            for f in insn.format.fields:
                v = insn.fields[f.name]
                expr = patches.get(i, {}).get(f.name)
                if expr is not None and at:
                    v = _eval(expr, env, where)
                if f.kind == "addr":
                    unused = v == 0 and operand_unused(insn.op, f.name, insn.fields, target)
                    label = "-" if unused else mm.label(int(v), fn)
                    text = f"{int(v):#x}" if raw else label
                else:
                    text = _fmt_value(f.kind, v)
                if expr is not None:
                    e = canon(expr if raw or f.kind != "addr" else relocate_expr(expr, starts, mm, fn))
                    text += "{" + _squash(e) + "}"
                fields[f.name] = text
            if wait:
                fields["wait"] = wait
            note = " ".join(x for x in (loop_note, f"if {{{_squash(canon(guard))}}}" if guard is not None else "")
                            if x)
            rows.append(Insn(i, insn.op, tag, layer, fields, note))
        out.streams[name] = rows
    return out


def _squash(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def from_instructions(insns: list, source: str, name: str = "stream") -> Listing:
    """A raw listing of decoded instructions (a ``.bin`` or ``.asm`` stream: no tags, raw addresses).

    The stream is named ``stream`` whatever the file, so two stream files compare with each other."""
    rows = []
    for i, insn in enumerate(insns):
        fields = {}
        for f in insn.format.fields:
            v = insn.fields[f.name]
            fields[f.name] = f"{int(v):#x}" if f.kind == "addr" else _fmt_value(f.kind, v)
        wait = ",".join(u for u in isa.WAIT_UNITS if u in insn.wait)
        if wait:
            fields["wait"] = wait
        rows.append(Insn(i, insn.op, "-", None, fields))
    hdr = {"model": "-", "target": "-", "isa": "-", "dims": "-", "at": "-", "addresses": "raw"}
    return Listing(hdr, [], {name: rows}, source)


# --- text form (golden files) -------------------------------------------------------------------

def render(listing: Listing) -> str:
    """The listing as text (the golden file format; :func:`parse` reads it back)."""
    lines = [MAGIC]
    lines += [f"# {k}: {v}" for k, v in listing.header.items()]
    lines += [f"# buffer {label} {addr:#x} {size:#x}" for label, addr, size in listing.memory]
    for name, rows in listing.streams.items():
        lines.append(f"stream {name} {len(rows)}")
        lines += [r.line() for r in rows]
    return "\n".join(lines) + "\n"


def parse(text: str, source: str = "") -> Listing:
    """A listing from its text (:func:`render`); raises :class:`CompareError` naming the line."""
    out = Listing(source=source)
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise CompareError(f"{source}: not an instruction listing (first line must be {MAGIC!r})")
    cur = None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            if line.startswith("# buffer "):
                _, _, label, addr, size = line.split()
                out.memory.append((label, int(addr, 0), int(size, 0)))
            elif line.startswith("# "):
                key, sep, val = line[2:].partition(": ")
                if sep:
                    out.header[key.strip()] = val.strip()
            elif line.startswith("stream "):
                cur = out.streams.setdefault(line.split()[1], [])
            else:
                if cur is None:
                    raise ValueError("instruction before any 'stream' line")
                body, _, note = line.partition(" ; ")
                idx, layer, tag, op, *toks = body.split()
                fields = {}
                for t in toks:
                    k, sep, v = t.partition("=")
                    if not sep:
                        raise ValueError(f"expected field=value, got {t!r}")
                    fields[k] = v
                cur.append(Insn(int(idx), op, tag, None if layer == "-" else int(layer.lstrip("L")), fields,
                                note.strip()))
        except ValueError as e:
            raise CompareError(f"{source}:{n}: malformed listing line: {e}") from None
    return out


# --- opening a path -----------------------------------------------------------------------------

class ArtifactSource:
    """An artifact (directory or in-memory model): rendered on demand with the caller's options."""

    def __init__(self, manifest: Manifest, read_file, source: str):
        self.manifest, self.read_file, self.source = manifest, read_file, source

    def listing(self, at: Mapping | None = None, raw: bool = False) -> Listing:
        return from_manifest(self.manifest, self.read_file, at, raw, self.source)


def open_source(path) -> "ArtifactSource | Listing":
    """An artifact directory -> :class:`ArtifactSource`; a ``.bin``/``.asm``/listing file -> :class:`Listing`.

    Raises :class:`CompareError` naming the path when it is none of these.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "manifest.json").exists():
            raise CompareError(f"{p}: not an artifact (no manifest.json in the directory)")
        from dlavm.runtime.loader import load_verified
        try:
            art = load_verified(p)
        except Exception as e:  # noqa: BLE001 - the loader's message names the file or field
            raise CompareError(f"{p}: not a valid artifact: {e}") from None
        return ArtifactSource(art.manifest, art.read, str(p))
    if not p.exists():
        raise CompareError(f"{p}: no such file or directory")
    data = p.read_bytes()
    if p.suffix == ".bin":
        try:
            return from_instructions(isa.decode_stream(data), str(p))
        except isa.EncodingError as e:
            raise CompareError(f"{p}: not an instruction stream: {e}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise CompareError(f"{p}: not an artifact, stream (.bin) or listing: binary data") from None
    if text.startswith(MAGIC):
        return parse(text, str(p))
    try:
        insns = asm.parse(text)
    except isa.EncodingError as e:
        raise CompareError(f"{p}: not an artifact, stream (.bin), listing or assembly: {e}") from None
    if not insns:
        raise CompareError(f"{p}: no instructions in the file")
    return from_instructions(insns, str(p))


def open_pair(a, b, at: str | None = None, raw: bool = False) -> tuple:
    """The two listings ``dlavm diff A B`` compares, rendered alike.

    An artifact is specialised at ``at`` (``"seq=1,kv=127"``), else at the
    ``at`` of a listing file on the other side (a golden), else symbolic; it
    uses raw addresses with ``raw`` or when the other side is a raw stream.
    Raises :class:`CompareError` when the two cannot be rendered alike
    (listings at different sizes, relocated listing with ``raw``).
    """
    sa, sb = open_source(a), open_source(b)
    fixed = [s for s in (sa, sb) if isinstance(s, Listing)]
    want = parse_at(at) if at is not None else None
    if want is None:
        ats = {s.header.get("at", "-") for s in fixed} - {"-"}
        if len(ats) > 1:
            raise CompareError(f"the listings are specialised at different dims ({' vs '.join(sorted(ats))})")
        want = parse_at(ats.pop()) if ats else {}
    for s in fixed:
        if raw and s.header.get("addresses") == "relocated":
            raise CompareError(f"{s.source}: holds relocated addresses; --raw-addresses needs raw ones")
        if s.header.get("at", "-") != "-" and parse_at(s.header["at"]) != want:
            raise CompareError(f"{s.source}: is specialised at {s.header['at']}, not at {at_text(want)}")
    raw = raw or any(s.header.get("addresses") == "raw" for s in fixed)
    return tuple(s if isinstance(s, Listing) else s.listing(want, raw) for s in (sa, sb))


__all__ = ["Insn", "Listing", "CompareError", "ArtifactSource", "from_manifest", "from_instructions", "render",
           "parse", "open_source", "open_pair", "parse_at", "at_text", "MAGIC"]
