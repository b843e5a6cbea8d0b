"""The pipeline graph (doc/devproc.md, "pipeline.json"): inputs, constants, nodes in trace order, outputs.

One reader of ``pipeline.json``: :func:`graph_from_json` checks everything a runtime relies on (every
value defined once before it is used, every op known with its operands and attributes, every type
valid and equal to what the op's type rule gives), so that a runtime never meets an inconsistent graph.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import DevprocError
from .types import Type, type_from_json

FORMAT = "devproc-pipeline"
VERSION = 1
_VALUE_ID = re.compile(r"v[0-9]{1,9}\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
#: a file named in pipeline.json: relative, inside the folder, plain components
_REL_FILE = re.compile(r"(consts|models)/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
MAX_NODES = 100_000


@dataclass
class Input:
    name: str
    value: str
    type: Type


@dataclass
class Const:
    """A constant: ``payload`` is the object while compiling (a tokenizer, a model, an array) and the
    record of pipeline.json (``file``/``sha256``/``shape``/``artifact``) once saved."""
    name: str
    value: str
    type: Type
    payload: object = None
    record: dict = field(default_factory=dict)


@dataclass
class Node:
    op: str
    inputs: list
    attrs: dict
    outputs: list
    types: list
    loc: str = ""


@dataclass
class Graph:
    name: str
    inputs: list = field(default_factory=list)
    consts: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    #: what the kernel returned: a value id or a (nested) tuple of them
    result: object = None

    def types(self) -> dict:
        out = {i.value: i.type for i in self.inputs}
        out.update({c.value: c.type for c in self.consts})
        for n in self.nodes:
            out.update(zip(n.outputs, n.types))
        return out

    def to_json(self) -> dict:
        """The pipeline.json object; constants give their saved ``record`` fields."""
        return {"format": FORMAT, "version": VERSION, "name": self.name,
                "inputs": [{"name": i.name, "value": i.value, "type": i.type.to_json()} for i in self.inputs],
                "consts": [{"name": c.name, "value": c.value, "type": c.type.to_json(), **c.record}
                           for c in self.consts],
                "nodes": [{"op": n.op, "inputs": list(n.inputs), "attrs": n.attrs, "outputs": list(n.outputs),
                           "types": [t.to_json() for t in n.types], "loc": n.loc} for n in self.nodes],
                "outputs": list(self.outputs), "result": _result_json(self.result)}


def _result_json(r):
    return list(map(_result_json, r)) if isinstance(r, (tuple, list)) else r


def _need(cond: bool, where: str, rule: str) -> None:
    if not cond:
        raise DevprocError(f"{where}: {rule}")


def _fields(obj, where: str, required: set, optional: set = frozenset()) -> None:
    _need(isinstance(obj, dict), where, "must be a JSON object")
    missing = required - set(obj)
    _need(not missing, where, f"missing field(s) {', '.join(sorted(missing))}")
    extra = set(obj) - required - set(optional)
    _need(not extra, where, f"unknown field(s) {', '.join(sorted(extra))}")


def _json_attr_ok(v, depth: int = 0) -> bool:
    if v is None or isinstance(v, (bool, int, str)):
        return not isinstance(v, int) or isinstance(v, bool) or -2**63 <= v < 2**63
    if isinstance(v, float):
        return v == v and abs(v) != float("inf")
    if isinstance(v, list) and depth < 2:
        return len(v) <= 4096 and all(_json_attr_ok(x, depth + 1) for x in v)
    return False


CONST_RECORDS = {"tokenizer": {"file", "sha256"}, "tensor": {"file", "sha256", "shape"}, "model": {"artifact"}}


def graph_from_json(obj, where: str = "pipeline.json") -> Graph:
    """The graph of a pipeline.json object, checked whole (module docstring); DevprocError naming the
    field at fault otherwise."""
    from .ops import OPS, check_node
    _fields(obj, where, {"format", "version", "name", "inputs", "consts", "nodes", "outputs"}, {"result"})
    _need(obj["format"] == FORMAT, f"{where}: format", f"must be {FORMAT!r}, got {obj['format']!r}")
    _need(obj["version"] == VERSION, f"{where}: version", f"version {obj['version']!r} is not {VERSION} "
          "(the one this DevProc reads)")
    _need(isinstance(obj["name"], str) and bool(_NAME.match(obj["name"])), f"{where}: name",
          "must be an identifier of at most 64 characters")
    g = Graph(obj["name"])
    defined: dict = {}
    names: set = set()

    def define(vid, t, at):
        _need(isinstance(vid, str) and bool(_VALUE_ID.match(vid)), at, f"value id {vid!r} is not of the form v<N>")
        _need(vid not in defined, at, f"value {vid} is defined twice")
        defined[vid] = t

    for section in ("inputs", "consts", "nodes", "outputs"):
        _need(isinstance(obj[section], list), f"{where}: {section}", "must be a list")
    _need(len(obj["nodes"]) <= MAX_NODES, f"{where}: nodes", f"more than {MAX_NODES} nodes")
    for k, rec in enumerate(obj["inputs"]):
        at = f"{where}: inputs[{k}]"
        _fields(rec, at, {"name", "value", "type"})
        _need(isinstance(rec["name"], str) and bool(_NAME.match(rec["name"])) and rec["name"] not in names, at,
              f"name {rec['name']!r} must be a new identifier")
        names.add(rec["name"])
        t = type_from_json(rec["type"], at)
        _need(t.kind in ("string", "tensor", "image"), at, f"an input is a string, tensor or image, not {t.kind}")
        define(rec["value"], t, at)
        g.inputs.append(Input(rec["name"], rec["value"], t))
    for k, rec in enumerate(obj["consts"]):
        at = f"{where}: consts[{k}]"
        _need(isinstance(rec, dict) and isinstance(rec.get("type"), dict), at, "must be an object with a type")
        t = type_from_json(rec["type"], at)
        _need(t.kind in CONST_RECORDS, at, f"a constant is a tokenizer, tensor or model, not {t.kind}")
        _fields(rec, at, {"name", "value", "type"} | CONST_RECORDS[t.kind])
        _need(isinstance(rec["name"], str) and bool(_NAME.match(rec["name"])) and rec["name"] not in names, at,
              f"name {rec['name']!r} must be a new identifier")
        names.add(rec["name"])
        key = "artifact" if t.kind == "model" else "file"
        _need(isinstance(rec[key], str) and bool(_REL_FILE.match(rec[key])), f"{at}: {key}",
              f"{rec[key]!r} must be a plain path under consts/ or models/")
        if "sha256" in rec:
            _need(isinstance(rec["sha256"], str) and bool(re.fullmatch(r"[0-9a-f]{64}", rec["sha256"])),
                  f"{at}: sha256", "must be 64 lowercase hex digits")
        if "shape" in rec:
            shape = rec["shape"]
            _need(isinstance(shape, list) and len(shape) == t.rank and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape),
                f"{at}: shape", f"must be {t.rank} integers in [0, 2**31)")
        define(rec["value"], t, at)
        g.consts.append(Const(rec["name"], rec["value"], t, None,
                              {f: rec[f] for f in CONST_RECORDS[t.kind]}))
    for k, rec in enumerate(obj["nodes"]):
        at = f"{where}: nodes[{k}]"
        _fields(rec, at, {"op", "inputs", "attrs", "outputs", "types", "loc"})
        _need(isinstance(rec["op"], str) and rec["op"] in OPS, f"{at}: op", f"unknown op {rec['op']!r}")
        _need(isinstance(rec["loc"], str) and len(rec["loc"]) <= 300, f"{at}: loc", "must be a short string")
        _need(isinstance(rec["inputs"], list) and all(isinstance(v, str) and v in defined for v in rec["inputs"]),
              f"{at}: inputs", "must name values defined before the node")
        _need(isinstance(rec["attrs"], dict) and all(isinstance(a, str) and _json_attr_ok(v)
                                                      for a, v in rec["attrs"].items()),
              f"{at}: attrs", "must be an object of JSON numbers, strings, booleans, null and lists")
        _need(isinstance(rec["outputs"], list) and isinstance(rec["types"], list)
              and len(rec["outputs"]) == len(rec["types"]) and len(rec["outputs"]) <= 64,
              f"{at}: outputs", "outputs and types must be lists of one length")
        types = [type_from_json(t, f"{at}: types[{j}]") for j, t in enumerate(rec["types"])]
        node = Node(rec["op"], list(rec["inputs"]), dict(rec["attrs"]), list(rec["outputs"]), types, rec["loc"])
        check_node(node, [defined[v] for v in node.inputs], at)
        for vid, t in zip(node.outputs, types):
            define(vid, t, at)
        g.nodes.append(node)
    _need(all(isinstance(v, str) and v in defined for v in obj["outputs"]) and obj["outputs"],
          f"{where}: outputs", "must name at least one defined value")
    g.outputs = list(obj["outputs"])
    result = obj.get("result", g.outputs[0] if len(g.outputs) == 1 else list(g.outputs))
    g.result = _check_result(result, set(g.outputs), f"{where}: result")
    return g


def _check_result(r, outputs: set, at: str, depth: int = 0):
    if isinstance(r, list):
        _need(depth < 4 and len(r) <= 64, at, "nests too deep")
        return tuple(_check_result(x, outputs, at, depth + 1) for x in r)
    _need(isinstance(r, str) and r in outputs, at, f"{r!r} is not one of the outputs")
    return r
