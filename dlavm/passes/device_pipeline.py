"""The device pipeline: an imported module -> a *device graph* (doc/compiler.md).

``device_pipeline(weights, per_layer)`` returns the passes, in order:

1. ``canonicalize``   identities removed (idempotent after import);
2. ``fold_weights``   weight transforms (GPT-2's transposed Conv1D weights) become weights;
3. ``fold_batchnorm`` per-channel affine ops (eval-mode BatchNorm) folded into the conv2d / linear before them;
4. ``legalize``       ATen-level ops -> ``dev.*`` by the pattern table;
5. ``fuse``           residual add / SwiGLU into the mvm epilogue;
6. ``fold_weights``   row slices of fused QKV weights become weights;
7. ``fold_views``     reshape chains collapsed, CSE (one host->device cast per input), unused weights dropped;
8. ``pad_heads``      attention head dims padded to the device's multiple (16) where needed;
9. ``quantize``       weight format per model or per weight, K-blocks from the target;
10. ``report_host_ops`` ``mod.attrs["host_ops"]``.

Guarantees afterwards: every call is a ``dev.*`` op, a ``reshape`` view of a
device tensor, or a host-fallback op listed in ``mod.attrs["host_ops"]``
(:func:`host_ops`: op, source, reason, module path, and the *root* op whose
fallback drags it along); device tensors are fp16 and cross the boundary
only through ``dev.to_device`` (rounding once) and ``dev.to_host`` (exact
widening). :func:`host_op_table` folds that list into one row per root cause.
"""
from __future__ import annotations

from ..ir import Call, Module, module_pass, post_order
from ..ir.ops.elementwise import ARITH_BINARY, FLOAT_UNARY, SAME_UNARY
from .canonicalize import canonicalize
from .fold import fold_views, fold_weights, is_size_only, size_only_memo
from .fold_batchnorm import fold_batchnorm
from .fuse import fuse
from .legalize import legalize
from .pad_heads import pad_heads
from .patterns_match import report_key
from .quantize import quantize

HOST_BY_DESIGN = {
    "embedding": "embedding lookup runs on the host by design (a table gather, no arithmetic)",
}
SIZE_ONLY_REASON = "size-only index computation feeding a host op"
NO_DEVICE_UNIT = {
    "conv2d": "the device has no convolution unit",
    "max_pool2d": "the device has no pooling unit",
    "avg_pool2d": "the device has no pooling unit",
    "mean": "the device has no general reduction (only inside rmsnorm/layernorm/softmax)",
    "sum": "the device has no general reduction (only inside rmsnorm/layernorm/softmax)",
}


#: Ops that are on the host only because their input is: on a device tensor a reshape is a view and a
#: cast happens in the transfer. They are *dragged along* by a root cause (:func:`host_ops`).
FOLLOWERS = frozenset({"reshape", "cast"})
FOLLOWER_REASON = "layout op on a host value"
NO_ROOT_REASON = ("layout op on a host value next to no host-fallback op (a model input or output, or between "
                  "two transfers)")
_MOVES = frozenset({"permute", "expand", "slice", "concat"})


def _default_reason(n) -> str:
    if n.op.name in NO_DEVICE_UNIT:
        return NO_DEVICE_UNIT[n.op.name]
    if n.op.name in _ELEMENTWISE:
        return (f"'{n.op.name}' outside a recognised pattern: dev.eltwise takes two same-shape "
                "computed tensors (no broadcasting, scalars or unary math)")
    if n.op.name in _MOVES:
        return (f"the device has no data movement for '{n.op.name}' outside a recognised pattern "
                "(attention heads, rope, a row range of a linear)")
    return f"no legalization rule matches '{n.op.name}' here"


_ELEMENTWISE = frozenset(ARITH_BINARY + FLOAT_UNARY + SAME_UNARY)


def is_device_call(node) -> bool:
    """A ``dev.*`` call, or a ``reshape`` of a device (fp16) tensor: a view."""
    if not isinstance(node, Call):
        return False
    if node.op.name.startswith("dev."):
        return True
    return node.op.name == "reshape" and node.args[0].type.dtype == "float16" and \
        isinstance(node.args[0], Call) and is_device_call(node.args[0])


def host_ops(mod: Module) -> list:
    """Every host-fallback call of ``mod``, in graph order, as a dict:

    ``op``, ``node`` (source line, or ``function:op#i``), ``reason``, ``function``, ``module`` and
    ``module_type`` (the ``nn.Module`` path and class recorded at import; ``""`` for the top module
    or a node made by a pass), ``root`` (index in this list of the op whose fallback drags this one
    along, None for a root cause) and ``drags`` (how many ops name this one as their root).

    A *follower* (a reshape or cast of a host value, or a size-only index computation) is on the
    host only because a neighbour is: its root is the nearest root cause it is connected to through
    host ops, and its reason names that root. A chain of followers touching no root (a reshape of a
    model input, a size computation) is rooted at its first op.
    """
    with size_only_memo():  # asked for every host call: one walk of the graph in all
        return _host_ops(mod)


def _host_ops(mod: Module) -> list:
    reasons = mod.attrs.get("host_op_reasons", {})
    out = []
    for f in mod.functions.values():
        index: dict = {}   # id(node) -> position in ``out``
        nodes: dict = {}   # id(node) -> node
        modules = node_modules(f)
        for i, n in enumerate(post_order(f.body)):
            if not isinstance(n, Call) or is_device_call(n):
                continue
            why = reasons.get(report_key(n)) or HOST_BY_DESIGN.get(n.op.name)
            follower = False
            if why is None:
                if is_size_only(n) and not n.type.dtype.startswith("float"):
                    why, follower = SIZE_ONLY_REASON, True
                elif n.op.name in FOLLOWERS:
                    why, follower = FOLLOWER_REASON, True
                else:
                    why = _default_reason(n)
            sp = n.span
            index[id(n)], nodes[id(n)] = len(out), n
            out.append({"op": n.op.name, "node": str(sp) if sp else f"{f.name}:{n.op.name}#{i}", "reason": why,
                        "function": f.name, "module": modules[id(n)][0],
                        "module_type": modules[id(n)][1], "root": None, "drags": 0,
                        "follower": follower})
        _assign_roots(out, index, nodes)
    for h in out:
        del h["follower"]
    return out


def _assign_roots(out: list, index: dict, nodes: dict) -> None:
    """Set ``root``/``drags`` of the followers among ``out[index[...]]`` (see :func:`host_ops`)."""
    adj: dict = {k: [] for k in index}
    for k, n in nodes.items():
        for a in n.inputs():
            if id(a) in index:
                adj[k].append(id(a))
                adj[id(a)].append(k)
    owner: dict = {}
    order = sorted(index, key=index.get)
    todo = [k for k in order if not out[index[k]]["follower"]]
    while True:
        for k in todo:
            owner[k] = k
        while todo:  # breadth first from every root at once: each follower goes to its nearest root
            nxt = []
            for k in todo:
                for j in adj[k]:
                    if j not in owner and out[index[j]]["follower"]:
                        owner[j] = owner[k]
                        nxt.append(j)
            todo = nxt
        rootless = [k for k in order if k not in owner]
        if not rootless:
            break
        first = out[index[rootless[0]]]
        first["follower"] = False
        if first["reason"] != SIZE_ONLY_REASON:
            first["reason"] = NO_ROOT_REASON
        todo = [rootless[0]]
    for k, r in owner.items():
        h, root = out[index[k]], out[index[r]]
        if k == r:
            continue
        h["root"] = index[r]
        root["drags"] += 1
        h["reason"] += (f", dragged along by {root['op']} (host op #{index[r]}"
                        + (f", in {module_label(root)})" if module_label(root) else ")"))


def node_modules(f) -> dict:
    """``{id(node): (module path, module class)}`` for every node of function ``f``: its span's, or for a
    node made by a pass (no span) the nearest node's that has one (through inputs and users, breadth
    first), so that a report names a module for every op."""
    order = post_order(f.body)
    adj: dict = {}
    for n in order:
        for a in n.inputs():
            adj.setdefault(id(n), []).append(a)
            adj.setdefault(id(a), []).append(n)

    def own(n):
        sp = n.span
        return (sp.module, sp.module_type) if sp and (sp.module or sp.module_type) else None

    out = {id(n): own(n) for n in order if own(n)}
    frontier = [n for n in order if id(n) in out]
    while frontier:  # breadth first from every node with a span at once: the nearest one wins
        nxt = []
        for n in frontier:
            for m in adj.get(id(n), ()):
                if id(m) not in out:
                    out[id(m)] = out[id(n)]
                    nxt.append(m)
        frontier = nxt
    return {id(n): out.get(id(n), ("", "")) for n in order}


def module_label(h: dict) -> str:
    """``features.1 (BatchNorm2d)``, ``(top) TransformerEncoderLayer``, or ``""`` when unknown."""
    if h.get("module"):
        return h["module"] + (f" ({h['module_type']})" if h.get("module_type") else "")
    return f"(top) {h['module_type']}" if h.get("module_type") else ""


def host_op_table(ops: list) -> list:
    """One row per root cause of :func:`host_ops`'s list: roots grouped by module path and reason.

    Each row: ``module`` (:func:`module_label`), ``ops`` (the root ops' names, in graph order),
    ``reason``, ``nodes`` (root ops in the group), ``drags`` (followers they drag along), ``node``
    (the first one's source), ``functions``; rows in the order their last root op appears in the
    graph (a size-only ``full`` is visited early, wherever it is used).
    """
    rows: dict = {}
    last: dict = {}  # row key -> position of its last op: rows in the order their work ends
    for i, h in enumerate(ops):
        if h.get("root") is not None:
            continue
        key = (module_label(h), h["reason"])
        r = rows.setdefault(key, {"module": key[0], "ops": [], "reason": h["reason"], "nodes": 0, "drags": 0,
                                  "node": h.get("node", ""), "functions": []})
        r["nodes"] += 1
        r["drags"] += h.get("drags", 0)
        last[key] = i
        if h["op"] not in r["ops"]:
            r["ops"].append(h["op"])
        if h.get("function") and h["function"] not in r["functions"]:
            r["functions"].append(h["function"])
    return [rows[k] for k in sorted(rows, key=last.get)]


@module_pass("report_host_ops")
def report_host_ops(mod: Module) -> Module:
    """Set ``mod.attrs["host_ops"]`` (see ``host_ops``); the graph is unchanged."""
    out = Module(functions=dict(mod.functions), params=mod.params, attrs=dict(mod.attrs))
    out.attrs["host_ops"] = host_ops(mod)
    return out


def device_pipeline(weights: str = "int4", per_layer=None, target=None) -> list:
    """The passes turning an imported module into a device graph (module docstring).

    ``weights``: default format ``"int4" | "int8" | "fp16"``; ``per_layer``:
    dict or callable mapping a weight name to a format (None = default);
    ``target``: the target (or its name) whose numerics ``quantize`` records
    on the device ops (None: the running ``PassContext``'s target).
    """
    return [canonicalize, fold_weights, fold_batchnorm, legalize, fuse, fold_weights, fold_views, pad_heads,
            quantize(weights, per_layer, target=target), report_host_ops]
