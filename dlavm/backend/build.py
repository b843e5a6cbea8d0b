"""Device module -> artifact contents (manifest + files), in memory.

:func:`build_module` lowers every function of a device-level module
(doc/compiler.md "Device graph"), encodes each device segment as an AUX
stream with its patch table, places the streams in device memory and
collects the packed weights. The result (:class:`Build`) is what the
artifact writer stores and what the runtime executes, so an in-memory
compiled model and a saved one run the very same bytes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from dlavm import sym
from dlavm.target.isa import ISA_VERSION

from dlavm.task.ir import format_program
from dlavm.task.lower import LowerContext, lower_module
from dlavm.task.passes import simplify_loops
from .stream import build_stream

FORMAT, VERSION = "dlavm-artifact", 1


def target_fingerprint(target) -> str:
    """sha256 of the target description (``Target.fingerprint``)."""
    return target.fingerprint()


@dataclass
class Build:
    """``manifest`` (without ``files``), ``files`` {relpath: bytes}, task programs and timings."""

    manifest: dict
    files: dict
    programs: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)   # name -> Stream (with sym expressions)
    lowered: list = field(default_factory=list)   # LoweredFunction per entry


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def build_module(mod, target, model: str = "model", weights: str = "int4", on_progress=None) -> Build:
    """Lower and encode ``mod`` for ``target``; see the module docstring.

    ``on_progress(stage, done, total, detail)`` reports weight packing and stream encoding."""
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
            dims[d.name] = [d.lo, d.hi]
        steps = []
        for step in lf.steps:
            if step["kind"] != "stream":
                steps.append(step)
                continue
            prog = simplify_loops(step["program"])
            programs[prog.name] = prog
            if on_progress:
                on_progress("stream", len(programs), None, prog.name)
            st = build_stream(prog)
            stream_objs[prog.name] = st
            data = st.to_bytes()
            addr = place_stream(len(data))
            base = f"streams/{_safe(prog.name)}"
            files[base + ".bin"] = data
            files[base + ".asm"] = st.listing().encode()
            streams[prog.name] = {"file": base + ".bin", "asm": base + ".asm", "addr": addr,
                                  "count": len(st.insns), "patches": st.patches, "guards": st.guards,
                                  "ops": [c.split(" ")[0] for c in st.comments]}
            steps.append({"kind": "stream", "stream": prog.name})
        values = lf.values
        state = [d.name for d in ctx.state_dims if d in lf.dims]
        entries[lf.name] = {
            "state_dims": state, "requires": list((mod.attrs.get("llm") or {}).get("requires", [])) if state else [],
            "inputs": [{"name": n, "value": v, "shape": values[v]["shape"], "dtype": values[v]["dtype"]}
                       for n, v in lf.inputs],
            "outputs": [{"value": v, "shape": values[v]["shape"], "dtype": values[v]["dtype"]}
                        for v in lf.outputs],
            "values": {k: dict(v) for k, v in values.items()}, "steps": steps,
        }
        ops[lf.name] = lf.ops
    t2 = time.perf_counter()
    wfiles = []
    for name, data in ctx.blobs.items():
        if data is None:
            continue
        rel = f"weights/{_safe(name)}.bin"
        files[rel] = data.tobytes()
        wfiles.append({"name": name, "file": rel, "addr": any_plan.address(name), "nbytes": data.nbytes})
    hconsts = []
    for name, data in ctx.host_consts.items():
        if data is None:
            continue
        rel = f"weights/host.{_safe(name)}.bin"
        arr = np.ascontiguousarray(data)
        files[rel] = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        hconsts.append({"name": name, "file": rel, "dtype": arr.dtype.str.lstrip("<>|="), "shape": list(arr.shape)})
    manifest = {
        "format": FORMAT, "version": VERSION,
        "isa_version": f"{ISA_VERSION >> 16}.{ISA_VERSION & 0xFFFF}",
        "target": {"name": target.name, "fingerprint": target_fingerprint(target), "description": target.to_dict()},
        "model": model, "weights_format": weights,
        "weights_complete": all(d is not None for d in ctx.blobs.values()),
        "dims": dims, "memory": _memory_json(plans, ctx, ddr.base, stream_top[0]),
        "weights": wfiles, "host_consts": hconsts,
        "entries": entries, "streams": streams,
        "llm": mod.attrs.get("llm"),
        "host_ops": json.loads(json.dumps(list(mod.attrs.get("host_ops", [])), default=str)),
    }
    timings = {"lower": t1 - t0, "streams": t2 - t1, "pack": time.perf_counter() - t2}
    return Build(_jsonable(manifest), files, programs, ops, timings, stream_objs, lowered)


def _memory_json(plans, ctx, ddr_base, stream_end) -> dict:
    """Pools with their buffers: weights and kv by name; activations per function; streams."""
    first = next(iter(plans.values()))
    out = {}
    for pool in ("weights", "kv"):
        pp = first.pools[pool]
        names = ctx.blob_sizes if pool == "weights" else ctx.scratch_sizes
        out[pool] = {"region": pp.region, "base": pp.base, "used": pp.size,
                     "buffers": {n: [first.address(n), size] for n, size in names.items()}}
    for fname, plan in plans.items():
        pp = plan.pools["activations"]
        bufs = {}
        for key, buf in plan.buffers.items():
            if plan.pool_of.get(key) == "activations" and key not in plan.aliases:
                bufs[buf.name] = [plan.address(key), buf.size]
        out[f"activations.{fname}"] = {"region": pp.region, "base": pp.base, "used": pp.size, "buffers": bufs}
    arena = max(p.pools["activations"].size for p in plans.values())
    start = -(-(ddr_base + arena) // 4096) * 4096
    out["streams"] = {"region": "ddr", "base": start, "used": stream_end - start, "buffers": {}}
    return out


def _jsonable(x):
    """Manifest data with sym expressions turned into strings and numpy scalars into ints."""
    stack = [x]
    while stack:
        c = stack.pop()
        items = c.items() if isinstance(c, dict) else enumerate(c) if isinstance(c, list) else ()
        for k, v in list(items):
            if isinstance(v, sym.Expr):
                c[k] = str(v)
            elif isinstance(v, tuple):
                c[k] = list(v)
                stack.append(c[k])
            elif isinstance(v, np.integer):
                c[k] = int(v)
            elif isinstance(v, np.floating):
                c[k] = float(v)
            elif isinstance(v, (dict, list)):
                stack.append(v)
    return x


def programs_text(build: Build) -> str:
    """Every task program, printed."""
    return "\n\n".join(format_program(p) for p in build.programs.values())


__all__ = ["Build", "build_module", "target_fingerprint", "FORMAT", "VERSION", "programs_text"]
