"""The one manifest reader: JSON text or data -> a validated :class:`~dlavm.artifact.schema.Manifest`.

:func:`read_manifest` checks, in this order, and raises
:class:`~dlavm.artifact.errors.ManifestError` (one line: source, field path,
rule) on the first violation:

1. the text is JSON (no duplicate key, no ``NaN``/``Infinity``, not nested
   deeper than the JSON reader allows) holding an object;
2. ``format`` is ``"dlavm-artifact"`` and ``version`` is
   :data:`~dlavm.artifact.schema.MANIFEST_VERSION` (before anything else, so
   an artifact of another version is named as such);
3. every field has its type, range and enum (:mod:`dlavm.artifact.schema`;
   no unknown field, none missing), every size expression parses under the
   evaluator's limits;
4. cross-references (:func:`check_references`): dims ``lo <= hi``; every
   file named is listed in ``files``; every name an expression uses is a
   dim; entries name existing values, streams and host constants; patch and
   guard indexes lie inside their stream, a patch's bits inside its word,
   a stream has one instruction record per entry naming buffers that exist;
   weight blobs are buffers of ``memory.weights`` at the same address; the
   LLM section names existing dims and entries.

No other exception escapes for any input.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import ManifestError
from .expr import ExprError, check_expr
from .schema import FORMAT, MANIFEST_VERSION, Manifest
from .spec import Reader, Record, join, quote


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f'duplicate key "{k}"')
        out[k] = v
    return out


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(text, source: str) -> Any:
    """JSON ``text`` (str or bytes) with the reader's rules (step 1); :class:`ManifestError` otherwise."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise ManifestError(f"{source}: is not valid JSON: nesting deeper than the JSON reader allows") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, bad UTF-8, an integer too long to read
        raise ManifestError(f"{source}: is not valid JSON: {exc}") from None


def read_manifest(text_or_data, source: str = "manifest.json") -> Manifest:
    """The typed, validated manifest of ``text_or_data`` (JSON text, bytes, or decoded JSON data)."""
    data = parse_json(text_or_data, source) if isinstance(text_or_data, (str, bytes, bytearray)) else text_or_data
    r = Reader(source)
    if not isinstance(data, dict):
        r.fail("", "must hold a JSON object")
    if "format" not in data:
        r.fail("format", "is required")
    if data["format"] != FORMAT:
        r.fail("format", f"must be {quote(FORMAT)}, got {quote(data['format'])}"
               if isinstance(data["format"], (str, int, float, bool)) else f"must be {quote(FORMAT)}")
    if "version" not in data:
        r.fail("version", "is required")
    v = data["version"]
    if not isinstance(v, int) or isinstance(v, bool):
        r.want("version", "an integer", v)
    if v != MANIFEST_VERSION:
        r.fail("version", f"is {v}, this reader reads version {MANIFEST_VERSION}")
    try:
        m = Record(Manifest).decode(data, "", r)
    except RecursionError:  # a decoded-data input nested past the interpreter's limit
        r.fail("", "nesting deeper than the reader allows")
    check_references(m, r)
    return m


def check_references(m: Manifest, r: Reader) -> None:
    """Step 4 of the module docstring on a decoded manifest."""
    for d, b in m.dims.items():
        if b.lo > b.hi:
            r.fail(f"dims.{d}", f"lower bound {b.lo} exceeds upper bound {b.hi}")

    def listed(path, rel):
        if rel not in m.files:
            r.fail(path, f"{quote(rel)} is not listed in files")

    def over_dims(path, expr):
        try:
            names = check_expr(expr)
        except ExprError as e:
            r.fail(path, str(e))
        for name in sorted(names):
            if name not in m.dims:
                r.fail(path, f"uses {quote(name)}, which is not a dim")

    named = {n for pool in ("weights", "kv") if pool in m.memory for n in m.memory[pool].buffers}
    for name, s in m.streams.items():
        p = f"streams.{name}"
        listed(f"{p}.file", s.file)
        listed(f"{p}.asm", s.asm)
        if len(s.insns) != s.count:
            r.fail(f"{p}.insns", f"must have one record per entry ({s.count}), got {len(s.insns)}")
        for i, pt in enumerate(s.patches):
            q = f"{p}.patches[{i}]"
            if pt.index >= s.count:
                r.fail(f"{q}.index", f"must be < the stream's count ({s.count}), got {pt.index}")
            if pt.lo + pt.width > 32:
                r.fail(f"{q}.width", f"bits [{pt.lo}, {pt.lo + pt.width}) do not fit a 32-bit word")
            over_dims(f"{q}.expr", pt.expr)
        for i, g in enumerate(s.guards):
            q = f"{p}.guards[{i}]"
            if g.index >= s.count:
                r.fail(f"{q}.index", f"must be < the stream's count ({s.count}), got {g.index}")
            over_dims(f"{q}.expr", g.expr)
        for i, rec in enumerate(s.insns):
            for j, w in enumerate(rec.weights):
                if w not in named:
                    r.fail(f"{p}.insns[{i}].weights[{j}]", f"{quote(w)} is not a buffer of memory.weights or "
                                                           f"memory.kv")
    wbufs = m.memory["weights"].buffers if "weights" in m.memory else {}
    for i, w in enumerate(m.weights):
        p = f"weights[{i}]"
        listed(f"{p}.file", w.file)
        if w.name not in wbufs:
            r.fail(f"{p}.name", f"{quote(w.name)} is not a buffer of memory.weights")
        if wbufs[w.name].addr != w.addr:
            r.fail(f"{p}.addr", f"must be the buffer's address ({wbufs[w.name].addr}), got {w.addr}")
    consts = set()
    for i, c in enumerate(m.host_consts):
        listed(f"host_consts[{i}].file", c.file)
        consts.add(c.name)
    for ename, e in m.entries.items():
        p = f"entries.{ename}"
        for i, d in enumerate(e.state_dims):
            if d not in m.dims:
                r.fail(f"{p}.state_dims[{i}]", f"{quote(d)} is not a dim")
        for i, c in enumerate(e.requires):
            over_dims(f"{p}.requires[{i}]", c)
        for vid, v in e.values.items():
            for i, d in enumerate(v.shape):
                over_dims(f"{p}.values.{vid}.shape[{i}]", d)

        def value(path, vid):
            if vid not in e.values:
                r.fail(path, f"{quote(vid)} is not a value of the entry")

        def operand(path, op):
            if hasattr(op, "value"):
                value(f"{path}.value", op.value)
            elif hasattr(op, "const"):
                if m.weights_complete and op.const not in consts:
                    r.fail(f"{path}.const", f"{quote(op.const)} is not a host constant")
                for i, d in enumerate(op.shape):
                    over_dims(f"{path}.shape[{i}]", d)

        for kind, items in (("inputs", e.inputs), ("outputs", e.outputs)):
            for i, io in enumerate(items):
                value(f"{p}.{kind}[{i}].value", io.value)
                for j, d in enumerate(io.shape):
                    over_dims(f"{p}.{kind}[{i}].shape[{j}]", d)
        for i, st in enumerate(e.steps):
            q = f"{p}.steps[{i}]"
            if st.TAG == "stream":
                if st.stream not in m.streams:
                    r.fail(f"{q}.stream", f"{quote(st.stream)} names no stream")
            elif st.TAG == "host":
                for j, a in enumerate(st.args):
                    operand(f"{q}.args[{j}]", a)
                value(f"{q}.dst", st.dst)
                stack = [(join(f"{q}.attrs", k), a) for k, a in st.attrs.items()]
                while stack:  # a size attribute is {"sym": expr}, also inside lists (the runtime evaluates both)
                    at, a = stack.pop()
                    if isinstance(a, dict) and set(a) == {"sym"}:
                        if not isinstance(a["sym"], str):
                            r.want(f"{at}.sym", "a string", a["sym"])
                        over_dims(f"{at}.sym", a["sym"])
                    elif isinstance(a, list):
                        stack.extend((join(at, i), x) for i, x in enumerate(a))
            elif st.TAG == "to_device":
                operand(f"{q}.src", st.src)
                value(f"{q}.dst", st.dst)
            else:
                value(f"{q}.src", st.src)
                value(f"{q}.dst", st.dst)
    if m.llm is not None:
        for f in ("seq_dim", "ctx_dim"):
            if getattr(m.llm, f) not in m.dims:
                r.fail(f"llm.{f}", f"{quote(getattr(m.llm, f))} is not a dim")
        for role, ename in m.llm.entries.items():
            if ename not in m.entries:
                r.fail(join("llm.entries", role), f"{quote(ename)} is not an entry")
        for i, c in enumerate(m.llm.requires):
            over_dims(f"llm.requires[{i}]", c)


__all__ = ["read_manifest", "parse_json", "check_references"]
