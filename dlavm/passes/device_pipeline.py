"""The device pipeline: an imported module -> a *device graph* (doc/compiler.md).

``device_pipeline(weights, per_layer)`` returns the passes, in order:

1. ``canonicalize``   identities removed (idempotent after import);
2. ``fold_weights``   weight transforms (GPT-2's transposed Conv1D weights) become weights;
3. ``legalize``       ATen-level ops -> ``dev.*`` by the pattern table;
4. ``fuse``           residual add / SwiGLU into the mvm epilogue;
5. ``fold_weights``   row slices of fused QKV weights become weights;
6. ``fold_views``     reshape chains collapsed, CSE (one host->device cast per input), unused weights dropped;
7. ``pad_heads``      attention head dims padded to the device's multiple (16) where needed;
8. ``quantize``       weight format per model or per weight, K-blocks from the target;
9. ``report_host_ops`` ``mod.attrs["host_ops"]``.

Guarantees afterwards: every call is a ``dev.*`` op, a ``reshape`` view of a
device tensor, or a host-fallback op listed in ``mod.attrs["host_ops"]`` as
``{"op", "node", "reason"}``; device tensors are fp16 and cross the boundary
only through ``dev.to_device`` (rounding once) and ``dev.to_host`` (exact
widening).
"""
from __future__ import annotations

from ..ir import Call, Module, module_pass, post_order
from ..ir.ops.elementwise import ARITH_BINARY, FLOAT_UNARY, SAME_UNARY
from .canonicalize import canonicalize
from .fold import fold_views, fold_weights, is_size_only
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


def _default_reason(n) -> str:
    if n.op.name in NO_DEVICE_UNIT:
        return NO_DEVICE_UNIT[n.op.name]
    if n.op.name in _ELEMENTWISE:
        return (f"'{n.op.name}' outside a recognised pattern: dev.eltwise takes two same-shape "
                "computed tensors (no broadcasting, scalars or unary math)")
    if n.op.name in _LAYOUT:
        return "layout op on a host tensor (next to a host-fallback op)"
    return f"no legalization rule matches '{n.op.name}' here"


_LAYOUT = frozenset({"reshape", "permute", "expand", "slice", "concat", "cast"})
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
    """Every host-fallback call of ``mod`` as ``{"op", "node", "reason"}``, in graph order."""
    reasons = mod.attrs.get("host_op_reasons", {})
    out = []
    for f in mod.functions.values():
        for i, n in enumerate(post_order(f.body)):
            if not isinstance(n, Call) or is_device_call(n):
                continue
            why = reasons.get(report_key(n)) or HOST_BY_DESIGN.get(n.op.name)
            if why is None:
                why = SIZE_ONLY_REASON if is_size_only(n) and not n.type.dtype.startswith("float") else \
                    _default_reason(n)
            where = str(n.span) if n.span else f"{f.name}:{n.op.name}#{i}"
            out.append({"op": n.op.name, "node": where, "reason": why, "function": f.name})
    return out


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
    return [canonicalize, fold_weights, legalize, fuse, fold_weights, fold_views, pad_heads,
            quantize(weights, per_layer, target=target), report_host_ops]
