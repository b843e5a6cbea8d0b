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
4. cross-references (:func:`check_references`): dims ``lo <= hi``; ``source.kind``
   is the form of ``source.spec`` (:func:`~dlavm.artifact.schema.model_kind`); every
   file named is listed in ``files``; every name an expression uses is a
   dim; entries name existing values, streams and host constants; patch and
   guard indexes lie inside their stream, a patch's bits inside its word,
   a stream has one instruction record per entry naming buffers that exist;
   weight blobs are buffers of ``memory.weights`` at the same address; an
   entry reads no host value before a step writes it and returns only
   written host values, ``to_device`` writes and ``to_host`` reads device
   values (with an ``addr``), host steps read and write host values; the
   LLM section names existing dims and entries; a quantised host constant
   is a float32 2-D array; every file is named by one field only;
5. the memory map (:func:`check_memory_map`): the target description is a
   valid target matching its fingerprint; every pool lies inside its target
   memory region and every buffer inside its pool; the ``weights``, ``kv``
   and ``streams`` pools overlap no other pool (the ``activations.*`` pools
   of different functions share one arena); buffers of ``weights``/``kv``
   do not overlap; a weight blob fits its buffer, each buffer has at most
   one blob and, when ``weights_complete``, every non-empty buffer of
   ``memory.weights`` has one; every stream lies inside
   ``memory.streams`` and overlaps no other stream; a device value's address
   lies in an ``activations.*`` or ``kv`` pool.

No other exception escapes for any input.
"""
from __future__ import annotations

import json
from typing import Any

from dlavm.target.isa import INSN_BYTES

from .errors import ManifestError
from .expr import ExprError, check_expr
from .memory import NAMED_POOLS
from .schema import FORMAT, MANIFEST_VERSION, Manifest, model_kind
from .spec import Reader, Record, escape, join, quote


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


def check_format_version(data, source: str) -> None:
    """Step 2: ``data`` is an object whose ``format`` and ``version`` are this reader's."""
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


def read_manifest(text_or_data, source: str = "manifest.json") -> Manifest:
    """The typed, validated manifest of ``text_or_data`` (JSON text, bytes, or decoded JSON data)."""
    data = parse_json(text_or_data, source) if isinstance(text_or_data, (str, bytes, bytearray)) else text_or_data
    check_format_version(data, source)
    r = Reader(source)
    try:
        m = Record(Manifest).decode(data, "", r)
    except RecursionError:  # a decoded-data input nested past the interpreter's limit
        r.fail("", "nesting deeper than the reader allows")
    check_references(m, r)
    check_memory_map(m, r)
    return m


def check_references(m: Manifest, r: Reader) -> None:
    """Step 4 of the module docstring on a decoded manifest."""
    for d, b in m.dims.items():
        if b.lo > b.hi:
            r.fail(f"dims.{d}", f"lower bound {b.lo} exceeds upper bound {b.hi}")
    if m.source is not None and model_kind(m.source.spec) != m.source.kind:
        r.fail("source.kind", f"is {quote(m.source.kind)}, the spec {quote(m.source.spec)} is of kind "
                              f"{quote(model_kind(m.source.spec))}")

    def over_dims(path, expr, var=None):
        try:
            names = check_expr(expr)
        except ExprError as e:
            r.fail(path, str(e))
        for name in sorted(names):
            if name not in m.dims and name != var:
                r.fail(path, f"uses {quote(name)}, which is not a dim")

    named = {n for pool in ("weights", "kv") if pool in m.memory for n in m.memory[pool].buffers}
    owner: dict = {}

    def listed(path, rel):  # listed in files, and named by one field only
        if rel not in m.files:
            r.fail(path, f"{quote(rel)} is not listed in files")
        if rel in owner:
            r.fail(path, f"{quote(rel)} is already named by {owner[rel]}")
        owner[rel] = path
    for name, s in m.streams.items():
        p = f"streams.{name}"
        listed(f"{p}.file", s.file)
        listed(f"{p}.asm", s.asm)
        if len(s.insns) != s.count:
            r.fail(f"{p}.insns", f"must have one record per entry ({s.count}), got {len(s.insns)}")
        loop_of = {}   # entry -> its loop's variable
        prev_end = 0
        for i, lp in enumerate(s.loops):
            q = f"{p}.loops[{i}]"
            if lp.start < prev_end:
                r.fail(f"{q}.start", f"must be >= the previous loop's end ({prev_end}), got {lp.start}")
            if not lp.start < lp.end <= s.count:
                r.fail(f"{q}.end", f"must be > start ({lp.start}) and <= the stream's count ({s.count}), "
                                   f"got {lp.end}")
            if lp.var in m.dims:
                r.fail(f"{q}.var", f"{quote(lp.var)} is a dim; a loop variable must not be")
            over_dims(f"{q}.trips", lp.trips)
            loop_of.update((k, lp.var) for k in range(lp.start, lp.end))
            prev_end = lp.end
        for i, pt in enumerate(s.patches):
            q = f"{p}.patches[{i}]"
            if pt.index >= s.count:
                r.fail(f"{q}.index", f"must be < the stream's count ({s.count}), got {pt.index}")
            if pt.lo + pt.width > 32:
                r.fail(f"{q}.width", f"bits [{pt.lo}, {pt.lo + pt.width}) do not fit a 32-bit word")
            over_dims(f"{q}.expr", pt.expr, loop_of.get(pt.index))
        for i, g in enumerate(s.guards):
            q = f"{p}.guards[{i}]"
            if g.index >= s.count:
                r.fail(f"{q}.index", f"must be < the stream's count ({s.count}), got {g.index}")
            over_dims(f"{q}.expr", g.expr, loop_of.get(g.index))
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
        if c.quant is not None:
            listed(f"host_consts[{i}].quant.scales", c.quant.scales)
            if c.dtype != "float32" or len(c.shape) != 2:
                r.fail(f"host_consts[{i}].quant", f"a quantised constant must be a float32 2-D array, got "
                                                  f"{c.dtype} of shape {list(c.shape)}")
        consts.add(c.name)
    if m.tokenizer is not None:
        listed("tokenizer.file", m.tokenizer.file)
        if m.tokenizer.chat_template is not None:
            listed("tokenizer.chat_template", m.tokenizer.chat_template)
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
        check_data_flow(p, e, r)
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


def check_data_flow(p: str, e, r: Reader) -> None:
    """Entry ``e`` (at path ``p``) reads no host value before a step writes it, returns only written host
    values, moves data between host and device values only (a device value has an ``addr``)."""
    written = {io.value for io in e.inputs}

    def read(path, vid):
        if vid in e.values and vid not in written:
            r.fail(path, f"{quote(vid)} is read before any step writes it")

    def device(path, vid, want):
        v = e.values.get(vid)
        if v is not None and (v.addr is not None) != want:
            r.fail(path, f"{quote(vid)} is {'a host value (no addr)' if want else 'a device value (has an addr)'}")

    for i, st in enumerate(e.steps):
        q = f"{p}.steps[{i}]"
        if st.TAG == "host":
            for j, a in enumerate(st.args):
                if hasattr(a, "value"):
                    device(f"{q}.args[{j}].value", a.value, False)
                    read(f"{q}.args[{j}].value", a.value)
            device(f"{q}.dst", st.dst, False)
            written.add(st.dst)
        elif st.TAG == "to_device":
            if hasattr(st.src, "value"):
                device(f"{q}.src.value", st.src.value, False)
                read(f"{q}.src.value", st.src.value)
            device(f"{q}.dst", st.dst, True)
        elif st.TAG == "to_host":
            device(f"{q}.src", st.src, True)
            device(f"{q}.dst", st.dst, False)
            written.add(st.dst)
    for i, o in enumerate(e.outputs):
        device(f"{p}.outputs[{i}].value", o.value, False)
        if o.value in e.values and o.value not in written:
            r.fail(f"{p}.outputs[{i}].value", f"{quote(o.value)} is not written by any step")


def _span(lo: int, n: int) -> str:
    return f"[{lo}, {lo + n})"


def check_memory_map(m: Manifest, r: Reader) -> None:
    """Step 5 of the module docstring: every placement inside its pool and the device, none overlapping."""
    target = m.target.load(r)
    regions = {g.name: g for g in target.figures.regions}
    for name, pool in m.memory.items():
        p = join("memory", name)
        g = regions.get(pool.region)
        if g is None:
            r.fail(f"{p}.region", f"{quote(pool.region)} is not a memory region of the target "
                                  f"({', '.join(regions)})")
        if pool.base < g.base or pool.base + pool.used > g.base + g.size:
            r.fail(p, f"{_span(pool.base, pool.used)} is outside the target's {g.name} region "
                      f"{_span(g.base, g.size)}")
        for bname, b in pool.buffers.items():
            if b.size and (b.addr < pool.base or b.addr + b.size > pool.base + pool.used):
                r.fail(join(f"{p}.buffers", bname), f"{_span(b.addr, b.size)} is outside the pool "
                                                    f"{_span(pool.base, pool.used)}")
    # activation pools of different functions share the arena; every other pair is disjoint
    spans = sorted((pool.base, pool.used, name) for name, pool in m.memory.items() if pool.used)
    for i, (a0, n0, p0) in enumerate(spans):
        for a1, n1, p1 in spans[i + 1:]:
            if a1 >= a0 + n0:
                break
            if not (p0.startswith("activations.") and p1.startswith("activations.")):
                r.fail(join("memory", p1), f"{_span(a1, n1)} overlaps memory.{escape(p0)} {_span(a0, n0)}")
    for pool in NAMED_POOLS:
        if pool not in m.memory:
            continue
        bufs = sorted((b.addr, b.size, n) for n, b in m.memory[pool].buffers.items() if b.size)
        for (a0, n0, b0), (a1, n1, b1) in zip(bufs, bufs[1:]):
            if a1 < a0 + n0:
                r.fail(join(f"memory.{pool}.buffers", b1), f"{_span(a1, n1)} overlaps buffer {quote(b0)} "
                                                           f"{_span(a0, n0)}")
    wbufs = m.memory["weights"].buffers if "weights" in m.memory else {}
    blob_of: dict = {}
    for i, w in enumerate(m.weights):
        if w.name in blob_of:
            r.fail(f"weights[{i}].name", f"{quote(w.name)} already has a blob (weights[{blob_of[w.name]}])")
        blob_of[w.name] = i
        if w.nbytes > wbufs[w.name].size:
            r.fail(f"weights[{i}].nbytes", f"must be <= its buffer's size ({wbufs[w.name].size}), got {w.nbytes}")
    if m.weights_complete:   # else a device instruction would read a buffer nothing loaded
        for name, b in wbufs.items():
            if b.size and name not in blob_of:
                r.fail(join("memory.weights.buffers", name), "has no blob in weights (weights_complete is true)")
    if m.streams and "streams" not in m.memory:
        r.fail("memory", 'has no "streams" pool for the streams')
    placed = []
    for name, s in m.streams.items():
        pool, n = m.memory["streams"], s.count * INSN_BYTES
        if s.addr < pool.base or s.addr + n > pool.base + pool.used:
            r.fail(join("streams", name) + ".addr", f"{_span(s.addr, n)} is outside memory.streams "
                                                    f"{_span(pool.base, pool.used)}")
        placed.append((s.addr, n, name))
    placed.sort()
    for (a0, n0, s0), (a1, n1, s1) in zip(placed, placed[1:]):
        if n0 and n1 and a1 < a0 + n0:
            r.fail(join("streams", s1) + ".addr", f"{_span(a1, n1)} overlaps stream {quote(s0)} {_span(a0, n0)}")
    device_pools = [(pool.base, pool.used) for name, pool in m.memory.items()
                    if name == "kv" or name.startswith("activations.")]
    for ename, e in m.entries.items():
        for vid, v in e.values.items():
            if v.addr is not None and not any(b <= v.addr < b + n for b, n in device_pools):
                r.fail(f"{join('entries', ename)}.values.{escape(vid)}.addr",
                       f"{v.addr} is in no activations or kv pool")


__all__ = ["read_manifest", "parse_json", "check_format_version", "check_references", "check_data_flow",
           "check_memory_map"]
