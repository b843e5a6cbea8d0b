"""``devproc.compile``: a traced pipeline with every model compiled, and its saved form (doc/devproc.md,
"AOT: the saved pipeline")."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..lang.errors import DevprocError
from ..lang.graph import Graph
from ..lang.trace import ConstArray, Kernel, TokenizerHandle, trace
from ..runtime.library import PIPELINE
from .models import TorchModel

DEFAULT_TARGET = "tiny"
DEFAULT_WEIGHTS = "fp16"


class Library:
    """A compiled pipeline in memory: its graph, the compiled model of each model constant and the other
    constants; :meth:`save` writes it (then ``devproc.load`` reads it back)."""

    def __init__(self, graph: Graph, models: dict, target: str, weights: str, sources: dict):
        self.graph, self.models, self.target, self.weights, self.sources = graph, models, target, weights, sources

    def __repr__(self) -> str:
        return f"<devproc Library {self.graph.name}: {len(self.graph.nodes)} nodes, models {list(self.models)}>"

    def save(self, directory) -> Path:
        """Write the pipeline folder; returns its path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "consts").mkdir(exist_ok=True)
        for c in self.graph.consts:
            if c.type.kind == "model":
                rel = f"models/{c.name}"
                cm = self.models[c.name]
                try:
                    cm.save(d / rel)
                except Exception:  # noqa: BLE001 -- a model the C++ driver cannot run: saved for Python only
                    cm.save(d / rel, driver=False)
                c.record = {"artifact": rel}
                continue
            if c.type.kind == "tokenizer":
                data, rel = c.payload.data, f"consts/{c.name}.json"
                c.record = {"file": rel, "sha256": hashlib.sha256(data).hexdigest()}
            else:
                arr = np.ascontiguousarray(c.payload.array)
                data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
                rel = f"consts/{c.name}.bin"
                c.record = {"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "shape": list(arr.shape)}
            (d / rel).write_bytes(data)
        (d / PIPELINE).write_text(json.dumps(self.graph.to_json(), indent=1))
        try:
            from .cpp import generate_cpp
        except ImportError:
            generate_cpp = None
        if generate_cpp is not None:
            (d / "host").mkdir(exist_ok=True)
            try:
                (d / "host" / "pipeline.cc").write_text(generate_cpp(d))
            except DevprocError:
                pass   # a pipeline the C++ program cannot run (build_cpp names why)
        return d


def compile(kernel: Kernel, args: tuple, kwargs: dict | None = None, target: str = DEFAULT_TARGET,  # noqa: A001
            weights: str = DEFAULT_WEIGHTS, on_progress=None) -> Library:
    """Trace ``kernel`` on ``args`` (``devproc.input(name, type)`` for each runtime input, tokenizers and
    models as constants) and compile every model it uses for ``target`` with weights ``weights``."""
    graph, builder, _ = trace(kernel, tuple(args), kwargs)
    return compile_graph(graph, builder, target, weights, on_progress)


def compile_graph(graph: Graph, builder, target: str, weights: str, on_progress=None) -> Library:
    models = {}
    for c in graph.consts:
        if c.type.kind != "model":
            continue
        m: TorchModel = c.payload
        if on_progress:
            on_progress(f"compiling model '{c.name}' ({c.type.use})")
        models[c.name] = m.compile(c.type.use, target, weights)
    sources = {name: k.source for name, k in sorted(builder.kernels.items())}
    return Library(graph, models, target, weights, sources)


def const_key(c) -> dict:
    """What a constant contributes to the JIT key."""
    p = c.payload
    if isinstance(p, TorchModel):
        return {"model": p.key(), "use": c.type.use}
    if isinstance(p, TokenizerHandle):
        return {"tokenizer": p.sha256}
    if isinstance(p, ConstArray):
        a = np.ascontiguousarray(p.array)
        return {"array": hashlib.sha256(a.tobytes()).hexdigest(), "dtype": a.dtype.name, "shape": list(a.shape)}
    raise DevprocError(f"constant {c.name}: {type(p).__name__} cannot be part of a pipeline")

