"""The ``dlavm`` backend of ``torch.compile`` (doc/torch_compile.md).

TorchDynamo hands each captured graph to :func:`dlavm_backend`. AOTAutograd turns it into an
inference graph of ATen ops (our decomposition table applied); :mod:`.partition` finds the maximal
subgraphs the torch frontend converts; each is imported (:mod:`.program`), compiled by
``dlavm.compile`` (or loaded from the program cache) and run on the device by a :class:`DeviceCall`
in its place; every other node runs in torch eager. A node a converter refuses, and a subgraph the
compiler refuses, fall back to eager with the reason, which :func:`dlavm.dynamo.explain` prints.

Dynamic sizes: a symbolic size from dynamo is compiled for ``[torch's lower bound, pick_bound(size)]``;
a call within the bounds reuses the program, a call past them compiles a variant for larger bounds
(logged, counted in :data:`STATS`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..compiler import CompileError, compile as dlavm_compile
from ..devlink.uri import DeviceURIError, connect, parse_device_uri
from ..errors import is_project_error, one_line
from ..frontend.torch.decompositions import decomposition_table
from ..program_cache import ProgramCache, default_folder
from ..target import Target, get_target
from . import partition as part
from .program import ImportRefused, Subgraph, fingerprint, import_subgraph, pick_bound, source_name, weight_name

log = logging.getLogger("dlavm.dynamo")


class BackendError(ValueError):
    """A bad option of the backend, or (with ``fallback="error"``) a graph that does not run whole on
    the device: one line naming the option or the op and why."""


#: the options ``torch.compile(..., backend="dlavm", options={...})`` takes, with their defaults
DEFAULTS = {
    "target": "vcu128",      # a built-in target name or a target file (doc/targets.md)
    "weights": "fp16",       # weight format: fp16, int8 or int4 (the target's formats)
    "device": None,          # None: an in-process simulator per program; sim://HOST:PORT: a device server
    "cache_dir": None,       # program cache folder; None: the default (doc/cli.md, "Caches"); False: none
    "dim_bound": None,       # upper bound of every dynamic size (None: twice the size seen, a power of 2)
    "fallback": "eager",     # "eager": unsupported ops run in torch; "error": refuse the graph instead
}


@dataclass(frozen=True)
class Options:
    target: str | Target = DEFAULTS["target"]
    weights: str = DEFAULTS["weights"]
    device: str | None = None
    cache_dir: str | bool | None = None      # a folder, None (the default folder) or False (no cache)
    dim_bound: int | None = None
    fallback: str = "eager"

    @classmethod
    def parse(cls, options) -> "Options":
        """Options from ``torch.compile``'s ``options`` dict; a bad one is a :class:`BackendError`."""
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise BackendError(f"options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise BackendError(f"unknown option {unknown[0]!r} of the dlavm backend (it takes {', '.join(DEFAULTS)})")
        o = {**DEFAULTS, **options}
        try:
            tgt = get_target(o["target"])
        except Exception as e:  # noqa: BLE001 -- the target loader's refusals are project errors
            if not is_project_error(e) and not isinstance(e, (ValueError, OSError, KeyError)):
                raise
            raise BackendError(f"option 'target': {one_line(e)}") from None
        if o["weights"] not in tgt.weight_formats:
            raise BackendError(f"option 'weights': {o['weights']!r} is not a weight format of target "
                               f"'{tgt.name}' ({', '.join(tgt.weight_formats)})")
        if o["device"] is not None:
            if not isinstance(o["device"], str):
                raise BackendError(f"option 'device': expected a string sim://HOST:PORT, got {o['device']!r}")
            try:
                parse_device_uri(o["device"], what="option 'device':")
            except DeviceURIError as e:
                raise BackendError(str(e)) from None
        cache_dir = o["cache_dir"]
        if cache_dir is not None and cache_dir is not False and not isinstance(cache_dir, (str, os.PathLike)):
            raise BackendError(f"option 'cache_dir': expected a folder path or False, got {cache_dir!r}")
        bound = o["dim_bound"]
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 1):
            raise BackendError(f"option 'dim_bound': expected an integer of at least 1, got {bound!r}")
        if o["fallback"] not in ("eager", "error"):
            raise BackendError(f"option 'fallback': expected 'eager' or 'error', got {o['fallback']!r}")
        target = o["target"] if isinstance(o["target"], Target) else str(o["target"])   # a Target: as given
        return cls(target, o["weights"], o["device"],
                   cache_dir if cache_dir in (None, False) else os.fspath(cache_dir), bound, o["fallback"])

    @property
    def cache(self) -> bool:
        return self.cache_dir is not False

    def program_cache(self) -> ProgramCache:
        return ProgramCache(None if self.cache_dir is False else Path(self.cache_dir or default_folder()))


@dataclass
class Stats:
    """What the backend did in this process (``dlavm.dynamo.STATS``; :func:`reset_stats` clears it)."""
    graphs: int = 0                  # graphs dynamo handed over
    compiles: int = 0                # programs compiled (cache misses, first bounds and recompiles)
    cache_hits: int = 0              # programs loaded from the program cache
    recompiles: list = field(default_factory=list)   # why each recompilation (a size past a bound, a new weight)
    device_calls: int = 0            # calls run on the device
    eager_calls: int = 0             # subgraph calls run in eager instead (a size below the bounds)
    fallback_ops: Counter = field(default_factory=Counter)   # ATen op -> nodes left to eager
    device_seconds: float = 0.0      # wall time in the runtime's run calls (simulator or device server)
    host_kernel_seconds: float = 0.0  # of which in the programs' host-fallback steps (the runtime's host_log)
    program_seconds: float = 0.0     # wall time getting programs: compiling them, or loading them from the cache
    partition_seconds: float = 0.0   # wall time partitioning ATen graphs, importing and getting their programs


STATS = Stats()
_lock = threading.Lock()


def reset_stats() -> None:
    """Zero :data:`STATS` in place, so that every module that imported it (``dlavm.dynamo.STATS``)
    sees the reset."""
    fresh = Stats()
    for name in fresh.__dataclass_fields__:
        setattr(STATS, name, getattr(fresh, name))


# ------------------------------------------------------------------ reports (read by explain)
@dataclass
class SubgraphReport:
    name: str
    ops: list                       # ATen ops of its nodes, graph order
    bounds: dict                    # dim -> (lo, hi)
    how: str = ""                   # hit / miss / rebuilt, or "eager" when the compiler refused it
    placement: list = field(default_factory=list)   # (op as compiled, where) rows of the compile report
    reason: str = ""                # why it runs in eager, when it does


@dataclass
class GraphReport:
    index: int
    subgraphs: list = field(default_factory=list)   # [SubgraphReport]
    fallbacks: list = field(default_factory=list)   # [partition.Fallback]
    eager_reason: str = ""                          # why the whole graph runs in eager
    code: str = ""                                  # the ATen graph after partitioning
    aten: list = field(default_factory=list)        # ATen overloads handed over (before partitioning)


_collectors: list = []


def _report(r: GraphReport) -> None:
    for c in _collectors:
        c.append(r)


@contextlib.contextmanager
def collect_reports():
    """``with collect_reports() as graphs:``: the :class:`GraphReport` of every graph compiled inside."""
    graphs: list = []
    _collectors.append(graphs)
    try:
        yield graphs
    finally:
        _collectors.remove(graphs)


# ------------------------------------------------------------------ devices
_devices: dict = {}
_loaded: dict = {}


def _device_hal(uri: str, target: str):
    """The connection to the device server ``uri`` (one per server and process), refused at the handshake
    when the server implements another target than ``target``."""
    with _lock:
        hal = _devices.get(uri)
        if hal is None:
            hal = _devices[uri] = connect(uri, expect_target=target)
        return hal


class DeviceCall(torch.nn.Module):
    """Runs one device subgraph: picks (or compiles) the program whose bounds hold the call's sizes,
    runs it on the device and returns torch tensors of the dtypes torch expects."""

    def __init__(self, name: str, sub: torch.fx.GraphModule, args: list, constants: dict, first: Subgraph,
                 opts: Options, cache: ProgramCache):
        super().__init__()
        self.name, self.sub, self.opts, self.cache = name, sub, opts, cache
        self._args, self._constants = args, constants
        self.variants: list = []          # [(Subgraph, CompiledModel)]
        self._device_runtime = None       # the runtime of the variant last loaded on a `device` server
        #: argument index -> (tensor, version) of each weight compiled in; dynamo guards neither a
        #: weight's identity nor its values, so a call passing another tensor, or this one changed in
        #: place, recompiles with the call's weights (:meth:`_check_weights`)
        self._weights = {i: (constants[a][1], _version(constants[a][1])) for i, a in enumerate(args) if a in constants}
        self.report = SubgraphReport(name, first.ops, first.bounds)
        self._add_variant(first)

    def _add_variant(self, sg: Subgraph):
        parts = {"kind": "torch.compile subgraph", "graph": fingerprint(self.sub, sg),
                 "target": get_target(self.opts.target).fingerprint(), "weights": self.opts.weights,
                 "torch": torch.__version__}

        def build():
            STATS.compiles += 1
            return dlavm_compile(sg.module, target=self.opts.target, weights=self.opts.weights,
                                 name=f"torch_compile_{self.name}")

        t0 = time.perf_counter()
        cm, how = self.cache.get(parts, build)
        STATS.program_seconds += time.perf_counter() - t0
        if how == "hit":
            STATS.cache_hits += 1
        placement = _placement(cm)
        if not any(where == "device" for _op, where in placement):
            host = sorted({op for op, _ in placement})
            raise HostOnly(f"the compiled program runs all of it on the host ({', '.join(host) or 'nothing'}): "
                           f"torch eager runs it without a device round trip")
        self.report.how = how
        self.report.bounds = sg.bounds
        self.report.placement = placement
        self.variants.append((sg, cm))
        log.info("dlavm: %s %s (%d ops, bounds %s)", "loaded" if how == "hit" else "compiled", self.name,
                 len(sg.ops), sg.bounds or "static")
        return sg, cm

    def _variant(self, args):
        for sg, cm in self.variants:
            vals = {v.name: v.value(args) for v in sg.sizes}
            if all(v.lo <= vals[v.name] <= v.hi for v in sg.sizes):
                return sg, cm
        sg = self.variants[-1][0]
        vals = {v.name: v.value(args) for v in sg.sizes}
        low = [v for v in sg.sizes if vals[v.name] < v.lo]
        if low:
            return None, f"{low[0].name}={vals[low[0].name]} is below its lower bound {low[0].lo}"
        past = [v for v in sg.sizes if vals[v.name] > v.hi]
        bounds = {v.name: (pick_bound(vals[v.name], self.opts.dim_bound) if vals[v.name] > v.hi else v.hi)
                  for v in sg.sizes}
        reason = (f"{self.name}: {', '.join(f'{v.name}={vals[v.name]}' for v in past)} is past the bound "
                  f"{', '.join(str(v.hi) for v in past)}: recompiling for "
                  f"{', '.join(f'{v.name} <= {bounds[v.name]}' for v in past)}")
        log.info("dlavm: %s", reason)
        STATS.recompiles.append(reason)
        try:
            new = import_subgraph(self.sub, self._args, self._constants, self.opts.dim_bound, bounds)
            return self._add_variant(new)
        except (ImportRefused, CompileError, ValueError) as e:
            return None, f"recompiling for larger bounds failed: {one_line(e)}"

    def _check_weights(self, args) -> None:
        """Recompile with the call's weights when one is not the tensor compiled in, or was changed in
        place since (its version counter moved): a program never runs with stale weights."""
        changed = [i for i, (t, version) in self._weights.items() if args[i] is not t or _version(args[i]) != version]
        if not changed:
            return
        names = [self._constants[self._args[i]][0] for i in changed]
        reason = (f"{self.name}: weight {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                  + " changed since it was compiled in: recompiling with the new values")
        log.info("dlavm: %s", reason)
        STATS.recompiles.append(reason)
        self._constants = {**self._constants, **{self._args[i]: (self._constants[self._args[i]][0], args[i])
                                                 for i in self._weights}}
        self._weights = {i: (args[i], _version(args[i])) for i in self._weights}
        bounds = {v.name: v.hi for v in self.variants[-1][0].sizes}
        self.variants = []
        self._add_variant(import_subgraph(self.sub, self._args, self._constants, self.opts.dim_bound, bounds))

    def forward(self, *args):
        self._check_weights(args)
        sg, cm = self._variant(args)
        if sg is None:
            log.info("dlavm: %s runs in eager for this call: %s", self.name, cm)
            STATS.eager_calls += 1
            return self.sub(*args)
        inputs = [args[i].detach().cpu().contiguous().numpy() for i in sg.tensor_args]
        t0 = time.perf_counter()
        if self.opts.device is None:
            outs = cm.run(*inputs)
        else:
            hal = _device_hal(self.opts.device, cm.manifest.target.name)
            with _lock:
                if _loaded.get(self.opts.device) is not cm:   # another program's weights are on it: reload
                    _loaded[self.opts.device] = cm
                    self._device_runtime = cm.runtime(hal)
                outs = self._device_runtime.run(cm.entries[0], *inputs)
        STATS.device_seconds += time.perf_counter() - t0
        rt = cm.runtime() if self.opts.device is None else self._device_runtime
        STATS.host_kernel_seconds += sum(step[-1] for step in rt.host_log)
        STATS.device_calls += 1
        return tuple(_torch_tensor(o, dt) for o, dt in zip(outs, sg.out_dtypes))


def _torch_tensor(o, dtype) -> torch.Tensor:
    """A runtime output as a torch tensor of ``dtype``: a 0-d result stays 0-d (``np.ascontiguousarray``
    would make it 1-d), and an array numpy calls contiguous although a size-1 axis has a negative
    stride (a reversed argsort), which ``torch.from_numpy`` refuses, is copied first."""
    a = np.asarray(o)
    if not a.flags.c_contiguous or any(s < 0 for s in a.strides):
        a = a.copy(order="C")
    return torch.from_numpy(a).to(dtype)


def _version(t: torch.Tensor) -> int | None:
    """The version counter of ``t`` (moved by each in-place change); None for an inference tensor,
    which has none (its identity is checked alone)."""
    return None if t.is_inference() else t._version


def _placement(cm) -> list:
    """(op, where) of every op of the compiled program (transfers left out): from its compile report,
    or for a program loaded from the cache, from its manifest (each host step, each device stream)."""
    from ..artifact import HostStep, StreamStep
    from ..backend.report import op_rows
    if cm.build is not None:
        return [(op, where) for _entry, op, where, *_ in op_rows(cm.manifest, cm.build) if "->" not in where]
    return [(s.op, "host") if isinstance(s, HostStep) else (f"stream {s.stream}", "device")
            for e in cm.manifest.entries.values() for s in e.steps if isinstance(s, (HostStep, StreamStep))]


class HostOnly(Exception):
    """A compiled subgraph runs nothing on the device: torch eager runs it faster than a round trip."""


# ------------------------------------------------------------------ the backend
def _constants_of(gm: torch.fx.GraphModule, example_inputs) -> dict:
    """index -> (weight name, tensor) of dynamo's graph inputs that are the model's weights."""
    out, taken = {}, set()
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, (ph, ex) in enumerate(zip(phs, example_inputs)):
        if not isinstance(ex, torch.Tensor) or getattr(ex, "fake_mode", None) is not None:
            continue
        name = source_name(getattr(ph.meta.get("grapharg"), "source", None), ph.name)
        if isinstance(ex, torch.nn.Parameter) or "._parameters[" in name or "._buffers[" in name:
            w = weight_name(name)
            while w in taken:
                w += "_"
            taken.add(w)
            out[i] = (w, ex)
    return out


def _compile_graph(agm: torch.fx.GraphModule, fake_inputs, *, constants: dict, opts: Options, index: int):
    """AOTAutograd's inference compiler: partition ``agm``, compile its device subgraphs (outside the
    fake-tensor mode AOTAutograd runs it in: the weights are real tensors). A buffer the graph changes
    (``self.count.add_(1)``) is a runtime input, not a weight compiled in."""
    from torch._guards import TracingContext
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    meta = getattr(TracingContext.try_get(), "fw_metadata", None)
    if meta is not None:
        constants = {i: c for i, c in constants.items() if not (i < len(meta.input_info)
                                                                 and meta.input_info[i].mutates_data)}
    t0 = time.perf_counter()
    try:
        with unset_fake_temporarily():
            return _partition_and_compile(agm, fake_inputs, constants, opts, index)
    finally:
        STATS.partition_seconds += time.perf_counter() - t0


def _partition_and_compile(agm, fake_inputs, constants: dict, opts: Options, index: int):
    from functorch.compile import make_boxed_func
    from torch.fx.passes.utils.fuser_utils import erase_nodes, fuse_as_graphmodule, insert_subgm
    report = GraphReport(index, aten=[str(n.target) for n in agm.graph.nodes if n.op == "call_function"])
    phs = [n for n in agm.graph.nodes if n.op == "placeholder"]
    const_nodes = {}
    if constants and len(phs) == len(fake_inputs):
        const_nodes = {phs[i]: c for i, c in constants.items() if i < len(phs)}
    cache = opts.program_cache()
    refused: dict = {}
    k = 0
    while True:
        proposals = part.propose(agm, refused)
        if not proposals:
            break
        nodes = proposals[0]
        name = f"fused_{k}"
        sub, ins, outs = fuse_as_graphmodule(agm, nodes, name, always_return_tuple=True)
        try:
            sg = import_subgraph(sub, list(ins), const_nodes, opts.dim_bound)
        except ImportRefused as e:
            for n in ([e.node] if e.node else [n.name for n in nodes]):
                refused[n] = e.reason
            continue
        try:
            call = DeviceCall(name, sub, list(ins), const_nodes, sg, opts, cache)
        except HostOnly as e:
            why = str(e)
        except Exception as e:  # noqa: BLE001 -- the compiler's refusals (plan, lowering) fall back
            if not (is_project_error(e) or isinstance(e, (ValueError, NotImplementedError))):
                raise
            why = f"the compiler refused the subgraph: {one_line(e)}"
        else:
            insert_subgm(agm, sub, ins, outs, nodes[-1])
            erase_nodes(agm, nodes)
            setattr(agm, name, call)
            report.subgraphs.append(call.report)
            k += 1
            continue
        for n in nodes:      # the subgraph runs in eager; its nodes are not proposed again
            refused[n.name] = why
        report.subgraphs.append(SubgraphReport(name, sg.ops, sg.bounds, "eager", reason=why))
    torch.fx.passes.tools_common.stable_topological_sort(agm)
    agm.graph.lint()
    agm.recompile()
    report.fallbacks = part.fallbacks(agm, refused)
    report.code = agm.code
    for f in report.fallbacks:
        STATS.fallback_ops[f.op] += 1
    _report(report)
    if opts.fallback == "error" and report.fallbacks:
        f = report.fallbacks[0]
        raise BackendError(f"{f.op} at {f.source} does not run on the device: {f.reason}"
                           + (f" ({len(report.fallbacks) - 1} more such node(s))" if len(report.fallbacks) > 1 else ""))
    return make_boxed_func(agm.forward)


def dlavm_backend(gm: torch.fx.GraphModule, example_inputs, options=None, **_ignored):
    """The ``dlavm`` backend: ``torch.compile(model, backend="dlavm", options={...})`` (:data:`DEFAULTS`)."""
    opts = Options.parse(options)
    with _lock:
        STATS.graphs += 1
        index = STATS.graphs
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs):
        why = ("gradients are on: the dlavm backend compiles inference graphs; call the model under "
               "torch.no_grad() or torch.inference_mode()")
        log.info("dlavm: graph %d runs in eager: %s", index, why)
        _report(GraphReport(index, eager_reason=why, code=gm.code))
        if opts.fallback == "error":
            raise BackendError(why)
        return gm.forward
    from torch._dynamo.backends.common import aot_autograd
    constants = _constants_of(gm, example_inputs)
    compiler = functools.partial(_compile_graph, constants=constants, opts=opts, index=index)
    return aot_autograd(fw_compiler=compiler, inference_compiler=compiler,
                        decompositions=decomposition_table())(gm, example_inputs)


__all__ = ["dlavm_backend", "Options", "BackendError", "DEFAULTS", "STATS", "Stats", "reset_stats", "DeviceCall",
           "GraphReport", "SubgraphReport", "collect_reports"]
