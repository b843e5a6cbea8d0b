"""Lowering a device graph (doc/compiler.md contract) to task IR.

:func:`lower_function` walks a device-level :class:`dlavm.ir.Function` in
dataflow order and produces a :class:`LoweredFunction`: an ordered list of
*steps* the runtime executes:

* ``to_device`` / ``to_host``: host <-> device copies at the boundaries;
* ``host``: a host-fallback op (run with numpy by the runtime);
* ``stream``: a task :class:`Program` (one AUX stream after the backend),
  made of the instructions of consecutive device ops. Host steps split
  streams, so a host op between device ops costs one extra stream kick.

Device ops are lowered by rules looked up in :mod:`dlavm.task.rules` by op
name and target capability. ``reshape`` of a device tensor is a view (same
address). Weights are packed here (per the mvm's ``wfmt``) into blobs the
artifact stores and the runtime preloads.

Memory comes from ``dlavm.passes.memory_plan`` (activations reused by
lifetime, persistent ``weights`` and ``kv`` pools). Lowering runs once
(:func:`lower_module`): rules address buffers through symbolic handles
(:class:`dlavm.task.reloc.BufRef`: a buffer plus a byte offset) while the
packed-weight blobs and scratch buffers (attention caches, scores) they ask
for are recorded; when every function is lowered, each is planned with all
of them (so shared weights get one address in every function) and a
relocation step replaces every handle by its address.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dlavm import sym
from dlavm.ir import Call, Constant, Function, GetItem, Literal, Tuple, Var, dtype_bytes, post_order
from dlavm.target.isa import ARGMAX_RECORD_BYTES, op_format

from .ir import Emit, For, If, Program
from .reloc import BufRef, RelocationError, relocate_program, relocate_stmts, relocate_value, resolver
from dlavm.passes.memory_plan import plan_function


class LoweringError(ValueError):
    """A device op cannot be lowered for this target; names the op, its source and the reason."""


VIEW_OPS = ("reshape",)


def numel(shape) -> sym.Expr:
    n = sym.const(1)
    for d in shape:
        n = n * d
    return n


def ub(e) -> int:
    return sym.upper_bound(sym.as_expr(e))


def host_macs(node: Call) -> int:
    """Multiply-accumulates of a host-fallback call at the upper bound of its sizes (the compile
    report's device MAC fraction): ``matmul``, ``linear``, ``conv2d`` and ``attention`` (both
    products); 0 for every other op (elementwise work, reductions and data movement are not MACs)."""
    op = node.op.name
    shape = [ub(d) for d in node.type.shape] if hasattr(node.type, "shape") else []
    out = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if op == "matmul":
        return out * ub(node.args[0].type.shape[-1])
    if op == "linear":
        return out * ub(node.args[1].type.shape[1])
    if op == "conv2d":
        w = node.args[1].type.shape
        return out * ub(w[1]) * ub(w[2]) * ub(w[3])
    if op == "attention":
        q, k = node.args[0].type.shape, node.args[1].type.shape
        return int(np.prod([ub(d) for d in q], dtype=np.int64)) * ub(k[-2]) + out * ub(k[-2])
    return 0


@dataclass
class LoweredFunction:
    """Steps, values and dims of one lowered function (see module docstring)."""

    name: str
    dims: tuple
    inputs: list
    outputs: list
    values: dict
    steps: list
    ops: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)  # value id -> tuple of sym.Expr (for code generators)
    host_attrs: dict = field(default_factory=dict)  # host step's dst value id -> op attrs (sym.Expr kept)
    state_dims: tuple = ()                           # dims the caller binds (no input carries them)
    views: list = field(default_factory=list)        # (view node, value id): checked against the plan


class LowerContext:
    """Shared state while lowering a module: target, weight blobs and scratch buffers.

    Addresses handed to rules are :class:`BufRef` handles; :func:`lower_module`
    resolves them once memory is planned.
    """

    def __init__(self, target, params: dict, weights: str = "int4"):
        self.target = target
        self.params = params
        self.weights = weights
        self.blob_sizes: dict = {}     # blob name -> bytes (pool 'weights'), in first-use order
        self.scratch_sizes: dict = {}  # scratch name -> bytes (pool 'kv')
        self.blobs: dict = {}          # blob name -> np.ndarray (raw bytes) or None (shape-only)
        self.host_consts: dict = {}    # weight name -> np.ndarray used by host ops
        self.node_index = 0            # position of the node being lowered in its function's post order
        #: dims no input shape carries (an LLM's ``ctx``): every function reads them, the caller binds them
        self.state_dims: tuple = ()
        self.fn_name = ""
        #: ``on_progress(stage, done, total, detail)`` or None (weight packing reports through it)
        self.on_progress = None
        self.packed = 0
        # per-function
        self.vid: dict = {}
        self.values: dict = {}
        self.body: list = []

    # --- operands -------------------------------------------------------------------------------
    def addr(self, node) -> int:
        """Device address of a device value (an earlier device op, to_device or view)."""
        v = self.values.get(self.vid.get(node))
        if v is None or v.get("addr") is None:
            raise LoweringError(f"{_where(node)}: operand is not a device tensor")
        return v["addr"]

    def node_addr(self, node) -> BufRef:
        return BufRef(node, self.fn_name)

    def blob(self, name: str, make, nbytes: int) -> int:
        """Address of weight blob ``name`` of ``nbytes``; ``make()`` gives its bytes (called once)."""
        nbytes = int(nbytes)
        if name not in self.blobs:
            data = make()
            if data is not None:
                data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
                if data.nbytes != nbytes:
                    raise LoweringError(f"weight blob {name}: packed {data.nbytes} bytes, declared {nbytes}")
            self.blobs[name] = data
            self.blob_sizes[name] = nbytes
        elif self.blob_sizes[name] != nbytes:
            raise LoweringError(f"weight blob {name}: used with {nbytes} bytes and {self.blob_sizes[name]}")
        return BufRef(name)

    def scratch(self, role: str, nbytes: int) -> int:
        """Address of the scratch buffer ``role`` (pool 'kv', HBM), sized for its largest user.

        Nodes of one function run one after the other, so they share a role's
        buffer (the wait bits order their accesses); e.g. every attention
        layer uses the same score buffer instead of one each. Entries run one
        at a time on a device (a run returns when its last stream is idle), and
        scratch holds nothing between runs, so every function of the module
        shares it too: an LLM's ``logits`` and ``greedy`` entries use one score
        buffer, not one each.
        """
        name = f"scratch.{role}"
        self.scratch_sizes[name] = max(self.scratch_sizes.get(name, 0), int(nbytes))
        return BufRef(name)

    def persistent(self, name: str, nbytes: int) -> int:
        """Address of the persistent buffer ``name`` (pool 'kv', HBM) shared by every function, e.g. a
        layer's KV cache: unlike :meth:`scratch`, its contents survive between runs and entries."""
        self.scratch_sizes[name] = max(self.scratch_sizes.get(name, 0), int(nbytes))
        return BufRef(name)

    def param(self, node):
        """Float data of a weight Constant (None for shape-only models)."""
        if not isinstance(node, Constant):
            raise LoweringError(f"{_where(node)}: expected a weight constant, got {type(node).__name__}")
        data = self.params.get(node.name)
        return None if data is None else np.asarray(data)

    def fp16_operand(self, node) -> int:
        """Address of an fp16 vector operand: a device tensor, or a Constant packed as fp16."""
        if isinstance(node, Constant):
            n = int(numel(node.type.shape).value)
            return self.blob(f"{node.name}.f16", lambda: _opt(self.param(node), np.float16), n * 2)
        return self.addr(node)

    def emit(self, op: str, comment: str = "", **fields) -> Emit:
        """One instruction; its operand ranges are ``dlavm.target.insn_model.accesses`` of ``fields``."""
        return Emit(op, fields, op_format(op).unit, frozenset(), comment)


def _opt(data, dtype):
    return None if data is None else np.asarray(data, dtype=np.float32).astype(dtype)


def _where(node) -> str:
    op = node.op.name if isinstance(node, Call) else type(node).__name__
    span = f" at {node.span}" if getattr(node, "span", None) else ""
    return f"'{op}'{span}"


def _shape_str(shape) -> list:
    return [str(sym.as_expr(d)) for d in shape]


def _attr_json(v):
    if isinstance(v, sym.Expr):
        return {"sym": str(v)}
    if isinstance(v, (list, tuple)):
        return [_attr_json(x) for x in v]
    return v


def lower_function(ctx: LowerContext, fn: Function) -> LoweredFunction:
    """Lower ``fn`` (device graph) into steps whose addresses are :class:`BufRef` handles (resolved by
    :func:`lower_module`)."""
    from .rules import find_rule, result_layout  # rules import this module

    ctx.vid, ctx.values, ctx.body, ctx.fn_name = {}, {}, [], fn.name
    steps, ops, shapes, host_attrs, views = [], [], {}, {}, []
    dims = tuple(fn.sym_vars())
    # a function may list its own state dims (a batched-decode entry's per-row kv lengths); default: all
    fn_state = tuple(fn.attrs.get("state_dims", ctx.state_dims))
    dims += tuple(d for d in fn_state if d not in dims)

    def flush():
        if ctx.body:
            prog = Program(f"{fn.name}.{sum(s['kind'] == 'stream' for s in steps)}", tuple(ctx.body), dims)
            steps.append({"kind": "stream", "program": prog})
            ctx.body = []

    def new_value(node, addr=None, layout="dense", dtype=None):
        vid = f"v{len(ctx.values)}"
        ctx.vid[node] = vid
        shapes[vid] = tuple(sym.as_expr(d) for d in node.type.shape)
        ctx.values[vid] = {"shape": _shape_str(node.type.shape), "dtype": dtype or node.type.dtype,
                           "addr": addr, "layout": layout}
        return vid

    def alloc_device(node, layout="dense"):
        return new_value(node, ctx.node_addr(node), layout, "int32" if layout == "argmax" else "float16")

    inputs = []
    for p in fn.params:
        inputs.append((p.name, new_value(p)))
    for index, node in enumerate(post_order([fn.body])):
        ctx.node_index = index
        if isinstance(node, Var) or node in ctx.vid:
            continue
        if isinstance(node, (Literal, Tuple)):
            continue
        if isinstance(node, GetItem):
            raise LoweringError(f"{_where(node)}: tuple-valued ops are not supported by lowering")
        if isinstance(node, Constant):
            continue  # packed by the rule that consumes it, or stored for host ops below
        op = node.op.name
        on_device = [a for a in node.args if ctx.values.get(ctx.vid.get(a), {}).get("addr") is not None]
        if op == "dev.to_device":
            flush()
            src = _host_operand(ctx, node.args[0])
            dst = alloc_device(node)
            steps.append({"kind": "to_device", "src": src, "dst": dst})
            ops.append({"op": op, "where": "host->device", "bytes": ub(numel(node.type.shape)) * 2})
        elif op == "dev.to_host":
            flush()
            src = ctx.vid[node.args[0]]
            dst = new_value(node)
            steps.append({"kind": "to_host", "src": src, "dst": dst, "dtype": node.attrs["dtype"]})
            ops.append({"op": op, "where": "device->host", "bytes": ub(numel(node.type.shape)) * 2})
        elif op.startswith("dev."):
            rule = find_rule(op, ctx.target)
            if rule is None:
                raise LoweringError(f"{_where(node)}: no lowering rule for target '{ctx.target.name}'")
            alloc_device(node, result_layout(node))
            before = len(ctx.body)
            tag = f"{op}#{len(ops)}"
            try:
                ctx.body.extend(_tag(rule(ctx, node), tag))
            except (ValueError, KeyError) as e:
                if isinstance(e, LoweringError):
                    raise
                raise LoweringError(f"{_where(node)}: {e}") from e
            ops.append({"op": op, "tag": tag, "where": "device", "insns": len(ctx.body) - before,
                        "bytes": ub(numel(node.type.shape)) * 2, "stmts": tuple(ctx.body[before:])})
        elif op in VIEW_OPS and on_device:
            v = ctx.values[ctx.vid[node.args[0]]]
            vid = new_value(node, v["addr"], v["layout"], v["dtype"])
            views.append((node, vid))
        else:
            if on_device:
                raise LoweringError(f"{_where(node)}: host op reads a device tensor; "
                                    f"insert dev.to_host before it")
            flush()
            args = [_host_operand(ctx, a) for a in node.args]
            dst = new_value(node)
            steps.append({"kind": "host", "op": op, "args": args,
                          "attrs": {k: _attr_json(v) for k, v in node.attrs.items()}, "dst": dst})
            host_attrs[dst] = dict(node.attrs)
            ops.append({"op": op, "where": "host", "bytes": 0, "macs": host_macs(node)})
    flush()
    body = fn.body
    outs = list(body.fields) if isinstance(body, Tuple) else [body]
    outputs = []
    for o in outs:
        v = ctx.values.get(ctx.vid.get(o))
        if v is None or v["addr"] is not None:
            raise LoweringError(f"function '{fn.name}': every output must be a host tensor (end with dev.to_host)")
        outputs.append(ctx.vid[o])
    state = tuple(d for d in fn_state if d in dims)
    return LoweredFunction(fn.name, dims, inputs, outputs, ctx.values, steps, ops, shapes, host_attrs, state,
                           views)


def device_size_of(node):
    """Byte size of a value in device memory: fp16 tensors, argmax records (8 bytes per row)."""
    from .rules import result_layout  # rules import this module
    if isinstance(node, Call) and node.op.name.startswith("dev.") and result_layout(node) == "argmax":
        return numel(node.type.shape) * ARGMAX_RECORD_BYTES
    if isinstance(node, Call) and (node.op.name.startswith("dev.") or node.op.name in VIEW_OPS):
        return numel(node.type.shape) * 2
    return None


def _size_of(node):
    n = device_size_of(node)
    if n is not None:
        return n
    return numel(node.type.shape) * dtype_bytes(node.type.dtype)


def lower_module(ctx: LowerContext, mod) -> tuple:
    """``([LoweredFunction], {function name: MemoryPlan})`` for every function of ``mod``.

    Every function is lowered once with symbolic addresses; then each is planned with the weight blobs
    and scratch buffers of all of them, and its handles are relocated to the planned addresses.
    Guarantees afterwards: no :class:`BufRef` is left in any step, value or instruction field, and every
    view the lowering made shares its input's address in the plan.
    """
    from .rules import check_limits  # rules import this module
    check_limits(mod, ctx.target)
    fns = list(mod.functions.values())
    lowered = [lower_function(ctx, fn) for fn in fns]
    plans = {}
    out = []
    for fn, lf in zip(fns, lowered):
        plan = plans[fn.name] = plan_function(fn, ctx.target, weights=ctx.blob_sizes, kv=ctx.scratch_sizes,
                                              size_of=_size_of, place_constants=False)
        out.append(relocate_function(lf, plan))
    return out, plans


def relocate_function(lf: LoweredFunction, plan) -> LoweredFunction:
    """``lf`` with every address handle resolved against ``plan`` (see :mod:`dlavm.task.reloc`)."""
    resolve = resolver(plan, lf.name)
    try:
        for node, vid in lf.views:
            if plan.address(node) != resolve(lf.values[vid]["addr"]):
                raise LoweringError(f"{_where(node)}: the memory plan does not alias this view to its input")
        values = {vid: {**v, "addr": relocate_value(v["addr"], resolve)} for vid, v in lf.values.items()}
        steps = [{**s, "program": relocate_program(s["program"], resolve)} if s["kind"] == "stream" else s
                 for s in lf.steps]
        ops = [{**o, "stmts": relocate_stmts(o["stmts"], resolve)} if "stmts" in o else o for o in lf.ops]
    except RelocationError as e:
        raise LoweringError(f"function '{lf.name}': {e}") from None
    return replace(lf, values=values, steps=steps, ops=ops)


def _tag(stmts, tag: str) -> list:
    """Set every instruction's op tag (the manifest's instruction records) and prefix its comment with it."""
    out = []
    for s in stmts:
        if isinstance(s, Emit):
            s = replace(s, comment=f"{tag} {s.comment}".strip(), tag=tag)
        elif isinstance(s, For):
            s = For(s.var, s.extent, tuple(_tag(s.body, tag)))
        elif isinstance(s, If):
            s = If(s.cond, tuple(_tag(s.then, tag)), tuple(_tag(s.orelse, tag)))
        out.append(s)
    return out


def _host_operand(ctx: LowerContext, node):
    """Reference to a host value for a host step: a value id, a literal or a host constant."""
    if isinstance(node, Literal):
        return {"literal": node.value}
    if isinstance(node, Constant):
        data = ctx.params.get(node.name)
        ctx.host_consts[node.name] = None if data is None else np.asarray(data)
        return {"const": node.name, "shape": _shape_str(node.type.shape), "dtype": node.type.dtype}
    vid = ctx.vid.get(node)
    if vid is None:
        raise LoweringError(f"{_where(node)}: operand was not computed")
    if ctx.values[vid]["addr"] is not None:
        raise LoweringError(f"{_where(node)}: host op reads a device tensor; insert dev.to_host before it")
    return {"value": vid}


__all__ = ["LoweringError", "LowerContext", "LoweredFunction", "host_macs", "lower_function", "lower_module",
           "numel", "ub", "device_size_of"]
