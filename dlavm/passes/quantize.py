"""``quantize``: choose each weight's device format and expose what the device computes with.

Formats (doc/isa.md 7.2, packing in ``dlavm.target.layout``): ``int4``
(symmetric, one fp16 scale per group of the target's ``int4_group`` input
channels), ``int8`` (symmetric, one fp16 scale per output channel, exact
partial sums over the target's ``int8_block`` channels) and ``fp16``. The choice is
per model (``weights``) or per weight (``per_layer``: a dict or a callable
``name -> fmt | None``), keyed by the model's own weight name; a weight the
compiler derived (a transposed or row-sliced GPT-2 ``Conv1D`` weight) uses
its source weight's choice unless named itself.

The target comes from ``quantize(target=...)``, else from the running
``PassContext`` (``device_pipeline(target=...)`` and the compiler set it),
else the default target ``vcu128``.

Guarantees afterwards: every ``dev.mvm`` has ``wfmt`` set to the chosen
format, and every device op has the numerics parameters its spec lists
(``numerics``: ``int4_group``, ``int8_block`` and ``tree_lanes`` for
``dev.mvm``, ``tree_lanes`` for the norms, softmax and attention) copied
from the target as attributes, so the reference executor computes what
this target will; lowering refuses the graph on a target whose value
differs. ``mod.attrs["weight_formats"]``
maps each mvm weight to its format, ``mod.attrs["numerics"]`` records the
target's ``int4_group``, ``int8_block`` and ``tree_lanes``. A device graph
built by hand gets the same attributes from ``bind_numerics``.
The master weights in ``mod.params`` stay float32: packing quantises them
(``layout.quantize_int4`` / ``quantize_int8``) and the reference kernels
fake-quantise them the same way, so ``fake_quantized_params`` gives, for the
model's own weights, exactly the values the device multiplies by.

Head dims the device cannot run are padded before this pass (``pad_heads``);
the padded weights are derived weights with a recipe, so their formats follow
their source weights' choice and ``fake_quantized_params`` maps them back.
"""
from __future__ import annotations

import numpy as np

from ..ir import Call, Constant, Module, Mutator, PassContext, module_pass, post_order
from ..ir.op import device_spec
from ..target import get_target, layout
from ..target.isa import WEIGHT_FORMATS

#: The target a ``quantize`` outside any compilation (no target given, none in the pass context) uses.
DEFAULT_TARGET = "vcu128"



def fake_quant(w: np.ndarray, fmt: str, group: int | None = None) -> np.ndarray:
    """dequant(quantize(w)) as float32: the weight the device effectively uses (``group``: the
    int4 group size, the target's ``int4_group``; int8 and fp16 do not use it)."""
    w = np.asarray(w, dtype=np.float32)
    if fmt == "int4":
        if group is None:
            raise ValueError("int4 fake quantisation needs the group size (the target's int4_group, "
                             "set on each dev.mvm by the quantize pass)")
        q, s = layout.quantize_int4(w, group)
        return (q.astype(np.float32) * np.repeat(s.astype(np.float32), group, axis=1)[:, :w.shape[1]])
    if fmt == "int8":
        q, s = layout.quantize_int8(w)
        return q.astype(np.float32) * s.astype(np.float32)[:, None]
    if fmt == "fp16":
        return w.astype(np.float16).astype(np.float32)
    raise ValueError(f"unknown weight format {fmt!r}; formats are {list(WEIGHT_FORMATS)}")


def _source(mod: Module, name: str) -> str:
    return mod.attrs.get("param_recipes", {}).get(name, {}).get("source", name)


def _choose(mod, name, default, per_layer):
    fmt = None
    for key in (name, _source(mod, name)):
        if per_layer is None:
            break
        fmt = per_layer(key) if callable(per_layer) else per_layer.get(key)
        if fmt is not None:
            break
    fmt = fmt or default
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"weight @{name}: format {fmt!r} is not one of {list(WEIGHT_FORMATS)}")
    return fmt


def numerics_attrs(op: str, target) -> dict:
    """The attributes fixing the numerics of device op ``op`` on ``target``: each target field its
    spec lists in ``numerics``, with the target's value."""
    return {name: getattr(target, name) for name in device_spec(op, "quantize").numerics}


class _BindNumerics(Mutator):
    def __init__(self, target):
        super().__init__()
        self.target = target

    def visit_call(self, node):
        node = super().visit_call(node)
        if not node.op.name.startswith("dev."):
            return node
        attrs = {**node.attrs, **numerics_attrs(node.op.name, self.target)}
        return node if attrs == node.attrs else Call(node.op, node.args, attrs, span=node.span)


def bind_numerics(mod: Module, target) -> Module:
    """``mod`` (a device graph, e.g. built by hand) with every device op's numerics attributes set
    from ``target`` (a ``Target`` or a name), as ``quantize`` sets them; weight formats unchanged."""
    tgt = get_target(target)
    out = Module(params=mod.params, attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(_BindNumerics(tgt).mutate_function(f))
    return out


class _SetFormat(_BindNumerics):
    def __init__(self, choose, target):
        super().__init__(target)
        self.choose, self.chosen = choose, {}

    def visit_call(self, node):
        node = super().visit_call(node)
        if node.op.name != "dev.mvm" or not isinstance(node.args[1], Constant):
            return node
        name = node.args[1].name
        fmt = self.chosen.setdefault(name, self.choose(name))
        if node.attrs["wfmt"] == fmt:
            return node
        return Call(node.op, node.args, {**node.attrs, "wfmt": fmt}, span=node.span)


def quantize(weights: str = "int4", per_layer=None, target=None):
    """The ``quantize`` pass choosing ``weights`` for every mvm weight, overridden by ``per_layer``,
    with the numerics of ``target`` (a ``Target`` or a name; default: the pass context's, module
    docstring)."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights={weights!r} is not one of {list(WEIGHT_FORMATS)}")

    @module_pass("quantize")
    def run(mod: Module) -> Module:
        """Set every dev.mvm's wfmt per weight and its K-block from the target; record
        mod.attrs['weight_formats'] and mod.attrs['numerics']."""
        tgt = target if target is not None else PassContext.current().target
        tgt = get_target(tgt if tgt is not None else DEFAULT_TARGET)
        out = Module(params=mod.params, attrs=dict(mod.attrs))
        chosen: dict = {}
        for f in mod.functions.values():
            m = _SetFormat(lambda n: _choose(mod, n, weights, per_layer), tgt)
            out.add(m.mutate_function(f))
            chosen.update(m.chosen)
        out.attrs["weight_formats"] = dict(sorted(chosen.items()))
        out.attrs["numerics"] = {"target": tgt.name, "int4_group": tgt.int4_group, "int8_block": tgt.int8_block,
                                 "tree_lanes": tgt.tree_lanes}
        return out
    return run


def device_param_uses(mod: Module) -> dict:
    """name -> (format, int4 group) of every weight the device reads, as its op's spec says
    (``param_format``: mvm weights their ``wfmt`` with the mvm's ``int4_group``, RoPE tables
    'fp32'); every other weight (biases, norm parameters) is read as 'fp16'."""
    uses: dict = {}
    for f in mod.functions.values():
        for n in post_order(f.body):
            if not (isinstance(n, Call) and n.op.name.startswith("dev.")):
                continue
            spec = device_spec(n.op, "quantize")
            for i, a in enumerate(n.args):
                if not isinstance(a, Constant):
                    continue
                fmt = spec.param_format(n, i) if spec.param_format is not None else None
                if fmt is not None:
                    uses[a.name] = fmt
                else:
                    uses.setdefault(a.name, ("fp16", None))
    return uses


def _apply(step, x):
    op, a = step
    if op == "permute":
        return np.transpose(x, a["dims"])
    if op == "slice":
        idx = [slice(None)] * x.ndim
        idx[a["axis"]] = slice(a["start"], a["end"], a["step"])
        return x[tuple(idx)]
    if op == "reshape":
        return x.reshape(a["shape"])
    if op == "pad_heads":
        from .pad_heads import pad_axis
        return pad_axis(x, a["axis"], a["heads"], a["d"], a["d_pad"], a["layout"])
    if op == "channel_affine":  # fold_batchnorm: x * scale + shift per output channel (axis 0)
        return _channel_affine(x, a["scale"], a["shift"])
    return x


def _channel_affine(x, scale, shift, inverse: bool = False):
    shape = (-1,) + (1,) * (np.ndim(x) - 1)
    s, t = np.asarray(scale, np.float64).reshape(shape), np.asarray(shift, np.float64).reshape(shape)
    x = np.asarray(x, np.float64)
    return ((x - t) / s if inverse else x * s + t).astype(np.float32)


def _write_back(src, steps, value):
    vals = [src]
    for st in steps:
        vals.append(_apply(st, vals[-1]))
    cur = value
    for (op, a), prev in zip(reversed(steps), reversed(vals[:-1])):
        if op == "permute":
            cur = np.transpose(cur, np.argsort(a["dims"]))
        elif op == "slice":
            base = np.array(prev, copy=True)
            idx = [slice(None)] * base.ndim
            idx[a["axis"]] = slice(a["start"], a["end"], a["step"])
            base[tuple(idx)] = cur
            cur = base
        elif op == "reshape":
            cur = cur.reshape(prev.shape)
        elif op == "pad_heads":
            from .pad_heads import unpad_axis
            cur = unpad_axis(cur, a["axis"], a["heads"], a["d"], a["d_pad"], a["layout"])
        elif op == "channel_affine":
            cur = _channel_affine(cur, a["scale"], a["shift"], inverse=True)
        else:
            cur = cur.astype(prev.dtype)
    return cur


def fake_quantized_params(mod: Module, source_params: dict) -> dict:
    """The model's own weights (``source_params``: name -> array, as imported) replaced by what
    the device multiplies by: mvm weights fake-quantised in their format, biases and norm
    parameters rounded to fp16. Weights the device does not read are returned unchanged; a
    derived weight (``param_recipes``) is written back through its recipe (every format is
    row-wise in the mvm orientation, so slices quantise independently). A head-padded weight
    (``pad_heads``) is fake-quantised padded, as the device packs it, and its real lanes are
    written back: for an output projection padded along K, int4 groups then differ from the
    unpadded weight's, and the result is what the device multiplies by (doc/passes.md)."""
    out = {k: np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else None).copy()
           for k, v in source_params.items() if v is not None}  # integer buffers (token type ids) keep their dtype
    recipes = mod.attrs.get("param_recipes", {})
    for name, (fmt, group) in sorted(device_param_uses(mod).items()):
        if fmt == "fp32":
            continue
        data = mod.params[name]
        fq = fake_quant(data, fmt, group) if data.ndim == 2 and fmt != "fp16" else \
            np.asarray(data, np.float32).astype(np.float16).astype(np.float32)
        r = recipes.get(name)
        if r is None:
            if name in out:
                out[name] = fq
        elif r["source"] in out:
            out[r["source"]] = _write_back(out[r["source"]], r["steps"], fq)
    return out


def fake_quantized_module(source: Module, device: Module) -> Module:
    """``source`` (an imported, ATen-level module) computing with the weights the
    device multiplies by (``fake_quantized_params``), as a reference for the
    compiled model.

    A weight the host reads for an ``embedding`` lookup keeps its original
    values there, as on the device: with tied embeddings (GPT-2's LM head is
    the token embedding) only the LM-head use is quantised. The lookup then
    reads a copy named ``<name>@host``.
    """
    params = fake_quantized_params(device, source.params)
    changed = {k for k, v in params.items()
               if source.params.get(k) is not None and not np.array_equal(v, source.params[k])}

    class _UntieLookups(Mutator):
        def visit_call(self, node):
            node = super().visit_call(node)
            if node.op.name == "embedding" and isinstance(node.args[0], Constant) and node.args[0].name in changed:
                w = node.args[0]
                host = Constant(f"{w.name}@host", w.type, w.span)
                params[host.name] = np.asarray(source.params[w.name], dtype=np.float32)
                return Call(node.op, (host,) + node.args[1:], node.attrs, span=node.span)
            return node

    out = Module(params=params, attrs=dict(source.attrs))
    for fn in source.functions.values():
        out.add(_UntieLookups().mutate_function(fn))
    return out
