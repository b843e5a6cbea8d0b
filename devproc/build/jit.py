"""The JIT (doc/devproc.md, "JIT"): a kernel called with values is traced, compiled once, cached on disk
and run from the cache afterwards."""
from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import threading
import time

from dlavm.cache import cache_dir, source_fingerprint
from dlavm.program_cache import ProgramCache

from ..lang.errors import DevprocError
from ..lang.trace import Kernel, trace
from ..runtime.library import load
from ..runtime.runtime import Runtime
from .compile import DEFAULT_TARGET, DEFAULT_WEIGHTS, compile_graph, const_key

log = logging.getLogger("devproc.jit")
_OPTIONS = {"target": DEFAULT_TARGET, "weights": DEFAULT_WEIGHTS, "cache_dir": None, "device": None,
            "progress": None}
_lock = threading.Lock()
#: key -> Runtime of a pipeline this process already loaded
_loaded: dict = {}
_STATS = {"calls": 0, "memory": 0, "hit": 0, "miss": 0, "rebuilt": 0}


def set_options(**options) -> dict:
    """Set what the JIT compiles for: ``target``, ``weights``, ``cache_dir`` (a folder, None for dlavm's cache
    folder ``devproc``, False for no disk cache), ``device`` (None: in-process simulators, or a
    ``sim://HOST:PORT``), ``progress`` (say on stderr what a compiling call does; None: when stderr is a
    terminal). Returns the options now in force."""
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise DevprocError(f"set_options: unknown option {sorted(unknown)[0]!r} (options: {', '.join(_OPTIONS)})")
    with _lock:
        _OPTIONS.update(options)
        return dict(_OPTIONS)


def jit_stats(reset: bool = False) -> dict:
    """Counts of JIT calls: ``calls``; ``memory`` (the pipeline was already loaded in this process), ``hit``
    (loaded from the disk cache), ``miss`` (compiled), ``rebuilt`` (a damaged cache entry compiled again)."""
    out = dict(_STATS)
    if reset:
        for k in _STATS:
            _STATS[k] = 0
    return out


def pipeline_key(graph, builder, options: dict) -> tuple[str, dict]:
    """(hex SHA-256, parts) of everything that decides a compiled pipeline (doc/devproc.md, "JIT")."""
    from dlavm import __version__ as dlavm_version
    from dlavm.program_cache import entry_key
    parts = {"graph": _graph_for_key(graph),
             "kernels": {n: hashlib.sha256(k.source.encode()).hexdigest() for n, k in sorted(builder.kernels.items())},
             "consts": {c.name: const_key(c) for c in graph.consts},
             "target": options["target"], "weights": options["weights"], "dlavm": dlavm_version,
             # DevProc's own sources (its compile and save); the compiler's are added by entry_key
             "devproc": source_fingerprint(("devproc",))}
    return entry_key(parts), parts


def _graph_for_key(graph) -> dict:
    obj = graph.to_json()
    for n in obj["nodes"]:
        n.pop("loc")          # a moved line is the same pipeline (its source is in the key anyway)
    return obj


def jit_call(kernel: Kernel, args: tuple, kwargs: dict):
    graph, builder, values = trace(kernel, args, kwargs)
    options = dict(_OPTIONS)
    key, parts = pipeline_key(graph, builder, options)
    _STATS["calls"] += 1
    memo = (key, options["device"], options["cache_dir"])   # a runtime is on its device
    rt = _loaded.get(memo)
    if rt is not None:
        _STATS["memory"] += 1
    else:
        rt = _load_or_compile(graph, builder, options, parts)
        _loaded[memo] = rt
    return rt.run(*values)


def _progress(options: dict, graph):
    """The progress callback of a compile (lines on stderr from its first second), or None."""
    on = options["progress"]
    if on is None:
        on = sys.stderr.isatty()
    if not on:
        return None
    t0 = time.perf_counter()
    print(f"devproc: compiling pipeline '{graph.name}' for {options['target']} ({options['weights']}); later calls "
          "run from the cache", file=sys.stderr, flush=True)

    def say(msg: str) -> None:
        print(f"devproc:   [{time.perf_counter() - t0:5.1f} s] {msg}", file=sys.stderr, flush=True)
    return say


def _load_or_compile(graph, builder, options: dict, parts: dict) -> Runtime:
    folder = options["cache_dir"]
    if folder is False:
        lib = compile_graph(graph, builder, options["target"], options["weights"], _progress(options, graph))
        _STATS["miss"] += 1
        return Runtime(load(lib.save(tempfile.mkdtemp(prefix="devproc-"))), device=options["device"])
    cache = ProgramCache(cache_dir("devproc") if folder is None else folder)
    built = {}

    def build():
        built["lib"] = compile_graph(graph, builder, options["target"], options["weights"],
                                     _progress(options, graph))
        return built["lib"]

    saved, how = cache.get(parts, build, save=lambda lib, d: lib.save(d), load_entry=load)
    _STATS[how] += 1
    if how != "hit":   # the entry just stored (or, if it could not be stored, a private copy)
        final = cache.path(pipeline_key_of(parts))
        try:
            saved = load(final)
        except (DevprocError, OSError):
            saved = load(built["lib"].save(tempfile.mkdtemp(prefix="devproc-")))
    log.info("devproc: pipeline '%s' %s", graph.name, {"hit": "loaded from the cache", "miss": "compiled",
                                                         "rebuilt": "rebuilt (damaged cache entry)"}[how])
    return Runtime(saved, device=options["device"])


def pipeline_key_of(parts: dict) -> str:
    from dlavm.program_cache import entry_key
    return entry_key(parts)
