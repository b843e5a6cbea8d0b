"""The user API: ``dlavm.compile`` and ``dlavm.load``.

``compile`` takes a model (a recipe name, ``file.py:factory``, a graph-IR
``Module`` or a ``torch.nn.Module`` with example inputs), runs the graph
pipeline down to the device graph (``dlavm.passes.device_pipeline``; a
module that is already device-level is taken as is), lowers it to task IR,
encodes streams and packs weights. The returned :class:`CompiledModel`
runs on the in-process simulator (or a HAL you pass), saves an artifact,
and reports where every op runs. :func:`profile` measures one run on the
simulator (cycles, per-op busy cycles, fraction of the roofline).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
from dlavm.backend.artifact import write_artifact
from dlavm.backend.build import Build, build_module
from dlavm.backend.driver import cpp_unsupported_host_ops, generate_driver
from dlavm.backend.ops_report import check_ops_report_path, write_ops_report
from dlavm.backend.report import format_report
from dlavm.passes.kv_cache import BATCH_ENTRIES, ROWS_DIM, SLOT_DIM
from dlavm.runtime.host_kernels import HostOpError, host_ops_of, require_kernels
from dlavm.runtime.loader import artifact_target, load_verified
from dlavm.artifact import HostStep, Manifest, eval_expr
from dlavm.runtime.runtime import BoundsError, Runtime, RunError
from dlavm.sim_device import open_simulator
from dlavm.target import get_target


class CompileError(ValueError):
    """The model cannot be compiled (unsupported op, missing pipeline stage); names the cause."""


def _is_device_module(mod) -> bool:
    from dlavm.ir import Call, post_order
    for fn in mod.functions.values():
        for n in post_order([fn.body]):
            if isinstance(n, Call) and n.op.name in ("dev.to_device", "dev.to_host"):
                return True
    return False


def device_graph(mod, weights: str, target):
    """``mod`` (imported graph IR) through the device pipeline for ``target`` with ``weights``, as
    :func:`compile` lowers it: what ``dlavm.passes.fake_quantized_module`` needs to rebuild the weights
    a compiled artifact computes with."""
    return _to_device_graph(mod, weights, {}, get_target(target))[0]


def _to_device_graph(mod, weights: str, timings: dict, target, on_progress=None, dump_ir=None):
    """``(device graph, [PassRecord])``: ``mod`` through the device pipeline for ``target``
    (the IR after each pass written to the folder ``dump_ir`` if given)."""
    if _is_device_module(mod):
        return mod, []
    from dlavm.ir import PassContext, PassManager
    from dlavm.passes import device_pipeline
    ctx = PassContext(on_progress=(lambda name, i, n: on_progress("pass", i, n, name)) if on_progress else None,
                      target=target, dump_dir=dump_ir)
    t0 = time.perf_counter()
    out = PassManager(device_pipeline(weights=weights)).run(mod, ctx)
    timings["device_pipeline"] = time.perf_counter() - t0
    for r in ctx.records:
        timings[f"pass.{r.name}"] = r.seconds
    return out, ctx.records


def _check_host_ops(manifest: Manifest) -> None:
    """Every host-fallback step must have a numpy kernel in the runtime that honours its attributes,
    else the model cannot run: refused here, naming the op, attribute and value, never run wrong.
    (A dtype numpy cannot hold, bfloat16, is refused by the manifest schema already.)"""
    from dlavm.runtime.host_kernels import find_kernel, unsupported_attrs
    missing, problems = set(), []
    for entry, e in manifest.entries.items():
        for s in e.steps:
            if not isinstance(s, HostStep):
                continue
            if find_kernel(s.op) is None:
                missing.add(s.op)
                continue
            where = f"host op '{s.op}' (entry '{entry}', value {s.dst})"
            problems += [f"{where}: attribute {bad}" for bad in unsupported_attrs(s.op, s.attrs)]
    if missing:
        raise CompileError(f"host-fallback op(s) {sorted(missing)} have no device lowering and no host kernel "
                           f"(dlavm.runtime.host_kernels); the model cannot run")
    if problems:
        raise CompileError(f"{problems[0]}: its numpy kernel (dlavm.runtime.host_kernels) cannot run it"
                           + (f" ({len(problems) - 1} more such step(s))" if len(problems) > 1 else ""))


def _cpp_driver_problems(manifest: Manifest) -> str | None:
    """Why the generated C++ driver cannot run this model (every host op it lacks), or None."""
    unsupported = cpp_unsupported_host_ops(manifest)
    if not unsupported:
        return None
    return "; ".join(map(str, unsupported)) + " (save with driver=False / --no-driver: the Python runtime runs it)"


class CompiledModel:
    """A compiled model: run it, save it, report on it."""

    def __init__(self, manifest: Manifest, read_file, build: Build | None = None, timings: dict | None = None):
        self.manifest, self._read, self.build = manifest, read_file, build
        self.timings = dict(timings or {})
        self._runtime: Runtime | None = None
        self.hal = None
        #: the device graph this model was lowered from (None for a loaded artifact)
        self.device_module = None
        #: ``dlavm.ir.PassRecord`` of every graph pass run by this compilation (with per-rule stats)
        self.pass_records: list = []

    @property
    def target(self):
        return artifact_target(self.manifest)

    @property
    def entries(self) -> list:
        return list(self.manifest.entries)

    def runtime(self, hal=None, mode: str = "aux", serial: bool = False, **sim_kwargs) -> Runtime:
        """The runtime on ``hal`` (default: a fresh in-process simulator, ``sim_kwargs`` passed on),
        weights loaded. With ``functional=False`` it runs for timing only (shape-only models too); with
        ``serial`` every instruction waits for every unit (:class:`Runtime`)."""
        if (hal is None and self._runtime is not None and not sim_kwargs and self._runtime.mode == mode
                and self._runtime.serial == serial):
            return self._runtime
        hal = hal or open_simulator(self.manifest, **sim_kwargs)
        timing_only = sim_kwargs.get("functional", True) is False
        self.hal = hal
        self._runtime = Runtime(self.manifest, self._read, hal, mode, timing_only=timing_only, serial=serial)
        return self._runtime

    def run(self, *inputs, entry: str | None = None):
        """Outputs (a list of numpy arrays) of ``entry`` (default: the first) for ``inputs``."""
        rt = self.runtime()
        return rt.run(entry or self.entries[0], *inputs)

    def generate(self, prompt_ids, max_new_tokens: int = 32, **kwargs):
        """Iterator of new token ids after ``prompt_ids`` on this model's runtime (an LLM artifact:
        ``dlavm.llm.compile_llm``); keyword arguments as :meth:`dlavm.runtime.generate.Generator.generate`
        (``temperature``, ``top_k``, ``top_p``, ``seed``, ``eos_id``). ``self.generator`` keeps the loop's
        state (``stop_reason``, ``stop_message``)."""
        from dlavm.runtime.generate import Generator
        self.generator = Generator(self.runtime())
        return self.generator.generate(prompt_ids, max_new_tokens, **kwargs)

    def save(self, directory, driver: bool = True) -> Path:
        """Write the artifact (doc/backend.md) to ``directory``, with the C++ driver unless ``driver=False``."""
        if self.build is None:
            raise CompileError("a loaded model is already an artifact; copy its directory instead")
        problems = _cpp_driver_problems(self.manifest) if driver else None
        if problems:
            raise CompileError(f"cannot save '{self.manifest.model}' with its C++ driver: {problems}")
        extra = generate_driver(self.build, self.manifest.model) if driver else {}
        return write_artifact(self.build, directory, extra)

    def write_ops_report(self, path) -> Path:
        """Write the supported-ops report to ``path``: per op, where it runs, why, its module and count,
        CSV or Markdown by the extension (:mod:`dlavm.backend.ops_report`). Needs the device graph, so
        a freshly compiled model, not a loaded artifact."""
        return write_ops_report(path, self)

    def report(self) -> str:
        """The compile report: every op, where it runs, instructions, estimated cycles and memory."""
        problems = _cpp_driver_problems(self.manifest)
        host = self.device_module.attrs.get("host_ops") if self.device_module is not None else None
        return (format_report(self.manifest, self.build, self.timings, host) + "\n"
                + (f"C++ driver: unavailable: {problems}" if problems else "C++ driver: available"))


def model_source(spec: str, max_seq: int | None = None):
    """The manifest's record of MODEL ``spec`` compiled with ``max_seq``: the string as given (a relative
    path stays relative: the artifact names no path of this machine the user did not give)."""
    from dlavm.artifact import ModelSource, model_kind
    return ModelSource(model_kind(spec), spec, max_seq)


def compile(model, example_inputs=None, dynamic_shapes=None, target="vcu128", weights: str = "int4",
            max_seq: int | None = None, name: str | None = None, on_progress=None,
            dump_ir: str | None = None, source=None) -> CompiledModel:
    """Compile ``model`` for ``target`` (see the module docstring).

    ``on_progress(stage, done, total, detail)`` is called as work proceeds: each
    graph pass (``stage='pass'``), each weight packed (``'pack'``, total None),
    each stream encoded (``'stream'``); for a model given by name, first each import stage
    (``'import'``: build model, torch.export, decompose, convert) and import pass (``'import pass'``).
    ``dump_ir``: a folder to write the IR to before and after each graph pass (``NN-pass.txt``, as
    ``dlavm import --dump-ir``).
    ``source``: where the model came from, recorded in the manifest (``source``, a
    :class:`~dlavm.artifact.ModelSource`); default: for a model given as a MODEL string, that string and
    ``max_seq`` (:func:`model_source`), else none.
    """
    from dlavm.ir import Module
    tgt = get_target(target)
    if weights not in tgt.weight_formats:
        raise CompileError(f"weight format {weights!r} is not supported by target '{tgt.name}' "
                           f"({list(tgt.weight_formats)})")
    timings: dict = {}
    t0 = time.perf_counter()
    model_name = "model"
    if isinstance(model, Module):
        mod = model
    elif isinstance(model, str):
        from dlavm.models import import_model
        res = import_model(model, max_seq=max_seq, on_progress=on_progress)
        mod, model_name = res.module, res.spec.name   # hf:DIR: the folder's name, not its path
        if source is None:
            source = model_source(model, max_seq)
    else:
        from dlavm.frontend.torch import from_torch
        if example_inputs is None:
            raise CompileError("compiling a torch.nn.Module needs example_inputs")
        model_name = type(model).__name__
        mod = from_torch(model, tuple(example_inputs), dynamic_shapes)
    timings["import"] = time.perf_counter() - t0
    mod, pass_records = _to_device_graph(mod, weights, timings, tgt, on_progress, dump_ir)
    build = build_module(mod, tgt, model=name or model_name, weights=weights, on_progress=on_progress,
                         source=source)
    _check_host_ops(build.manifest)
    timings.update(build.timings)
    files = build.files
    cm = CompiledModel(build.manifest, lambda rel: files[rel], build, timings)
    cm.device_module = mod
    cm.pass_records = pass_records
    return cm


def load(directory, hal=None) -> CompiledModel:
    """A compiled model from an artifact directory (verified; refuses a corrupt or foreign one).

    ``hal``: run on this device instead of a fresh in-process simulator.
    """
    art = load_verified(directory)   # the checked bytes are what runs: no re-read after verifying
    try:  # a host op this process cannot run (an unregistered @dlavm.host_op) is refused at load
        require_kernels(host_ops_of(art.manifest))
    except HostOpError as e:
        raise RunError(f"cannot load {directory}: {e}") from None
    cm = CompiledModel(art.manifest, art.read)
    if hal is not None:
        cm.runtime(hal)
    return cm


# --- profiling (runs the runtime on the simulator; lives here, above both compiler and runtime) ---

def check_entry(manifest: Manifest, entry: str | None) -> str:
    """``entry`` (default: the first), refused with :class:`RunError` naming the entries if unknown."""
    if entry is None:
        return next(iter(manifest.entries))
    if entry not in manifest.entries:
        raise RunError(f"entry {entry!r} is not in the model; its entries are {list(manifest.entries)}")
    return entry


def random_inputs(manifest: Manifest, entry: str, seq: int, seed: int = 0) -> list:
    """Random inputs for ``entry`` with every dim its inputs use = ``seq`` (ints in [0, 16)).

    A ``seq`` outside the bounds of one of those dims is refused with :class:`BoundsError`, naming
    the value, the dim and its bounds: never clamped."""
    import re
    entry = check_entry(manifest, entry)
    used = sorted({name for spec in manifest.entries[entry].inputs for d in spec.shape
                   for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(d)) if name in manifest.dims})
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise BoundsError(f"seq={seq!r} is not an integer")
    for d in used:
        b = manifest.dims[d]
        if not b.lo <= seq <= b.hi:
            raise BoundsError(f"seq={seq!r} is outside the bounds the model was compiled for: {d} in "
                              f"[{b.lo}, {b.hi}] (seq sets every dynamic dim)")
    env = {d: seq for d in manifest.dims}
    rng = np.random.default_rng(seed)
    out = []
    for spec in manifest.entries[entry].inputs:
        shape = [eval_expr(d, env) for d in spec.shape]
        if spec.dtype.startswith(("int", "uint")):
            out.append(rng.integers(0, 16, shape).astype(spec.dtype))
        else:
            out.append(rng.standard_normal(shape).astype(spec.dtype))
    return out




def _batched_rows(manifest: Manifest, entry: str) -> bool:
    """Whether ``entry`` is a batched-decode step (one token of each of several sequences, doc/llm.md)."""
    return manifest.llm is not None and entry in BATCH_ENTRIES.values() and ROWS_DIM in manifest.dims


def profile(manifest: Manifest, read_file, seq: int, entry: str | None = None, functional: bool = True,
            trace_path: str | None = None, ctx: int | None = None, hal=None) -> dict:
    """Measured profile of one run of ``entry`` on the simulator, with :func:`random_inputs`.

    ``hal``: profile on this device (a device server: ``SocketDevice``) instead of a fresh in-process
    simulator; the per-op table then stays empty (it needs the simulator's instruction records).

    Reports device cycles and time at the target clock, per-op busy cycles
    (each stream entry carries its op tag) and utilisation against the roofline
    ``max(MACs / peak MAC per cycle, HBM bytes / HBM bytes per cycle)``, the
    fewest cycles the same work could take. ``functional=False`` uses the
    timing-only simulator (shape-only 7B models in milliseconds). Writes a
    Perfetto trace to ``trace_path`` if given. An LLM entry's state dim (the
    KV length after the call, doc/llm.md) is ``ctx`` (default ``seq``:
    prefill); decode at context ``n`` is ``seq=1, ctx=n``, after a prefill of
    the ``n - 1`` cached tokens. A batched-decode step (``greedy_batch``, doc/llm.md) of ``seq``
    sequences each at KV length ``ctx`` runs after a prefill of ``ctx - 1`` tokens into each of their
    slots; a batched artifact's ``greedy`` / ``logits`` run in slot 0.

    Besides the totals and ``per_op`` (``(tag, busy cycles, instructions)``), the result has
    ``phase`` and ``phases`` (each run: ``prefill`` / ``decode`` / ``run``, tokens, KV length,
    cycles; the last one is the measured run), ``ops`` (per op tag: layer, MACs, bytes moved,
    busy cycles, first start and last end cycle: the roofline and timeline of ``dlavm profile
    --plot``) and ``host`` (the host-fallback steps of the measured run: their count and the wall
    time of their numpy kernels in this process, per op). The trace's events carry the op tag,
    layer and weights (:mod:`dlavm.runtime.profile_trace`).
    """
    entry = check_entry(manifest, entry)
    state_dims = manifest.entries[entry].state_dims
    if ctx is not None and not state_dims:
        raise RunError(f"ctx={ctx!r}: entry {entry!r} has no state dim (ctx applies to LLM artifacts)")
    rows = _batched_rows(manifest, entry)
    for d in [x for x in state_dims if x != SLOT_DIM] if ctx is not None else ():
        b = manifest.dims[d]
        low = b.lo if rows else max(seq, b.lo)   # a batched step's rows are not the KV length
        if isinstance(ctx, bool) or not isinstance(ctx, int) or not low <= ctx <= b.hi:
            raise BoundsError(f"ctx={ctx!r} is outside [{max(seq, b.lo)}, {b.hi}]: the tokens in the KV cache "
                              f"after the call, at least seq={seq} and at most the compiled bound of {d}")
    target = artifact_target(manifest)
    sim = hal if hal is not None else open_simulator(manifest, functional=functional, trace=trace_path is not None)
    rt = Runtime(manifest, read_file, sim, "aux", timing_only=not functional)
    inputs = random_inputs(manifest, entry, seq)
    state = {d: ctx if ctx is not None else seq for d in manifest.entries[entry].state_dims}
    if SLOT_DIM in state:   # an artifact with batched decode: a single sequence runs in slot 0
        state[SLOT_DIM] = 0
    past = max(state.values(), default=seq) - (1 if rows else seq)
    runs = []  # one per rt.run: (phase, tokens, KV length after, stats before, stats after, streams, host steps)
    # decode after a real prefill of the `past` cached tokens (its own phase, not the measured one); a batched
    # step (doc/llm.md "Batched decode"): of each of its `seq` sequences, in slots 0 .. seq-1
    for slot in range(seq if rows else 1) if past > 0 else ():
        b = sim.stats()
        pre = manifest.llm.entries["greedy"] if rows else entry
        dims = {d: past for d in manifest.entries[pre].state_dims}
        if SLOT_DIM in dims:
            dims[SLOT_DIM] = slot
        rt.run(pre, *random_inputs(manifest, pre, past, seed=1), dims=dims)
        runs.append(("prefill", past, past, b, sim.stats(), rt.stream_log, rt.host_log))
    before = sim.stats()
    outputs = rt.run(entry, *inputs, dims=state)
    after = sim.stats()
    phase = "run" if not state else f"batched decode ({seq} sequences)" if rows else \
        "prefill" if past == 0 else "decode" if seq == 1 else "prefill (chunk)"
    runs.append((phase, seq, max(state.values(), default=None), before, after, rt.stream_log, rt.host_log))
    records = getattr(sim, "records", ())
    per_op: dict = {}
    for name, first, lo, hi in rt.stream_log:
        s = manifest.streams[name]
        for k, rec in enumerate(records[first:first + hi - lo]):
            info = s.insns[lo + k]
            tag = info.tag or rec.op
            o = per_op.setdefault(tag, {"tag": tag, "layer": info.layer, "cycles": 0, "insns": 0, "macs": 0,
                                        "bytes": 0, "start": rec.start, "end": rec.busy_end})
            o["cycles"] += rec.busy_end - rec.start
            o["insns"] += 1
            o["macs"] += getattr(rec, "macs", 0)
            o["bytes"] += getattr(rec, "nbytes", 0)
            o["start"], o["end"] = min(o["start"], rec.start), max(o["end"], rec.busy_end)
    fig = target.figures
    cycles = after["cycles"] - before["cycles"]
    macs = after["macs"] - before["macs"]
    hbm = after["hbm_bytes"] - before["hbm_bytes"]
    roof = fig.roofline_cycles(macs, hbm)
    host_ops: dict = {}
    for op, _dst, _t, sec in rt.host_log:
        h = host_ops.setdefault(op, [0.0, 0])
        h[0] += sec
        h[1] += 1
    result = {
        "target": target.name, "entry": entry, "seq": seq, "functional": functional, "state": state,
        "phase": phase,
        "cycles": cycles, "time_us": fig.cycles_to_us(cycles), "clock_mhz": target.clock_mhz,
        "macs": macs, "hbm_bytes": hbm, "roofline_cycles": roof,
        "roofline_fraction": roof / cycles if cycles else 0.0,
        # against the board's HBM bandwidth (the device peak) rather than the ports' (the port peak)
        "device_roofline_cycles": fig.device_roofline_cycles(macs, hbm),
        "device_roofline_fraction": fig.device_roofline_cycles(macs, hbm) / cycles if cycles else 0.0,
        "port_peak_gb_s": fig.hbm_gbytes_per_s, "device_peak_gb_s": fig.device_hbm_gbytes_per_s,
        # the two limits separately: decode is judged against HBM bandwidth, prefill against the MACs
        "hbm_fraction": hbm / fig.hbm_bytes_per_cycle / cycles if cycles else 0.0,
        "hbm_device_fraction": hbm / fig.device_hbm_bytes_per_cycle / cycles if cycles else 0.0,
        "mac_fraction": macs / fig.peak_macs_per_cycle / cycles if cycles else 0.0,
        "ms_per_token": fig.cycles_to_us(cycles) / 1e3 / max(seq, 1),
        "instructions": after["instructions"] - before["instructions"],
        "per_op": sorted(((o["tag"], o["cycles"], o["insns"]) for o in per_op.values()), key=lambda r: -r[1]),
        # per op: its layer, MACs and bytes moved (roofline), first start and last end cycle (timeline)
        "ops": sorted(per_op.values(), key=lambda o: o["start"]),
        "peak_macs_per_cycle": fig.peak_macs_per_cycle, "hbm_bytes_per_cycle": fig.hbm_bytes_per_cycle,
        # host-fallback kernels of the measured run: numpy in this process, wall time (not device cycles)
        "host": {"seconds": sum(h[3] for h in rt.host_log), "steps": len(rt.host_log),
                 "per_op": sorted(((op, v[0], v[1]) for op, v in host_ops.items()), key=lambda r: -r[1])},
        "phases": [{"phase": ph, "tokens": n, "kv": kv, "cycles": a["cycles"] - b["cycles"],
                    "time_us": fig.cycles_to_us(a["cycles"] - b["cycles"]),
                    "host_s": sum(h[3] for h in hl), "measured": i == len(runs) - 1}
                   for i, (ph, n, kv, b, a, _, hl) in enumerate(runs)],
        "outputs": [(list(o.shape), str(o.dtype)) for o in outputs],
    }
    raw = sim.trace() if trace_path else None
    if trace_path and raw is None:
        raise RunError(f"cannot write the trace {trace_path}: this device keeps no trace (profile on the "
                       f"in-process simulator for a trace)")
    if trace_path:
        with open(trace_path, "w") as f:
            json.dump(_annotated_trace(raw, manifest, entry, runs, records, fig), f)
    return result


def _annotated_trace(raw: dict, manifest: Manifest, entry: str, runs: list, records, fig) -> dict:
    """The simulator's trace with op tags, layers and weights in ``args``, one marked span per phase and
    the host-fallback kernels' wall time (:mod:`dlavm.runtime.profile_trace`)."""
    from dlavm.runtime.profile_trace import annotate_trace
    info, phases, host = {}, [], []
    for ph, n, kv, b, a, streams, host_log in runs:
        for name, first, lo, hi in streams:
            s = manifest.streams[name]
            for k, rec in enumerate(records[first:first + hi - lo]):
                r = s.insns[lo + k]
                info[rec.index] = {"tag": r.tag, "layer": r.layer, "weights": list(r.weights), "insn": rec.op,
                                   "entry": entry, "phase": ph, "macs": getattr(rec, "macs", 0),
                                   "bytes": getattr(rec, "nbytes", 0)}
        t0, t1 = fig.cycles_to_us(b["cycles"]), fig.cycles_to_us(a["cycles"])
        phases.append({"name": f"{ph} ({n} token{'s' if n != 1 else ''})", "start_us": t0, "end_us": t1,
                       "args": {"phase": ph, "entry": entry, "tokens": n, "kv_length": kv,
                                "cycles": a["cycles"] - b["cycles"]}})
        host += [{"name": op, "start_us": t0 + start * 1e6, "dur_us": sec * 1e6,
                  "args": {"op": op, "value": dst, "phase": ph, "wall_us": round(sec * 1e6, 3)}}
                 for op, dst, start, sec in host_log]
    return annotate_trace(raw, info, phases, host)


def format_profile(p: dict, top: int = 20) -> str:
    """Text table of :func:`profile`'s result."""
    state = "".join(f" {k}={v}" for k, v in p.get("state", {}).items())
    lines = [f"{p['entry']} seq={p['seq']}{state} on {p['target']} ({'functional' if p['functional'] else 'timing-only'}):"
             f" {p['cycles']:,} cycles = {p['time_us']:.1f} us at {p['clock_mhz']} MHz",
             f"roofline {p['roofline_cycles']:,.0f} cycles (MACs {p['macs']:,}, HBM bytes {p['hbm_bytes']:,})"
             f" -> {100 * p['roofline_fraction']:.1f}% of port peak ({p['port_peak_gb_s']:.1f} GB/s), "
             f"{100 * p['device_roofline_fraction']:.1f}% of device peak ({p['device_peak_gb_s']:.1f} GB/s)",
             f"HBM bandwidth {100 * p['hbm_fraction']:.1f}% of port peak, {100 * p['hbm_device_fraction']:.1f}% of "
             f"device peak, MACs {100 * p['mac_fraction']:.1f}% of peak; "
             f"{p['ms_per_token']:.3f} ms per token ({p['seq']} token(s) in {p['time_us'] / 1e3:.3f} ms)"]
    if p.get("state"):
        lines.append("phases: " + "; ".join(
            f"{ph['phase']} {ph['tokens']} token(s) to KV length {ph['kv']}: {ph['cycles']:,} cycles = "
            f"{ph['time_us']:.1f} us" + (" (measured above)" if ph["measured"] else "") for ph in p["phases"]))
    kinds: dict = {}
    for tag, cyc, n in p["per_op"]:
        k = kinds.setdefault(tag.split("#")[0], [0, 0, 0])
        k[0], k[1], k[2] = k[0] + cyc, k[1] + n, k[2] + 1
    total = sum(k[0] for k in kinds.values()) or 1
    lines.append(f"{'op kind':<24} {'busy cycles':>12} {'insns':>6} {'ops':>5} {'share':>6}")
    for kind, (cyc, n, ops) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{kind:<24} {cyc:>12,} {n:>6} {ops:>5} {100 * cyc / total:>5.1f}%")
    lines.append(f"{'op':<24} {'busy cycles':>12} {'insns':>6}")
    for tag, cyc, n in p["per_op"][:top]:
        lines.append(f"{tag:<24} {cyc:>12,} {n:>6}")
    if len(p["per_op"]) > top:
        lines.append(f"... {len(p['per_op']) - top} more ops")
    host = p.get("host") or {}
    if host.get("steps"):
        lines.append(f"host fallback: {host['steps']} step(s), {host['seconds'] * 1e3:.3f} ms wall time of the numpy "
                     f"kernels in this process (not in the device cycles above)")
        lines.append(f"{'host op':<24} {'wall ms':>12} {'steps':>6}")
        for op, sec, n in host["per_op"][:top]:
            lines.append(f"{op:<24} {sec * 1e3:>12.3f} {n:>6}")
    return "\n".join(lines)


__all__ = ["compile", "load", "CompiledModel", "CompileError", "profile", "format_profile", "random_inputs",
           "check_entry", "device_graph"]
