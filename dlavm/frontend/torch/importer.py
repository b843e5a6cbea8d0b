"""torch.export -> graph IR.

``export_module`` calls ``torch.export.export`` with the user's dynamic dims
and runs our decomposition table; ``from_exported_program`` walks the fx graph
once, in order, converting each node through ``converters.CONVERTERS`` and
checking the IR type it gets against torch's own metadata for the node.
"""
from __future__ import annotations

import inspect
import operator
import os
import re
import time

import torch

from ... import host_ops, sym
from ...ir import Constant, Function, IRError, Literal, Module, Node, Span, Tuple, Var, call
from ...ir.ops.host import user_host_op
from ...ir.types import TensorType
from .converters import CONVERTERS
from .decompositions import decomposition_table
from .symbols import SymbolTable


class ExportError(IRError):
    """``torch.export`` refused the model (data-dependent control flow, inputs that do not fit it, ...)."""


class UnsupportedOpError(IRError):
    """The model uses an ATen op DLAVM cannot import; the message names op, node and source."""


_TORCH_TO_IR = {
    torch.bool: "bool", torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
    torch.int32: "int32", torch.int64: "int64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64",
}
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)')


def dtype_name(dtype) -> str:
    try:
        return _TORCH_TO_IR[dtype]
    except KeyError:
        raise IRError(f"unsupported torch dtype {dtype}") from None


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def span_of(node) -> Span:
    """The user's source line of an fx node: the innermost frame of its stack trace
    outside torch itself (``nn.Embedding.forward`` is not where the user wrote the op), and the
    innermost ``nn.Module`` of its ``nn_module_stack`` (path and class name)."""
    trace = node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(trace)
    outside = [f for f in frames if not f[0].startswith(_TORCH_DIR)]
    stack = [v for k, v in (node.meta.get("nn_module_stack") or {}).items() if not str(k).startswith("_empty")]
    path, cls = stack[-1] if stack else ("", "")
    cls = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    module = {"module": str(path), "module_type": cls.rsplit(".", 1)[-1]}
    if frames:
        file, line, text = (outside or frames)[-1]
        return Span(file, int(line), text, node.name, **module)
    return Span(origin=node.name, **module)


class Importer:
    """Converts one ExportedProgram; converters see it as ``ctx``."""

    def __init__(self, ep, dim_names: dict):
        self.ep = ep
        self.syms = SymbolTable(ep.range_constraints, dim_names)
        self.env: dict = {}
        self.span: Span | None = None
        self._type_memo: dict = {}
        self._folded: dict = {}  # name -> torch data of the constants folded at import

    # -- helpers used by converters ---------------------------------------
    def dtype_name(self, dtype) -> str:
        return dtype_name(dtype)

    def type_of_val(self, val) -> TensorType:
        return TensorType(tuple(self.syms.convert(d) for d in val.shape), dtype_name(val.dtype))

    def out_type(self, node) -> TensorType:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise IRError(f"node %{node.name} has no tensor metadata")
        return self.type_of_val(val)

    def out_types(self, node) -> list:
        return [self.type_of_val(v) for v in node.meta["val"]]

    def tensor(self, x) -> Node:
        """An IR tensor for a converter argument (node, symbolic size or Python number)."""
        if isinstance(x, Node):
            return x
        if isinstance(x, sym.Expr):
            return call("shape_value", value=x, span=self.span)
        if isinstance(x, (bool, int, float)):
            return Literal(x, span=self.span)
        raise IRError(f"expected a tensor argument, got {x!r} (at {self.span})")

    value = tensor

    def constant_data(self, node: Constant):
        """The data of weight ``node`` as a torch tensor, or None when it has none (a shape-only model)."""
        data = self._folded.get(node.name)
        if data is None:
            data = self.ep.state_dict.get(node.name)
        if data is None:
            data = self.ep.constants.get(node.name)
        if not isinstance(data, torch.Tensor) or data.device.type == "meta":
            return None
        return data.detach().cpu()

    def add_constant(self, name: str, ty: TensorType, data) -> Constant:
        """A weight computed at import (a folded constant): ``data`` a torch tensor, or None (no data)."""
        if name not in self.mod.params:
            if data is not None:
                self._folded[name] = data
            keep = self._keep_weights and data is not None
            self.mod.params[name] = data.contiguous().numpy() if keep else None
        return Constant(name, ty, self.span)

    @staticmethod
    def cast_scalar(v, dtype: str):
        if dtype == "bool":
            return bool(v)
        if dtype.startswith(("int", "uint")):
            return int(v)
        return float(v)

    # -- the walk -----------------------------------------------------------
    def _arg(self, a):
        """Map an fx argument structure to IR nodes / sym exprs / Python values."""
        if isinstance(a, torch.fx.Node):
            if a not in self.env:
                raise IRError(f"node %{a.name} is used before it is defined")
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(x) for x in a)
        if isinstance(a, torch.SymInt):
            return self.syms.convert(a)
        if isinstance(a, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
            return a
        return a

    def run(self, name: str, keep_weights: bool) -> Module:
        ep = self.ep
        sig = ep.graph_signature
        kinds = {spec.arg.name: spec for spec in sig.input_specs}
        for spec in sig.output_specs:
            if spec.kind.name not in ("USER_OUTPUT",):
                raise IRError(f"the model writes {spec.kind.name.lower().replace('_', ' ')} "
                              f"'{spec.target}' during forward; DLAVM imports pure inference graphs")
        mod = self.mod = Module()
        self._keep_weights = keep_weights
        params: list = []
        for node in ep.graph.nodes:
            if node.op != "placeholder":
                continue
            self.span = span_of(node)
            spec = kinds[node.name]
            val = node.meta.get("val")
            if spec.kind.name == "USER_INPUT" and isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool):
                # A size passed as an argument (torch.compile's graphs take SymInts): a symbolic size of
                # the function, bound at run time from the shapes of its tensors, not an input of it.
                self.env[node] = self.syms.convert(val)
            elif spec.kind.name == "USER_INPUT":
                v = Var(node.name, self.out_type(node), self.span)
                params.append(v)
                self.env[node] = v
            elif spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                self.env[node] = self._weight(mod, spec, node, keep_weights)
            else:
                raise IRError(f"unsupported input kind {spec.kind.name} for %{node.name}")
        outs = self._walk(ep.graph, ep.graph_module)
        for o in outs:
            if not isinstance(o, Node):
                raise IRError(f"the model returns {o!r}, not a tensor; return tensors only")
        mod.add(Function(name, params, outs[0] if len(outs) == 1 else Tuple(outs)))
        return mod

    def _walk(self, graph, owner) -> list:
        """Convert the non-placeholder nodes of ``graph`` (placeholders already in
        ``self.env``); return the converted outputs. ``owner`` holds submodules."""
        for node in graph.nodes:
            self.span = span_of(node)
            if node.op == "placeholder":
                if node not in self.env:
                    raise IRError(f"placeholder %{node.name} has no value")
            elif node.op == "get_attr":
                self.env[node] = _Submodule(getattr(owner, node.target))
            elif node.op == "call_function":
                if node.target in _INLINED_HOPS:
                    self.env[node] = self._inline(node)
                else:
                    self.env[node] = self._convert(node)
            elif node.op == "output":
                return [self._arg(a) for a in node.args[0]]
            else:
                raise IRError(f"unsupported fx node kind '{node.op}' (%{node.name})")
        raise IRError("graph has no output node")

    def _inline(self, node):
        """Inline a higher-order op that only wraps a subgraph in a grad/autocast mode."""
        hop = _INLINED_HOPS[node.target]
        args = [self._arg(a) for a in node.args]
        enabled, sub, operands = hop(args)
        if enabled is not None:
            raise IRError(f"%{node.name}: a region under torch.autocast(enabled=True) changes dtypes; "
                          f"export the model in its inference dtype instead ({self.span})")
        sub_gm = sub.gm
        placeholders = [n for n in sub_gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(operands):
            raise IRError(f"%{node.name}: subgraph takes {len(placeholders)} inputs, got {len(operands)}")
        for ph, value in zip(placeholders, operands):
            self.env[ph] = value
        return tuple(self._walk(sub_gm.graph, sub_gm))

    def _weight(self, mod: Module, spec, node, keep: bool) -> Constant:
        target = spec.target
        data = self.ep.state_dict.get(target)
        if data is None:
            data = self.ep.constants.get(target)
        if data is None:
            raise IRError(f"weight '{target}' of %{node.name} is missing from the exported program")
        if not isinstance(data, torch.Tensor):
            raise IRError(f"constant '{target}' is a {type(data).__name__}, not a tensor")
        ty = TensorType(tuple(int(d) for d in data.shape), dtype_name(data.dtype))
        if keep and data.device.type != "meta":
            if data.dtype == torch.bfloat16:
                raise IRError(f"weight '{target}' is bfloat16; convert the model to float32 or "
                              "float16 before import (numpy has no bfloat16)")
            mod.params[target] = data.detach().cpu().contiguous().numpy()
        else:
            mod.params[target] = None
        return Constant(target, ty, self.span)

    def _convert(self, node):
        val = node.meta.get("val")
        target = node.target
        # Symbolic-size arithmetic (sym_size, operator.add on SymInts, ...):
        # torch already computed the value as an expression.
        if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) and \
                not (isinstance(val, int) and target in CONVERTERS):
            return self.syms.convert(val)
        if target is operator.getitem:
            seq, idx = self._arg(node.args[0]), node.args[1]
            return seq[idx]
        user = user_host_op_of(target)
        if user is not None:
            out = self._host_call(node, user)
            self._check(node, out)
            return out
        fn = CONVERTERS.get(target)
        if fn is None:
            raise UnsupportedOpError(
                f"unsupported ATen op '{_op_name(target)}' at node %{node.name} "
                f"({self.span}); run `dlavm ops` for the supported ATen ops")
        args = [self._arg(a) for a in node.args]
        kwargs = {k: self._arg(v) for k, v in node.kwargs.items()
                  if k not in ("device", "pin_memory", "layout", "memory_format", "non_blocking")}
        if isinstance(kwargs.get("dtype"), torch.dtype):
            kwargs.pop("dtype")  # the result dtype is torch's metadata, which _check compares against
        try:
            out = fn(self, node, *args, **kwargs)
        except UnsupportedOpError:
            raise
        except IRError as e:
            raise IRError(f"while importing '{_op_name(target)}' at node %{node.name} ({self.span}): {e}") from None
        self._check(node, out)
        return out

    def _host_call(self, node, user):
        """A call of user host op ``user`` (``dlavm.host_ops``): one graph node of that name with the
        call's tensors (and symbolic sizes, as 0-d tensors) as operands and torch's result type."""
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            n = len(val) if isinstance(val, (list, tuple)) else 0
            raise IRError(f"host op '{user.name}' at node %{node.name} returns "
                          f"{f'{n} values' if n else type(val).__name__}; a host op must return one tensor "
                          f"({self.span})")
        operands: list = []

        def operand(x):
            if isinstance(x, Node):
                operands.append(x)
                return ("tensor", len(operands) - 1)
            if isinstance(x, sym.Expr) and not x.is_const:
                operands.append(call("shape_value", value=x, span=self.span))
                return ("int", len(operands) - 1)
            return None

        def plain(x):
            if isinstance(x, sym.Expr):
                return x.value if x.is_const else x
            if isinstance(x, torch.dtype):
                return dtype_name(x)
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x

        args = [plain(self._arg(a)) for a in node.args]
        kwargs = {k: plain(self._arg(v)) for k, v in node.kwargs.items()
                  if k not in ("device", "pin_memory", "layout", "memory_format")}
        try:
            template = host_ops.encode_call(args, kwargs, operand)
        except TypeError as e:
            raise IRError(f"host op '{user.name}' at node %{node.name}: {e} ({self.span})") from None
        t = self.out_type(node)
        return call(user_host_op(user.name), *operands, shape=t.shape, dtype=t.dtype, call=template,
                    span=self.span)

    def _check(self, node, out):
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and isinstance(out, Node):
            want = self.type_of_val(val)
            got = out.type
            if got.dtype != want.dtype or got.ndim != want.ndim or not all(
                    _same_dim(a, b) for a, b in zip(got.shape, want.shape)):
                raise IRError(f"importing '{_op_name(node.target)}' at node %{node.name} gave {got} "
                              f"but torch says {want} ({self.span})")


def _same_dim(a, b) -> bool:
    """Structurally equal, or equal at sample points spanning the variables' bounds."""
    if a == b:
        return True
    vars_ = sorted(a.free_vars() | b.free_vars(), key=str)
    if not vars_:
        return False
    for pick in range(4):
        env = {}
        for v in vars_:
            lo, hi = sym.bounds(v)
            lo = 0 if lo is None else lo
            hi = lo + 64 if hi is None else hi
            env[v] = (lo, hi, (lo + hi) // 2, min(hi, lo + 1))[pick]
        if sym.evaluate(a, env) != sym.evaluate(b, env):
            return False
    return True


class _Submodule:
    """A ``get_attr`` of a subgraph (the body of a higher-order op)."""

    def __init__(self, gm):
        self.gm = gm


def _set_grad_args(args):
    # wrap_with_set_grad_enabled(enabled, subgraph, *operands): grad mode does
    # not change inference values, so the body is inlined as is.
    return None, args[1], args[2:]


def _autocast_args(args):
    # wrap_with_autocast(device_type, dtype, enabled, cache_enabled, subgraph, *operands)
    return (None if not args[2] else True), args[4], args[5:]


_INLINED_HOPS = {}
for _name, _fn in (("wrap_with_set_grad_enabled", _set_grad_args), ("wrap_with_autocast", _autocast_args)):
    _hop = getattr(torch.ops.higher_order, _name, None)
    if _hop is not None:
        _INLINED_HOPS[_hop] = _fn


def needs_decomposition(ep) -> list:
    """The ops of ``ep`` that our converters cannot take directly (unknown or mutating).

    Empty means the exported graph can be converted without
    ``run_decompositions``, which for a 7B model saves most of the import time.
    """
    missing = []
    for gm in ep.graph_module.modules():
        if not isinstance(gm, torch.fx.GraphModule):
            continue
        for n in gm.graph.nodes:
            if n.op != "call_function":
                continue
            t = n.target
            schema = getattr(t, "_schema", None)
            if schema is not None and schema.is_mutable:
                missing.append(str(t))
            elif t in CONVERTERS or t in _INLINED_HOPS or t is operator.getitem or user_host_op_of(t):
                continue
            elif isinstance(n.meta.get("val"), (torch.SymInt, int)) and not isinstance(n.meta.get("val"), bool):
                continue  # size arithmetic, taken from metadata
            else:
                missing.append(str(t))
    return sorted(set(missing))


def user_host_op_of(target):
    """The user host op (``@dlavm.host_op``) registered for fx target ``target``, or None."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return None
    return host_ops.lookup(schema.name, getattr(target, "_overloadname", "default") or "default")


def _op_name(target) -> str:
    name = getattr(target, "name", None)
    if callable(name):
        return f"aten.{target.name().split('::')[-1]}"
    return str(getattr(target, "__name__", target))


def dim_names_from_spec(ep, dynamic_shapes) -> dict:
    """sympy symbol -> the user's ``Dim`` name, read off the input placeholders."""
    if dynamic_shapes is None:
        return {}
    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs = list(dynamic_shapes.values()) if isinstance(dynamic_shapes, dict) else list(dynamic_shapes)
    names: dict = {}
    for pname, spec in zip(user, specs):
        if spec is None:
            continue
        items = spec.items() if isinstance(spec, dict) else enumerate(spec)
        shape = placeholders[pname].meta["val"].shape
        for axis, dim in items:
            if dim is None or not hasattr(dim, "__name__"):
                continue
            d = shape[axis]
            if isinstance(d, torch.SymInt) and d.node.expr.is_Symbol:
                names.setdefault(d.node.expr, dim.__name__)
    return names


def export_module(module, example_inputs, dynamic_shapes=None, strict: bool = False, timings: dict | None = None,
                  on_stage=None):
    """``torch.export``, then ``run_decompositions`` with our table only if the
    graph holds ops our converters cannot take directly (see
    ``needs_decomposition``; ``on_stage("decompose")`` is called before it).
    Returns the ExportedProgram."""
    t0 = time.perf_counter()
    try:
        ep = torch.export.export(module, tuple(example_inputs), dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as e:  # noqa: BLE001 -- the user's model code runs in here and may raise anything
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise ExportError(f"torch.export of {type(module).__name__} failed: {type(e).__name__}: {first}") from e
    t1 = time.perf_counter()
    missing = needs_decomposition(ep)
    if missing:
        if on_stage:
            on_stage("decompose")
        # Functionalise and decompose only through our table; the converters
        # report whatever is still unsupported afterwards, with its source line.
        ep = ep.run_decompositions(decomposition_table())
    t2 = time.perf_counter()
    if timings is not None:
        timings["export_s"] = t1 - t0
        timings["decompose_s"] = t2 - t1
        timings["decomposed_for"] = missing
    return ep


def from_exported_program(ep, dynamic_shapes=None, name: str = "forward", keep_weights: bool = True,
                          timings: dict | None = None) -> Module:
    """Convert an ExportedProgram (after ``run_decompositions``) to an IR module
    with one function ``name``. Symbolic dims keep torch's bounds and take the
    names of the user's ``Dim`` objects."""
    t0 = time.perf_counter()
    mod = Importer(ep, dim_names_from_spec(ep, dynamic_shapes)).run(name, keep_weights)
    if timings is not None:
        timings["convert_s"] = time.perf_counter() - t0
    return mod


def from_torch(module, example_inputs, dynamic_shapes=None, name: str = "forward",
               keep_weights: bool = True, timings: dict | None = None, on_stage=None) -> Module:
    """Export ``module`` with ``dynamic_shapes`` (torch.export.Dim) and import it; ``on_stage(name)`` is
    called as the stages ``decompose`` (when needed) and ``convert`` start."""
    if isinstance(dynamic_shapes, dict) and dynamic_shapes:
        params = list(inspect.signature(module.forward).parameters)
        unknown = set(dynamic_shapes) - set(params)
        if unknown:
            raise IRError(f"dynamic_shapes names {sorted(unknown)}, which are not arguments of "
                          f"{type(module).__name__}.forward{tuple(params)}")
    ep = export_module(module, example_inputs, dynamic_shapes, timings=timings, on_stage=on_stage)
    if on_stage:
        on_stage("convert")
    return from_exported_program(ep, dynamic_shapes, name, keep_weights, timings)
