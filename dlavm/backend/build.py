"""Device module -> artifact contents (manifest + files), in memory.

:func:`build_module` lowers every function of a device-level module
(doc/compiler.md "Device graph"), encodes each device segment as an AUX
stream with its patch table, places the streams in device memory and
collects the packed weights. The result (:class:`Build`) is what the
artifact writer stores and what the runtime executes, so an in-memory
compiled model and a saved one run the very same bytes.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from dlavm import sym
from dlavm.artifact import (FORMAT, MANIFEST_VERSION, Buffer, ConstRef, Dim, Entry, EntryInput, EntryOutput, Guard,
                            Loop, HostConst, HostOp, HostStep, LiteralOperand, LlmInfo, Manifest, Patch, Pool,
                            Stream, StreamStep, TargetInfo, ToDeviceStep, ToHostStep, ValueInfo, ValueRef,
                            WeightBlob, read_manifest)
from dlavm.ir import paused_gc
from dlavm.target.isa import ISA_VERSION

from dlavm.task.ir import format_program
from dlavm.task.lower import LowerContext, lower_module
from dlavm.task.passes import simplify_loops
from .insn_records import insn_records
from .stream import build_stream


@dataclass
class Build:
    """``manifest`` (typed, validated; ``files`` lists ``files``), ``files`` {relpath: bytes}, task programs
    and timings."""

    manifest: Manifest
    files: dict
    programs: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)   # name -> Stream (with sym expressions)
    lowered: list = field(default_factory=list)   # LoweredFunction per entry


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@paused_gc()  # as the pass manager: lowering and encoding make many long-lived objects, few cycles
def build_module(mod, target, model: str = "model", weights: str = "int4", on_progress=None,
                 source=None) -> Build:
    """Lower and encode ``mod`` for ``target``; see the module docstring.

    ``on_progress(stage, done, total, detail)`` reports weight packing and stream encoding; ``source`` (a
    :class:`~dlavm.artifact.ModelSource` or None) is recorded as the manifest's ``source``."""
    t0 = time.perf_counter()
    ctx = LowerContext(target, mod.params, weights)
    ctx.on_progress = on_progress
    ctx.state_dims = tuple(mod.attrs.get("state_dims", ()))
    lowered, plans = lower_module(ctx, mod)
    any_plan = next(iter(plans.values()))
    ddr = target.figures.region("ddr")
    arena = max(p.pools["activations"].size for p in plans.values())
    stream_top = [-(-(ddr.base + arena) // 4096) * 4096]

    def place_stream(nbytes):
        addr = stream_top[0]
        stream_top[0] += -(-nbytes // 64) * 64
        if stream_top[0] > ddr.base + ddr.size:
            raise ValueError(f"AUX streams do not fit the DDR region after the activation arena "
                             f"({arena} bytes); lower the sequence bound")
        return addr
    t1 = time.perf_counter()
    files, streams, entries, programs, ops, dims, stream_objs = {}, {}, {}, {}, {}, {}, {}
    for lf in lowered:
        for d in lf.dims:
            dims[d.name] = Dim(int(d.lo), int(d.hi))
        steps = []
        for step in lf.steps:
            if step["kind"] != "stream":
                steps.append(_step(step))
                continue
            prog = simplify_loops(step["program"])
            programs[prog.name] = prog
            if on_progress:
                on_progress("stream", len(programs), None, prog.name)
            st = build_stream(prog, target)
            stream_objs[prog.name] = st
            data = st.to_bytes()
            base = f"streams/{_safe(prog.name)}"
            files[base + ".bin"] = data
            files[base + ".asm"] = st.listing().encode()
            streams[prog.name] = (base, place_stream(len(data)), st)
            steps.append(StreamStep(prog.name))
        values = lf.values
        state = tuple(d.name for d in ctx.state_dims if d in lf.dims)
        entries[lf.name] = Entry(
            state_dims=state,
            requires=_requires(mod, lf.name) if state else (),
            inputs=tuple(EntryInput(n, v, _texts(values[v]["shape"]), values[v]["dtype"]) for n, v in lf.inputs),
            outputs=tuple(EntryOutput(v, _texts(values[v]["shape"]), values[v]["dtype"]) for v in lf.outputs),
            values={k: ValueInfo(_texts(v["shape"]), v["dtype"], _int_or_none(v["addr"]), v["layout"])
                    for k, v in values.items()},
            steps=tuple(steps))
        ops[lf.name] = lf.ops
    t2 = time.perf_counter()
    wfiles = []
    for name, data in ctx.blobs.items():
        if data is None:
            continue
        rel = f"weights/{_safe(name)}.bin"
        files[rel] = data.tobytes()
        wfiles.append(WeightBlob(name, rel, int(any_plan.address(name)), int(data.nbytes)))
    hconsts = []
    for name, data in ctx.host_consts.items():
        if data is None:
            continue
        rel = f"weights/host.{_safe(name)}.bin"
        arr = np.ascontiguousarray(data)
        files[rel] = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        hconsts.append(HostConst(name, rel, arr.dtype.name, tuple(int(d) for d in arr.shape)))
    memory = _memory(plans, ctx, ddr.base, stream_top[0])
    stream_recs = {}
    for name, (base, addr, st) in streams.items():
        stream_recs[name] = Stream(
            file=base + ".bin", asm=base + ".asm", addr=addr, count=len(st.insns),
            patches=tuple(Patch(p["index"], p["field"], p["word"], p["lo"], p["width"], p["kind"], p["expr"])
                          for p in st.patches),
            guards=tuple(Guard(g["index"], g["expr"]) for g in st.guards),
            loops=tuple(Loop(lp["var"], lp["start"], lp["end"], lp["trips"]) for lp in st.loops),
            insns=tuple(insn_records(st, memory, target)))
    manifest = Manifest(
        format=FORMAT, version=MANIFEST_VERSION,
        isa_version=f"{ISA_VERSION >> 16}.{ISA_VERSION & 0xFFFF}",
        target=TargetInfo(target.name, target.fingerprint(), _json(target.to_dict())),
        model=model, weights_format=weights,
        weights_complete=all(d is not None for d in ctx.blobs.values()),
        dims=dims, memory=memory, weights=tuple(wfiles), host_consts=tuple(hconsts),
        entries=entries, streams=stream_recs, llm=_llm(mod.attrs.get("llm")),
        host_ops=tuple(HostOp(str(h["op"]), str(h.get("node", "")), str(h.get("reason", "")),
                              str(h.get("function", ""))) for h in mod.attrs.get("host_ops", [])),
        files=checksums(files), source=source)
    manifest = read_manifest(manifest.to_json(), source=f"the manifest built for '{model}'")
    timings = {"lower": t1 - t0, "streams": t2 - t1, "pack": time.perf_counter() - t2}
    return Build(manifest, files, programs, ops, timings, stream_objs, lowered)


def _requires(mod, fn_name: str) -> tuple:
    """Conditions an entry's dims must meet: the function's own ``requires`` attribute (a batched-decode
    entry's), else the LLM's (``seq <= ctx``)."""
    own = mod.functions[fn_name].attrs.get("requires")
    return tuple(own if own is not None else (mod.attrs.get("llm") or {}).get("requires", []))


def checksums(files: dict) -> dict:
    """``{relpath: sha256 hex}`` of ``files`` ({relpath: bytes}), sorted by path."""
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(files.items())}


def _memory(plans, ctx, ddr_base, stream_end) -> dict:
    """Pools with their buffers: weights and kv by name; activations per function; streams."""
    first = next(iter(plans.values()))
    out = {}
    for pool in ("weights", "kv"):
        pp = first.pools[pool]
        names = ctx.blob_sizes if pool == "weights" else ctx.scratch_sizes
        out[pool] = Pool(pp.region, int(pp.base), int(pp.size),
                         {n: Buffer(int(first.address(n)), int(size)) for n, size in names.items()})
    for fname, plan in plans.items():
        pp = plan.pools["activations"]
        bufs = {}
        for key, buf in plan.buffers.items():
            if plan.pool_of.get(key) == "activations" and key not in plan.aliases:
                bufs[buf.name] = Buffer(int(plan.address(key)), int(buf.size))
        out[f"activations.{fname}"] = Pool(pp.region, int(pp.base), int(pp.size), bufs)
    arena = max(p.pools["activations"].size for p in plans.values())
    start = -(-(ddr_base + arena) // 4096) * 4096
    out["streams"] = Pool("ddr", start, stream_end - start, {})
    return out


def _texts(shape) -> tuple:
    return tuple(str(d) for d in shape)


def _int_or_none(v):
    return None if v is None else int(v)


def _json(x):
    """``x`` as plain JSON data: sym expressions as text, tuples as lists, numpy scalars as numbers."""
    return json.loads(json.dumps(x, default=_json_default))


def _json_default(v):
    if isinstance(v, sym.Expr):
        return str(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _operand(ref: dict):
    if "literal" in ref:
        return LiteralOperand(_json(ref["literal"]))
    if "const" in ref:
        return ConstRef(ref["const"], _texts(ref["shape"]), ref["dtype"])
    return ValueRef(ref["value"])


def _step(step: dict):
    kind = step["kind"]
    if kind == "host":
        return HostStep(step["op"], tuple(_operand(a) for a in step["args"]), _json(step["attrs"]), step["dst"])
    if kind == "to_device":
        return ToDeviceStep(_operand(step["src"]), step["dst"])
    if kind == "to_host":
        return ToHostStep(step["src"], step["dst"], step["dtype"])
    raise ValueError(f"lowering produced a step of unknown kind {kind!r}")


def _llm(info):
    if not info:
        return None
    info = _json(info)
    return LlmInfo(info["seq_dim"], info["ctx_dim"], info["max_ctx"], info["vocab"], info["input"],
                   info["entries"], tuple(info["caches"]), tuple(info["requires"]))


def programs_text(build: Build) -> str:
    """Every task program, printed."""
    return "\n\n".join(format_program(p) for p in build.programs.values())


__all__ = ["Build", "build_module", "checksums", "programs_text"]
