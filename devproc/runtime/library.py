"""A saved pipeline, loaded and verified whole (doc/devproc.md, "AOT: the saved pipeline")."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from dlavm.artifact import ArtifactError, read_inside
from dlavm.runtime.loader import load_verified

from ..lang.errors import DevprocError
from ..lang.graph import Graph, graph_from_json

PIPELINE = "pipeline.json"
MAX_PIPELINE_BYTES = 16 << 20
MAX_CONST_BYTES = 1 << 30


@dataclass
class SavedLibrary:
    """A verified saved pipeline: its graph, its models' verified artifacts (by constant name), its tokenizer
    bytes and constant arrays (by constant name)."""
    directory: str
    graph: Graph
    models: dict = field(default_factory=dict)
    tokenizers: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    @property
    def inputs(self) -> list:
        return [(i.name, i.type) for i in self.graph.inputs]


def _read(d: str, rel: str, limit: int) -> bytes:
    try:
        return read_inside(d, rel, limit)
    except ArtifactError as e:
        raise DevprocError(str(e).replace("artifact ", "pipeline ", 1)) from None


def load(directory) -> SavedLibrary:
    """The saved pipeline at ``directory`` after every check (pipeline.json's schema and graph, each file's
    size and sha256, each model artifact's verification); DevprocError naming the file and field."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise DevprocError(f"pipeline {d}: not a folder")
    text = _read(d, PIPELINE, MAX_PIPELINE_BYTES)
    where = f"pipeline {d}: {PIPELINE}"
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DevprocError(f"{where}: not valid JSON ({e})") from None
    graph = graph_from_json(obj, where)
    lib = SavedLibrary(d, graph)
    for c in graph.consts:
        at = f"{where}: const '{c.name}'"
        if c.type.kind == "model":
            try:
                art = load_verified(os.path.join(d, c.record["artifact"]))
            except ArtifactError as e:
                raise DevprocError(f"{at}: {e}") from None
            if c.type.use == "llm" and art.manifest.llm is None:
                raise DevprocError(f"{at}: the model is used for generation but its artifact has no LLM entries")
            if c.type.use == "forward" and "forward" not in art.manifest.entries:
                raise DevprocError(f"{at}: the model's artifact has no 'forward' entry")
            lib.models[c.name] = art
            continue
        raw = _read(d, c.record["file"], MAX_CONST_BYTES)
        if hashlib.sha256(raw).hexdigest() != c.record["sha256"]:
            raise DevprocError(f"{at}: {c.record['file']} does not match its sha256")
        if c.type.kind == "tokenizer":
            lib.tokenizers[c.name] = raw
        else:
            dt = np.dtype(c.type.dtype.name).newbyteorder("<")
            shape = tuple(c.record["shape"])
            if len(raw) != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
                raise DevprocError(f"{at}: {c.record['file']} holds {len(raw)} bytes, not a {dt.name} array of "
                                   f"shape {list(shape)}")
            lib.arrays[c.name] = np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return lib
