"""One device subgraph of a torch.compile graph -> graph IR, through the torch frontend's importer.

The subgraph is a GraphModule of ATen ops (from AOTAutograd), whose placeholders are the user's
tensors, sizes (SymInts) and the model's weights. It is handed to the same ``Importer`` that
converts a ``torch.export`` program (one converter table), seen through :class:`GraphProgram`, the
few fields of an ExportedProgram the importer reads. Weights become constants of the IR module (so
the compiler quantises and packs them); symbolic sizes become dims with bounds: torch's range,
capped by the bound this compilation picked (:func:`pick_bound`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import sympy
import torch
from torch.utils._sympy.numbers import IntInfinity, NegativeIntInfinity

from ..frontend.torch.importer import Importer, dtype_name
from ..ir import IRError

#: the smallest bound a dynamic size gets (a dim first seen at 3 is compiled for [lo, 16])
MIN_BOUND = 16


class ImportRefused(Exception):
    """A converter refused node ``node`` (None: the whole subgraph) of a subgraph; ``reason`` says why."""

    def __init__(self, node: str | None, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


def pick_bound(value: int, fixed: int | None = None) -> int:
    """The upper bound a dynamic size seen at ``value`` is compiled for: ``fixed`` (the ``dim_bound``
    option) when it holds ``value``, else the next power of two at or above ``2 * value``, at least
    :data:`MIN_BOUND`: room to grow without compiling for sizes nobody uses (the compiled program is
    unrolled to its bounds)."""
    if fixed is not None and value <= fixed:
        return fixed
    return max(MIN_BOUND, 1 << (2 * max(1, value) - 1).bit_length())


@dataclass
class SizeVar:
    """A symbolic size of the subgraph: its dim name, torch's symbol, bounds, and where a call's
    arguments carry it (argument index, axis; axis None for a size passed as an int)."""
    name: str
    symbol: object
    lo: int
    hi: int
    arg: int
    axis: int | None

    def value(self, args) -> int:
        a = args[self.arg]
        return int(a) if self.axis is None else int(a.shape[self.axis])


@dataclass
class Subgraph:
    """What one compiled program takes and gives back."""
    module: object                      # dlavm.ir.Module (function "forward")
    tensor_args: list                   # indices of the call's arguments that are runtime inputs
    sizes: list                         # [SizeVar]
    out_dtypes: list                    # torch dtypes of the outputs, in order
    constants: dict = field(default_factory=dict)    # weight name -> torch tensor
    ops: list = field(default_factory=list)          # ATen op names of its nodes (graph order)

    @property
    def bounds(self) -> dict:
        return {v.name: (v.lo, v.hi) for v in self.sizes}


class GraphProgram:
    """The fields of ``torch.export.ExportedProgram`` that ``Importer`` reads, for a plain GraphModule."""

    def __init__(self, gm: torch.fx.GraphModule, kinds: list, state_dict: dict, ranges: dict):
        specs = [SimpleNamespace(arg=SimpleNamespace(name=ph.name), kind=SimpleNamespace(name=kind), target=target)
                 for ph, (kind, target) in zip(_placeholders(gm), kinds)]
        out = SimpleNamespace(kind=SimpleNamespace(name="USER_OUTPUT"), target=None)
        self.graph_signature = SimpleNamespace(input_specs=specs, output_specs=[out])
        self.state_dict, self.constants = state_dict, {}
        self.range_constraints = ranges
        self.graph, self.graph_module = gm.graph, gm


class _Importer(Importer):
    """Notes which node a converter refused, so that the node alone falls back to eager."""

    def _convert(self, node):
        try:
            return super()._convert(node)
        except IRError as e:
            raise ImportRefused(node.name, str(e)) from None


def _placeholders(gm) -> list:
    return [n for n in gm.graph.nodes if n.op == "placeholder"]


_SOURCE = re.compile(r"^L((?:\['[A-Za-z_]\w*'\]|\[\d+\])+)\.size\(\)\[(\d+)\]$")


def source_name(source, default: str = "") -> str:
    """The text of a dynamo ``Source`` (``L['x'].size()[0]``; its ``name`` is a method in some torch
    versions, a property in others), ``default`` without one."""
    if source is None:
        return default
    text = getattr(source, "name", source)
    return str(text() if callable(text) else text)


def _dim_name(symbol, shape_env, taken: set) -> str:
    """``x_dim1`` for torch's ``L['x'].size()[1]`` (``args_0_dim1`` for ``L['args'][0].size()[1]``);
    torch's symbol name when it has no such source."""
    name = str(symbol)
    sources = (getattr(shape_env, "var_to_sources", None) or {}).get(symbol) or []
    for src in sources:
        m = _SOURCE.search(source_name(src))
        if m:
            path = "_".join(re.findall(r"\['?([^'\]]+)'?\]", m.group(1)))
            name = f"{path}_dim{m.group(2)}"
            break
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _shape_env(vals):
    for v in vals:
        dims = list(v.shape) if isinstance(v, torch.Tensor) else [v]
        for d in dims:
            if isinstance(d, torch.SymInt):
                return d.node.shape_env
    return None


def weight_name(source: str) -> str:
    """A weight's name from dynamo's source of it: ``L['self']._modules['l1']._parameters['weight']``
    -> ``l1.weight`` (the state-dict name), anything else made an identifier."""
    parts = re.findall(r"\['([^']*)'\]", source)
    if parts and parts[0] == "self":
        parts = parts[1:]
    name = ".".join(parts) if parts else source
    return re.sub(r"[^A-Za-z0-9_.]", "_", name) or "weight"


def import_subgraph(sub: torch.fx.GraphModule, args: list, constants: dict, dim_bound: int | None = None,
                    bounds: dict | None = None) -> Subgraph:
    """IR for fused subgraph ``sub`` whose call passes ``args`` (fx nodes of the parent graph).
    ``constants``: parent node -> (weight name, torch tensor) for the weights among them.
    ``bounds``: dim name -> upper bound to compile for (a recompilation past an earlier bound);
    other dims get :func:`pick_bound` of their size in this trace, capped by torch's range."""
    phs = _placeholders(sub)
    vals = [ph.meta.get("val") for ph in phs]
    shape_env = _shape_env(vals)
    kinds, state, tensor_args = [], {}, []
    for i, (arg, val) in enumerate(zip(args, vals)):
        if arg in constants:
            name, data = constants[arg]
            kinds.append(("PARAMETER", name))
            state[name] = data
        elif isinstance(val, torch.Tensor):
            kinds.append(("USER_INPUT", None))
            tensor_args.append(i)
        elif isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool):
            kinds.append(("USER_INPUT", None))
        else:
            raise ImportRefused(None, f"argument {phs[i].name} is a {type(val).__name__}, not a tensor or a size")
    ranges, sizes, names, taken = {}, [], {}, set()
    for i, val in enumerate(vals):
        dims = list(val.shape) if isinstance(val, torch.Tensor) else [val]
        for axis, d in enumerate(dims):
            if not isinstance(d, torch.SymInt):
                continue
            expr = d.node.expr
            for s in sorted(expr.free_symbols, key=str):
                if s in ranges:
                    continue
                vr = shape_env.var_to_range.get(s) if shape_env is not None else None
                lo = _finite(vr.lower) if vr is not None else None
                lo = 1 if lo is None else lo
                top = _finite(vr.upper) if vr is not None else None
                hint = _hints(shape_env).get(s)
                name = _dim_name(s, shape_env, taken)
                hi = (bounds or {}).get(name) or pick_bound(int(hint) if hint is not None else lo, dim_bound)
                hi = max(lo, min(hi, top) if top is not None else hi)
                ranges[s] = SimpleNamespace(lower=sympy.Integer(max(lo, 1)), upper=sympy.Integer(hi))
                names[s] = name
    for s, name in names.items():
        where = _locate(s, args, vals, constants)
        if where is None or where[1] is None:
            # a size the subgraph takes only as an integer (``torch.full(x.shape, v)`` without x) has no
            # tensor for the program to read it from
            raise ImportRefused(None, f"the size {name} is not the size of an input tensor of the subgraph "
                                      f"(only an integer): the compiled program binds sizes from its inputs' shapes")
        sizes.append(SizeVar(name, s, int(ranges[s].lower), int(ranges[s].upper), *where))
    program = GraphProgram(sub, kinds, state, ranges)
    imp = _Importer(program, names)
    try:
        module = imp.run("forward", keep_weights=True)
    except IRError as e:   # outside a node's conversion (its converter's refusals name the node)
        raise ImportRefused(None, str(e)) from None
    out_node = next(n for n in sub.graph.nodes if n.op == "output")
    outs = out_node.args[0] if isinstance(out_node.args[0], (tuple, list)) else (out_node.args[0],)
    out_dtypes = []
    for o in outs:
        v = o.meta.get("val") if isinstance(o, torch.fx.Node) else None
        if not isinstance(v, torch.Tensor):
            raise ImportRefused(getattr(o, "name", None), "the subgraph returns a value that is not a tensor")
        out_dtypes.append(v.dtype)
    from .partition import op_name
    ops = [op_name(n) for n in sub.graph.nodes if n.op == "call_function"]
    return Subgraph(module, tensor_args, sizes, out_dtypes, state, ops)


def _hints(shape_env) -> dict:
    """torch's symbol -> the size it had in the traced call."""
    if shape_env is None:
        return {}
    return getattr(shape_env, "backed_var_to_val", None) or getattr(shape_env, "var_to_val", {})


def _finite(x) -> int | None:
    """``x`` (a bound of torch's value range) as an int, None when infinite (torch's ``int_oo``, whose
    ``is_finite`` is True, is told apart by its class)."""
    if isinstance(x, (IntInfinity, NegativeIntInfinity)) or not getattr(x, "is_number", False) or not x.is_finite:
        return None
    return int(x)


def _locate(symbol, args, vals, constants):
    """(argument index, axis) of a runtime tensor whose axis is exactly ``symbol``; (index, None) for a
    size argument that is exactly it; None when no argument carries it."""
    for i, (arg, val) in enumerate(zip(args, vals)):
        if arg in constants or not isinstance(val, torch.Tensor):
            continue
        for axis, d in enumerate(val.shape):
            if isinstance(d, torch.SymInt) and d.node.expr == symbol:
                return i, axis
    for i, val in enumerate(vals):
        if isinstance(val, torch.SymInt) and val.node.expr == symbol:
            return i, None
    return None


def fingerprint(sub: torch.fx.GraphModule, subgraph: Subgraph) -> str:
    """sha256 of what decides the compiled program of ``sub`` besides target, weight format and
    compiler: its code, every value's type, the bounds and every weight's bytes."""
    h = hashlib.sha256()

    def put(text: str) -> None:
        b = text.encode()
        h.update(len(b).to_bytes(8, "little") + b)

    put(sub.code)
    for n in sub.graph.nodes:
        v = n.meta.get("val")
        vs = v if isinstance(v, (list, tuple)) else [v]
        put(n.name + ":" + ";".join(f"{dtype_name(x.dtype)}{tuple(str(d) for d in x.shape)}"
                                   if isinstance(x, torch.Tensor) else repr(str(x)) for x in vs))
    put(repr(sorted(subgraph.bounds.items())))
    for name in sorted(subgraph.constants):
        t = subgraph.constants[name].detach().cpu().contiguous()
        put(f"{name}:{t.dtype}:{tuple(t.shape)}")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


__all__ = ["import_subgraph", "Subgraph", "SizeVar", "GraphProgram", "ImportRefused", "pick_bound",
           "weight_name", "source_name", "fingerprint", "MIN_BOUND"]
