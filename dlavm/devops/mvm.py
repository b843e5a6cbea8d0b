"""``dev.mvm``: fp16 activations times a quantised weight matrix, with the fused epilogue.

out = epilogue(x . W^T) on the MVM unit (doc/isa.md 7.2-7.3): fp16 x [..., K]
times the master weight W [N, K], quantised when packed to ``wfmt``
(``int4``: symmetric, one fp16 scale per group of ``int4_group`` input
channels; ``int8``: per output channel, exact partial sums over blocks of
``int8_block`` channels; ``fp16``, summed by the ``tree_lanes``-wide adder
tree), fp32 accumulation, then bias (affine), a residual add or multiply,
ReLU, or a row argmax. ``int4_group``, ``int8_block`` and ``tree_lanes``
are set from the target by the ``quantize`` pass, so the reference kernel
needs no target; lowering refuses a value that differs from the target's.
"""
from __future__ import annotations

import math

import numpy as np

from .. import sym
from ..ir import Call, IRTypeError, TensorType, attr, call
from ..ir.types import dtype_category
from ..ir.ops.common import tensor
from ..passes.fold import free_dims
from ..passes.patterns_match import (Pat, Pattern, is_float, is_op, is_weight, reshape, to_device, to_host,
                                     with_optional_bias)
from ..target import layout
from ..target.isa import ADDRESS_UNIT, ARGMAX_RECORD_BYTES, RESIDUAL_MODES, WEIGHT_FORMATS
from ..task.ir import For
from ..task.lower import LowerContext, numel, ub
from .conv import PATTERNS as CONV_PATTERNS
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op

#: The target field each weight format's accumulation order depends on (doc/isa.md 7.1-7.2): the
#: int4 scale group, the int8 exact block, the adder tree of fp16 products. Each is an attribute.
NUMERICS_ATTR = {"int4": "int4_group", "int8": "int8_block", "fp16": "tree_lanes"}
NUMERICS = tuple(NUMERICS_ATTR.values())


def type_rel(types, attrs):
    x, w = f16(types[0], "dev.mvm", "x"), tensor(types[1], "dev.mvm", "weight")
    if attrs["wfmt"] not in WEIGHT_FORMATS:
        raise IRTypeError(f"op 'dev.mvm': wfmt must be one of {WEIGHT_FORMATS}, got {attrs['wfmt']!r}")
    if attrs["res"] not in RESIDUAL_MODES:
        raise IRTypeError(f"op 'dev.mvm': res must be one of {RESIDUAL_MODES}, got {attrs['res']!r}")
    for key in NUMERICS:
        if attrs[key] is not None and attrs[key] < 1:
            raise IRTypeError(f"op 'dev.mvm': {key} must be positive, got {attrs[key]}")
    if w.ndim != 2 or x.shape[-1] != w.shape[1] or dtype_category(w.dtype) != "float":
        raise IRTypeError(f"op 'dev.mvm': x {x} does not match weight {w} ([N, K] float)")
    want = int(attrs["bias"]) + int(attrs["res"] != "none")
    if len(types) - 2 != want:
        raise IRTypeError(f"op 'dev.mvm': expected {want} extra inputs (bias, resid), got {len(types) - 2}")
    i = 2
    out_shape = x.shape[:-1] + (w.shape[0],)
    if attrs["bias"]:
        b = tensor(types[i], "dev.mvm", "bias")
        if b.shape != (w.shape[0],):
            raise IRTypeError(f"op 'dev.mvm': bias {b} must be [{w.shape[0]}]")
        i += 1
    if attrs["res"] != "none":
        r = f16(types[i], "dev.mvm", "resid")
        if r.shape != out_shape:
            raise IRTypeError(f"op 'dev.mvm': resid {r} must have shape [{', '.join(map(str, out_shape))}]")
    if attrs["argmax"]:
        return TensorType(x.shape[:-1], "int32")
    return TensorType(out_shape, "float16")


# --- legalization ---------------------------------------------------------------------------------

def _matrix(node) -> bool:
    return is_weight(node) and node.type.ndim == 2


def _linear(node, ctx, x, w, b=None):
    extra = [b] if b is not None else []
    return to_host(call("dev.mvm", to_device(x), w, *extra, bias=b is not None), node.type.dtype)


def plain_mvm(y, allow_relu=True) -> bool:
    """A ``dev.mvm`` with no epilogue yet (bias and, if ``allow_relu``, ReLU aside)."""
    return (is_op(y, "dev.mvm") and y.attrs["res"] == "none" and not y.attrs["argmax"]
            and (allow_relu or not y.attrs["relu"]))


def _relu(node, ctx, y):
    if not ctx.single_use(y):
        return None
    return to_host(Call(y.op, y.args, {**y.attrs, "relu": True}), node.type.dtype)


def _relu_through_layout(node, ctx, v):
    """relu(layout(to_host(mvm))) = layout(to_host(mvm(relu=True))): ReLU commutes with reshape and
    permute (a convolution's mvm is followed by the NCHW reshape/permute, ``conv.py``)."""
    chain, inner = [], v
    while is_op(inner, "reshape", "permute"):
        if not ctx.single_use(inner):
            return None
        chain.append(inner)
        inner = inner.args[0]
    if not (chain and is_op(inner, "dev.to_host") and ctx.single_use(inner)):
        return None
    y = inner.args[0]
    if not (plain_mvm(y, allow_relu=False) and ctx.single_use(y)):
        return None
    out = to_host(Call(y.op, y.args, {**y.attrs, "relu": True}), inner.attrs["dtype"])
    for c in reversed(chain):
        out = Call(c.op, (out,), c.attrs, span=c.span)
    return out


def _argmax(node, ctx, h, y):
    if not (ctx.single_use(h) and ctx.single_use(y)):
        return None
    return to_host(Call(y.op, y.args, {**y.attrs, "argmax": True}), node.type.dtype)


def _last_axis(node) -> bool:
    return node.attrs["axis"] % node.args[0].type.ndim == node.args[0].type.ndim - 1


def _slice_of_linear(node, ctx, x):
    """Columns [a, b) of a linear's output = a linear with rows [a, b) of its weight (and bias)."""
    inner, chain = x, []
    while is_op(inner, "reshape") and inner.type.shape[-1] == inner.args[0].type.shape[-1]:
        chain.append(inner)
        inner = inner.args[0]
    if not (is_op(inner, "dev.to_host") and plain_mvm(inner.args[0]) and ctx.single_use(inner.args[0])):
        return None
    if chain and not all(ctx.single_use(c) for c in chain[1:]):
        return None
    y = inner.args[0]
    a, b = node.attrs["start"], node.attrs["end"]
    w = call("slice", y.args[1], axis=0, start=a, end=b, step=1)
    extra = [call("slice", y.args[2], axis=0, start=a, end=b, step=1)] if y.attrs["bias"] else []
    out = to_host(Call(y.op, (y.args[0], w, *extra), y.attrs), inner.type.dtype)
    n = node.type.shape[-1]
    for c in reversed(chain):
        out = reshape(out, tuple(c.attrs["shape"][:-1]) + (n,))
    return out


def _layout_ids(chain, ids, env):
    """Apply the reshape/permute/slice ``chain`` (innermost first) to the numpy array ``ids``."""
    for c in chain:
        a = c.attrs
        if c.op.name == "reshape":
            ids = ids.reshape([sym.evaluate(d, env) for d in a["shape"]])
        elif c.op.name == "permute":
            ids = np.transpose(ids, a["dims"])
        else:
            idx = [slice(None)] * ids.ndim
            idx[a["axis"]] = slice(sym.evaluate(a["start"], env), sym.evaluate(a["end"], env), a["step"])
            ids = ids[tuple(idx)]
    return ids


def _column_range(node, chain, h, probes):
    """``(a, b)`` when ``node`` (the last of ``chain`` over ``h = to_host(mvm)``) holds exactly columns
    ``[a, b)`` of every row of ``h``, in row-major order, at every probed size; else None."""
    out = None
    for env in probes:
        shape = [sym.evaluate(d, env) for d in h.type.shape]
        n = shape[-1]
        ids = _layout_ids(chain, np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape), env).reshape(-1)
        rows = int(np.prod(shape[:-1]))
        if rows == 0 or ids.size % rows:
            return None
        w = ids.size // rows
        a = int(ids[0] % n) if ids.size else 0
        want = (np.arange(rows)[:, None] * n + a + np.arange(w)[None, :]).reshape(-1)
        if a + w > n or not np.array_equal(ids, want) or out not in (None, (a, a + w)):
            return None
        out = (a, a + w)
    return out


def _slice_of_split_linear(node, ctx, x):
    """A slice of a layout (reshape/permute) of a linear's output that is a column range of it, in row-major
    order (``nn.MultiheadAttention`` splits its packed q/k/v projection as
    ``reshape [.., 3, E] -> permute -> slice``): a linear with those weight rows, reshaped."""
    chain, inner = [node], x
    while is_op(inner, "reshape", "permute"):
        chain.append(inner)
        inner = inner.args[0]
    if len(chain) < 3 or not (is_op(inner, "dev.to_host") and plain_mvm(inner.args[0])):
        return None
    # the layout chain may be shared only by other slices (the q, k and v of one packed projection), so
    # once each is rewritten the wide mvm has no user left
    users = [u for c in chain[1:] + [inner] for u in ctx.uses.get(c, ())]
    if not ctx.single_use(inner.args[0]) or not all(any(u is c for c in chain) or is_op(u, "slice") for u in users):
        return None
    dims = sorted({v for c in chain for v in free_dims(c)}, key=str)
    if len(dims) > 1:
        return None
    probes = [{}]
    if dims:
        lo, hi = sym.bounds(dims[0])
        if hi is None:
            return None
        probes = [{dims[0]: v} for v in sorted({lo, hi, 2, 3}) if lo <= v <= hi]
    cols = _column_range(node, list(reversed(chain)), inner, probes)
    if cols is None:
        return None
    y = inner.args[0]
    a, b = cols
    w = call("slice", y.args[1], axis=0, start=a, end=b, step=1)
    extra = [call("slice", y.args[2], axis=0, start=a, end=b, step=1)] if y.attrs["bias"] else []
    out = to_host(Call(y.op, (y.args[0], w, *extra), y.attrs), inner.type.dtype)
    return reshape(out, tuple(node.type.shape))


_X = Pat.any("x", where=is_float)
_MVM_OUT = Pat("dev.to_host", Pat("dev.mvm", where=plain_mvm, name="y"), name="h")


PATTERNS = (
    Pattern("linear->mvm", with_optional_bias("linear", _X, _matrix),
            _linear, "linear(x, W[, b]) -> dev.mvm(bias)", priority=30,
            decline="linear needs a float input and weight (and bias) tensors that are weights"),
    Pattern("relu->mvm.relu",
            Pat("relu", Pat("dev.to_host", Pat("dev.mvm", where=lambda y: plain_mvm(y, allow_relu=False),
                                                name="y"))),
            _relu, "relu(mvm) -> dev.mvm(relu=True)", priority=20),
    Pattern("relu-through-layout->mvm.relu", Pat("relu", Pat(("reshape", "permute"), name="v")),
            _relu_through_layout, "relu(reshape/permute(mvm)) -> reshape/permute(dev.mvm(relu=True))", priority=20),
    Pattern("argmax->mvm.argmax",
            Pat("argmax", _MVM_OUT, attrs={"keepdim": False}, where=_last_axis),
            _argmax, "argmax(mvm, -1) -> dev.mvm(argmax=True)", priority=20),
    Pattern("slice-of-linear",
            Pat("slice", Pat.any("x"), attrs={"step": 1}, where=_last_axis),
            _slice_of_linear, "columns of a linear -> linear of weight rows", priority=20),
    Pattern("slice-of-split-linear", Pat("slice", Pat(("reshape", "permute"), name="x"), attrs={"step": 1}),
            _slice_of_split_linear, "a column range of a linear through reshape/permute (packed q/k/v) -> "
                                    "linear of weight rows", priority=20),
) + CONV_PATTERNS


# --- reference kernel -----------------------------------------------------------------------------

def reference(args, attrs, ev):
    import torch

    from ..reference.device_numerics import mvm_accumulate, numerics, param16, weight_array
    x, w = args[0], args[1]
    lead = x.shape[:-1]
    fmt = attrs["wfmt"]
    used = {name: numerics(attrs, name, "dev.mvm") if name == NUMERICS_ATTR[fmt] else attrs[name]
            for name in NUMERICS}
    acc = mvm_accumulate(x.reshape(-1, x.shape[-1]), weight_array(w), fmt, **used)
    i = 2
    if attrs["bias"]:
        acc = acc + param16(args[i]).to(acc.device)
        i += 1
    if attrs["res"] != "none":
        r = args[i].reshape(-1, acc.shape[-1]).float()
        acc = acc + r if attrs["res"] == "add" else acc * r
    if attrs["relu"]:
        acc = torch.where(acc < 0, torch.zeros_like(acc), acc)
    if attrs["argmax"]:
        return torch.argmax(acc, dim=-1).to(torch.int32).reshape(lead)
    return acc.to(torch.float16).reshape(lead + (acc.shape[-1],))


# --- lowering -------------------------------------------------------------------------------------

def rows_per_tile(target, k: int, out_row_bytes: int) -> int:
    """Largest token tile with ``m * k * 2 <= act_buffer_bytes`` (doc/isa.md section 8) such that
    every tile starts on an ``ADDRESS_UNIT`` boundary in the input (rows of ``2k`` bytes), the
    output and the residual (rows of ``out_row_bytes``: ``2n``, or 8 for argmax records); 0 when
    not even one aligned tile fits."""
    step = 1
    for row in (2 * k, out_row_bytes):
        step = math.lcm(step, ADDRESS_UNIT // math.gcd(ADDRESS_UNIT, row))
    return target.act_buffer_bytes // (2 * k) // step * step


def _out_row_bytes(node) -> int:
    return ARGMAX_RECORD_BYTES if node.attrs["argmax"] else 2 * int(node.args[1].type.shape[0])


def check(node, target) -> None:
    """The weight format and K against the target."""
    fmt = node.attrs["wfmt"]
    if fmt not in target.weight_formats:
        raise ValueError(f"dev.mvm: weight format {fmt!r} is not supported by target "
                         f"'{target.name}' (it has {list(target.weight_formats)})")
    k = int(node.args[1].type.shape[1])
    if rows_per_tile(target, k, _out_row_bytes(node)) < 1:
        raise ValueError(f"dev.mvm: input width K={k} ({2 * k} bytes per token) exceeds the activation "
                         f"buffer of target '{target.name}' (act_buffer_bytes={target.act_buffer_bytes}) "
                         f"for one {ADDRESS_UNIT}-byte-aligned token tile")


def _pack_weight(ctx: LowerContext, w, fmt: str):
    """(weight addr, scale addr) of weight constant ``w`` packed in ``fmt``."""
    n, k = (int(d) for d in w.type.shape)
    g = ctx.target.int4_group
    wbytes, sbytes = layout.weight_bytes(fmt, n, k, g)
    cache: dict = {}

    def quant():
        if "q" not in cache:
            data = ctx.param(w)
            if data is None:
                cache["q"] = (None, None)
            elif fmt == "int4":
                cache["q"] = layout.quantize_pack_int4(data, g)
            elif fmt == "int8":
                cache["q"] = layout.quantize_int8(data)
            else:
                cache["q"] = (np.asarray(data, np.float32).astype(np.float16), None)
            if data is not None and ctx.on_progress:
                ctx.packed += 1
                ctx.on_progress("pack", ctx.packed, None, f"{w.name} -> {fmt} ({(wbytes + sbytes) / 2**20:.2f} MiB)")
        return cache["q"]

    wa = ctx.blob(f"{w.name}.{fmt}", lambda: quant()[0], wbytes)
    sa = ctx.blob(f"{w.name}.{fmt}.scale", lambda: quant()[1], sbytes) if sbytes else 0
    return wa, sa


def _affine(ctx: LowerContext, b, n: int):
    def make():
        data = ctx.param(b)
        if data is None:
            return None
        return np.stack([np.ones(n, np.float32), np.asarray(data, np.float32)]).astype(np.float16)
    return ctx.blob(f"{b.name}.aff", make, 4 * n)


def lower(ctx: LowerContext, node):
    """Tiles the token axis so each tile's activations fit ``act_buffer_bytes`` and every tile
    starts address-aligned (:func:`rows_per_tile`).

    One instruction when the bound of M fits; otherwise a loop over
    ``ceil(M / Mt)`` tiles whose last tile has ``min(Mt, M - i*Mt)`` rows.
    Every tile streams the whole weight (the ISA keeps no weights on chip
    between instructions), so the token loop is the only loop and its order
    does not change the weight traffic.
    """
    a = node.attrs
    x, w = node.args[0], node.args[1]
    fmt = a["wfmt"]
    n, k = (int(d) for d in w.type.shape)
    m = numel(x.type.shape[:-1])
    wa, sa = _pack_weight(ctx, w, fmt)
    extra = list(node.args[2:])
    aff = _affine(ctx, extra.pop(0), n) if a["bias"] else 0
    resid = ctx.addr(extra.pop(0)) if a["res"] != "none" else 0
    xa, out = ctx.addr(x), ctx.addr(node)
    orow = _out_row_bytes(node)
    mt = rows_per_tile(ctx.target, k, orow)  # >= 1: ``check`` ran first

    def one(mi, r0):
        return ctx.emit("mvm", comment=f"{fmt} [{m}x{k}]x[{n}x{k}]^T",
                        wfmt=fmt, affine=bool(a["bias"]), res=a["res"], relu=a["relu"], argmax=a["argmax"],
                        x=xa + r0 * 2 * k, w=wa, wscale=sa, out=out + r0 * orow, aff=aff,
                        resid=resid + r0 * 2 * n if resid else 0, m=mi, k=k, n=n)

    if ub(m) <= mt:
        return [one(m, 0)]
    trips = sym.ceildiv(m, mt)
    i = sym.Var(f"i{ctx.node_index}", 0, ub(trips) - 1)
    return [For(i, trips, (one(sym.smin(sym.const(mt), m - i * mt), i * mt),))]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    """Every weight format and epilogue; K = 32, so on a target with a small activation buffer the
    token tile edges fall inside the bound. And convolutions (``conv.py``): a 3x3 with padding (K = 27),
    a strided one, a patch embedding (stride == kernel, K = 48), each with its host im2col."""
    from .examples import host_input, one_op, seq_dim, weight
    seq, k, n = seq_dim(), 32, 24

    def case(name, wfmt="int4", **attrs):
        p = {}
        args = [host_input("x", seq, k), weight(p, "w", rng.standard_normal((n, k)) / math.sqrt(k))]
        if attrs.get("bias"):
            args.append(weight(p, "b", 0.1 * rng.standard_normal(n)))
        if attrs.get("res", "none") != "none":
            args.append(host_input("r", seq, n))
        dtype = "int32" if attrs.get("argmax") else "float32"
        out_row = ARGMAX_RECORD_BYTES if attrs.get("argmax") else 2 * n
        return OpExample(name, one_op("dev.mvm", args, p, dtype, wfmt=wfmt, **attrs),
                         edges=lambda t: (rows_per_tile(t, k, out_row),))

    def conv(name, c, k, o, wfmt, patch, **attrs):
        """A convolution as legalization leaves it (``conv.py``): host im2col, the mvm, host NCHW. The
        dynamic dim is the image height (a patch embedding: the batch of 8x8 images), width 8."""
        from ..ir import Constant, Function, Module, TensorType, Var, call
        from .conv import conv_as_mvm, im2col
        p, kk = {}, c * k * k
        shape = (seq, c, 8, 8) if patch else (1, c, seq, 8)
        x = Var("x", TensorType(tuple(sym.as_expr(d) for d in shape), "float32"))
        w4 = Constant("w4", TensorType(tuple(sym.const(d) for d in (o, c, k, k)), "float32"))
        bias = weight(p, "b", 0.1 * rng.standard_normal(o))
        node = call("conv2d", x, w4, bias, **attrs)
        w = weight(p, "w", rng.standard_normal((o, kk)) / math.sqrt(kk))
        out = conv_as_mvm(node, x, im2col(x, node), weight=w, wfmt=wfmt, relu=True)
        per_seq = int(node.type.shape[3]) * (int(node.type.shape[2]) if patch else 1)  # mvm rows per seq
        return OpExample(name, Module({"forward": Function("forward", [x], out)}, p),
                         edges=lambda t: (max(1, rows_per_tile(t, kk, 2 * o) // per_seq),))

    return (case("int4"), case("int8-bias-relu", "int8", bias=True, relu=True),
            case("fp16-res-add", "fp16", res="add"), case("int4-res-mul", res="mul"),
            case("argmax", argmax=True),
            conv("conv3x3-im2col", 3, 3, 16, "int8", False, padding=(1, 1)),
            conv("conv3x3-stride2-im2col", 4, 3, 8, "int4", False, stride=(2, 2), padding=(1, 1)),
            conv("patch-embed-4x4", 3, 4, 24, "int4", True, stride=(4, 4)))


SPEC = register_device_op(DeviceOpSpec(
    name="dev.mvm",
    inputs=("x", "weight", "*extra"),
    attrs={"wfmt": attr("str", "int4"), "bias": attr("bool", False), "res": attr("str", "none"),
           "relu": attr("bool", False), "argmax": attr("bool", False)},
    numerics=NUMERICS,
    type_rel=type_rel,
    doc="out = epilogue(x . W^T): x f16 [..., K], W [N, K] (float master weight, quantised to wfmt when "
        "packed), extra = [bias f16 [N]] if bias, then [resid f16 [..., N]] if res; out f16 [..., N], "
        "or int32 [...] row argmax; int4_group / int8_block / tree_lanes: the target's, set by quantize",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("mvm",),
    check=check,
    param_format=lambda node, index: (node.attrs["wfmt"], node.attrs["int4_group"]) if index == 1 else None,
    result_layout=lambda node: "argmax" if node.attrs["argmax"] else "dense",
))
