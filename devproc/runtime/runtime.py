"""Runs a saved pipeline (doc/devproc.md): host ops by the op registry's numpy kernels, each model by
``dlavm.runtime`` on its device. numpy only: no torch, no compiler."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from dlavm.runtime.generate import Generator
from dlavm.runtime.runtime import RunError, Runtime as ModelRuntime

from ..lang.api import tokenizer_from_bytes
from ..lang.errors import DevprocError
from ..lang.ops import OPS, run_host_op
from ..lang.types import ImageType, StringType, TensorType
from .library import SavedLibrary


@dataclass
class KVState:
    """A KVCache value while the pipeline runs: its model, how many tokens it holds, and the load count of
    its model on its device when it was last used (a later load means another model overwrote it)."""
    model: str | None = None
    past: int = 0
    epoch: int = -1


class _Device:
    """One device and which model's weights it holds."""

    def __init__(self, hal):
        self.hal = hal
        self.loaded: str | None = None
        self.loads = 0


class _EmbeddingFront:
    """What :class:`~dlavm.runtime.generate.Generator` runs for an LLM whose input is embeddings: the first call
    (the prompt) runs the prompt's embeddings, every later call the rows of ``table`` at the new tokens, so
    that the generation loop is the one of ``dlavm generate``."""

    def __init__(self, rt: ModelRuntime, prompt: np.ndarray, table: np.ndarray):
        self._rt, self._prompt, self._table = rt, prompt, table
        self.manifest = rt.manifest

    def run(self, entry, ids, dims=None):
        if self._prompt is not None:
            x, self._prompt = self._prompt, None
        else:
            ids = np.asarray(ids, dtype=np.int64)
            if ((ids < 0) | (ids >= self._table.shape[0])).any():
                raise DevprocError(f"decode_loop: token {int(ids.max())} has no row in the embedding table of "
                                   f"{self._table.shape[0]} rows")
            x = self._table[ids]
        return self._rt.run(entry, x, dims=dims)

    def __getattr__(self, name):
        return getattr(self._rt, name)


class Runtime:
    """A saved pipeline ready to run.

    ``device``: None (each model on its own in-process simulator) or a ``sim://HOST:PORT`` URI that every
    model shares; ``devices``: ``{model name: URI}`` for some models. :attr:`timings` has, after each
    :meth:`run`, the seconds of host work per op and the device cycles per model."""

    def __init__(self, lib: SavedLibrary, device: str | None = None, devices: dict | None = None,
                 timeout: float = 60.0):
        if not isinstance(lib, SavedLibrary):
            raise DevprocError(f"Runtime needs a saved pipeline (devproc.load(dir)), got {type(lib).__name__}")
        self.lib, self.graph = lib, lib.graph
        self.tokenizers = {n: tokenizer_from_bytes(b, f"{n}.json") for n, b in lib.tokenizers.items()}
        unknown = set(devices or {}) - set(lib.models)
        if unknown:
            raise DevprocError(f"devices: no model named {sorted(unknown)[0]!r} (models: {', '.join(lib.models)})")
        by_uri: dict = {}
        self._device_of: dict = {}
        self.models: dict = {}
        for name, art in lib.models.items():
            uri = (devices or {}).get(name, device)
            if uri is None:
                from dlavm.sim_device import open_simulator
                dev = _Device(open_simulator(art.manifest))
            else:
                if uri not in by_uri:
                    from dlavm.devlink.uri import connect
                    by_uri[uri] = _Device(connect(uri, art.manifest.target.name, timeout))
                dev = by_uri[uri]
            try:
                self.models[name] = ModelRuntime(art.manifest, art.read, dev.hal)
            except RunError as e:
                raise DevprocError(f"model '{name}': {e}") from None
            dev.loaded, dev.loads = name, dev.loads + 1
            self._device_of[name] = dev
        self.timings: dict = {}
        #: the nodes of the last run: op, kernel line, model, start and duration (wall seconds), device cycles
        self.events: list = []

    @property
    def inputs(self) -> list:
        return self.lib.inputs

    # ------------------------------------------------------------------ running

    def run(self, *inputs, **named):
        """The pipeline's result for ``inputs`` (in input order, or by name): a value or a tuple."""
        g = self.graph
        if len(inputs) > len(g.inputs):
            raise DevprocError(f"pipeline '{g.name}' takes {len(g.inputs)} input(s), got {len(inputs)}")
        given = dict(zip((i.name for i in g.inputs), inputs))
        for k, v in named.items():
            if k in given or k not in {i.name for i in g.inputs}:
                raise DevprocError(f"pipeline '{g.name}': input {k!r} is unknown or given twice")
            given[k] = v
        env: dict = {}
        for i in g.inputs:
            if i.name not in given:
                raise DevprocError(f"pipeline '{g.name}': input '{i.name}' ({i.type!r}) is missing")
            env[i.value] = _check_input(i.name, i.type, given[i.name])
        for c in g.consts:
            if c.type.kind == "tokenizer":
                env[c.value] = self.tokenizers[c.name]
            elif c.type.kind == "tensor":
                env[c.value] = self.lib.arrays[c.name]
            else:
                env[c.value] = c.name
        self.timings = {"host_s": {}, "device_s": {}, "device_cycles": {}}
        self.events = []
        start = time.perf_counter()
        for node in g.nodes:
            args = [env[v] for v in node.inputs]
            t0 = time.perf_counter()
            cycles0 = sum(self.timings["device_cycles"].values())
            try:
                outs = self._device_op(node, args) if OPS[node.op].device else run_host_op(node, args)
            except DevprocError as e:
                raise DevprocError(f"{node.loc}: {node.op}: {e}") from None
            except (RunError, ValueError) as e:
                raise DevprocError(f"{node.loc}: {node.op}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
                    from None
            t1 = time.perf_counter()
            bucket = "device_s" if OPS[node.op].device else "host_s"
            self.timings[bucket][node.op] = self.timings[bucket].get(node.op, 0.0) + t1 - t0
            model = args[0] if OPS[node.op].device and node.op != "kv_cache" else None
            self.events.append({"op": node.op, "loc": node.loc, "model": model, "start_s": t0 - start,
                                "dur_s": t1 - t0,
                                "device_cycles": sum(self.timings["device_cycles"].values()) - cycles0})
            env.update(zip(node.outputs, outs))
        return _structure(g.result, env)

    def trace(self) -> dict:
        """The last :meth:`run` as a Perfetto / Chrome trace (wall time): one span per node, host ops on the
        ``host`` track, each model's calls on its own track with their simulated device cycles."""
        tracks = ["host", *self.models]
        events = [{"ph": "M", "pid": 0, "name": "process_name", "args": {"name": f"pipeline {self.graph.name}"}}]
        events += [{"ph": "M", "pid": 0, "tid": k, "name": "thread_name",
                    "args": {"name": "host ops" if t == "host" else f"model {t} (simulator wall time)"}}
                   for k, t in enumerate(tracks)]
        for e in self.events:
            events.append({"ph": "X", "pid": 0, "tid": tracks.index(e["model"] or "host"), "name": e["op"],
                           "ts": e["start_s"] * 1e6, "dur": max(e["dur_s"] * 1e6, 0.001),
                           "args": {"loc": e["loc"], **({"device_cycles": e["device_cycles"]} if e["model"] else {})}})
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def _model(self, name: str) -> ModelRuntime:
        """The runtime of model ``name`` with its weights on its device (loaded again after another model)."""
        dev, rt = self._device_of[name], self.models[name]
        if dev.loaded != name:
            rt.load_weights()
            dev.loaded, dev.loads = name, dev.loads + 1
        return rt

    def _count(self, name: str, cycles: int) -> None:
        c = self.timings["device_cycles"]
        c[name] = c.get(name, 0) + int(cycles)

    def _device_op(self, node, args) -> list:
        if node.op == "kv_cache":
            return [KVState()]
        name = args[0]
        if node.op == "call":
            rt = self._model(name)
            entry = "forward"
            sig = rt.manifest.entries[entry].inputs
            if len(sig) != len(args) - 1:
                raise DevprocError(f"model '{name}' takes {len(sig)} input(s), got {len(args) - 1}")
            xs = [_as_model_input(x, inp.dtype, k) for k, (x, inp) in enumerate(zip(args[1:], sig))]
            outs = rt.run(entry, *xs)
            self._count(name, rt.last_cycles)
            if len(outs) != len(node.types):
                raise DevprocError(f"model '{name}' gave {len(outs)} output(s), the pipeline expects {len(node.types)}")
            return [np.require(np.asarray(o).astype(t.dtype.numpy), requirements="C") for o, t in zip(outs, node.types)]
        cache: KVState = args[2]
        dev = self._device_of[name]
        if cache.model not in (None, name):
            raise DevprocError(f"this KV cache belongs to model '{cache.model}', not '{name}'")
        if cache.model is not None and cache.epoch != dev.loads:
            raise DevprocError(f"the KV cache of '{name}' was overwritten by model '{dev.loaded}' on the same "
                               "device since its last use")
        rt = self._model(name)
        llm = rt.manifest.llm
        x = args[1]
        if node.op in ("prefill", "decode"):
            n = x.shape[1] if x.ndim >= 2 else 0
            if x.shape[0] != 1 or n == 0:
                raise DevprocError(f"{node.op} takes one sequence of at least one token ([1, n]), got shape "
                                   f"{list(x.shape)}")
            ctx = cache.past + n
            if ctx > llm.max_ctx:
                raise DevprocError(f"{cache.past} cached + {n} new tokens = {ctx} exceed the model's maximum "
                                   f"context of {llm.max_ctx} tokens")
            feed = x.astype(np.float32) if x.dtype.kind == "f" else _ids(x, llm.vocab)
            (out,) = rt.run(llm.entries["logits"], feed, dims={llm.ctx_dim: ctx})
            self._count(name, rt.last_cycles)
            cache.model, cache.past, cache.epoch = name, ctx, dev.loads
            return [np.asarray(out[0, -1], dtype=np.float32).reshape(1, -1)]
        # decode_loop: dlavm generate's loop (dlavm.runtime.generate.Generator) on a new cache
        if cache.past:
            raise DevprocError("decode_loop starts a generation: give it a new devproc.KVCache(), not one that "
                               f"holds {cache.past} tokens")
        a = node.attrs
        if x.shape[0] != 1 or x.ndim < 2 or x.shape[1] == 0:
            raise DevprocError(f"decode_loop takes one prompt of at least one token ([1, n]), got shape "
                               f"{list(x.shape)}")
        if x.dtype.kind == "f":
            front = _EmbeddingFront(rt, x.astype(np.float32), np.asarray(args[3], dtype=np.float32))
            prompt = [0] * x.shape[1]
        else:
            front, prompt = rt, [int(t) for t in _ids(x, llm.vocab).reshape(-1)]
        gen = Generator(front)
        eos = a["eos_id"]
        toks = list(gen.generate(prompt, a["max_new_tokens"], temperature=float(a["temperature"]), top_k=a["top_k"],
                                 top_p=float(a["top_p"]), seed=a["seed"], eos_id=eos))
        for s in gen.steps:
            self._count(name, s["cycles"])
        cache.model, cache.past, cache.epoch = name, gen.past, dev.loads
        self.last_stop_reason = gen.stop_reason
        return [np.asarray(toks, dtype=np.int32).reshape(1, -1)]


def _ids(x: np.ndarray, vocab: int) -> np.ndarray:
    ids = x.astype(np.int64)
    bad = (ids < 0) | (ids >= vocab)
    if bad.any():
        raise DevprocError(f"token id {int(ids[bad].reshape(-1)[0])} is outside the model's vocabulary [0, {vocab})")
    return ids


def _as_model_input(x: np.ndarray, dtype: str, k: int) -> np.ndarray:
    want = np.dtype(dtype)
    if (x.dtype.kind == "f") != (want.kind == "f"):
        raise DevprocError(f"argument {k}: the model takes {want.name}, got {x.dtype.name}")
    return np.require(x.astype(want), requirements="C")


def _check_input(name: str, t, v):
    if isinstance(t, StringType):
        if not isinstance(v, str):
            raise DevprocError(f"input '{name}' must be a str, got {type(v).__name__}")
        return v
    if not isinstance(v, np.ndarray):
        raise DevprocError(f"input '{name}' must be a numpy array ({t!r}), got {type(v).__name__}")
    if isinstance(t, ImageType):
        if v.dtype != np.uint8 or v.ndim != 3 or v.shape[2] != 3:
            raise DevprocError(f"input '{name}' must be an image: uint8 [H, W, 3], got {v.dtype} {list(v.shape)}")
        return v
    assert isinstance(t, TensorType)
    if v.dtype != t.dtype.numpy or v.ndim != t.rank:
        raise DevprocError(f"input '{name}' must be {t!r}, got {v.dtype} of rank {v.ndim}")
    return v


def _structure(r, env):
    return tuple(_structure(x, env) for x in r) if isinstance(r, tuple) else env[r]
