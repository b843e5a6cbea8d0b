"""ATen op -> graph IR conversion rules, one table entry per ATen overload.

A rule is ``fn(ctx, node, *args, **kwargs) -> IR node | tuple | None`` where
fx-node arguments have already been replaced by IR nodes (tensors) or
``sym.Expr`` (symbolic sizes). ``ctx`` (an ``Importer``) gives the node's
torch metadata as IR types and turns scalars into IR values.
"""
from __future__ import annotations

import operator

import torch

from ... import sym
from ...ir import Call, Constant, IRError, Literal, Node, TensorType, call

aten = torch.ops.aten
CONVERTERS: dict = {}


def converts(*overloads):
    def wrap(fn):
        for o in overloads:
            CONVERTERS[o] = fn
        return fn
    return wrap


def _ov(packet, *names):
    """The overloads of ``packet`` that exist in this torch build."""
    return [getattr(packet, n) for n in names if hasattr(packet, n)]


# ---------------------------------------------------------------- elementwise
_UNARY = {
    "neg": "neg", "abs": "abs", "exp": "exp", "log": "log", "sqrt": "sqrt", "rsqrt": "rsqrt",
    "sin": "sin", "cos": "cos", "tanh": "tanh", "sigmoid": "sigmoid", "silu": "silu",
    "relu": "relu", "erf": "erf", "reciprocal": "reciprocal", "logical_not": "logical_not",
    "bitwise_not": "bitwise_not", "floor": "floor", "ceil": "ceil", "sign": "sign",
}
for _aten_name, _ir_name in _UNARY.items():
    converts(*_ov(getattr(aten, _aten_name), "default"))(
        lambda ctx, node, x, _n=_ir_name: call(_n, ctx.tensor(x), span=ctx.span))

_BINARY = {
    "mul": "mul", "maximum": "maximum", "minimum": "minimum", "floor_divide": "floor_divide",
    "remainder": "remainder", "bitwise_and": "bitwise_and", "bitwise_or": "bitwise_or",
    "bitwise_xor": "bitwise_xor", "__and__": "bitwise_and", "__or__": "bitwise_or",
    "__xor__": "bitwise_xor", "logical_and": "logical_and", "logical_or": "logical_or",
    "logical_xor": "logical_xor", "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt",
    "ge": "ge", "pow": "pow",
}
for _aten_name, _ir_name in _BINARY.items():
    converts(*_ov(getattr(aten, _aten_name), "Tensor", "Scalar", "Tensor_Tensor", "Tensor_Scalar",
                  "Scalar_Tensor", "default", "self"))(
        lambda ctx, node, a, b, _n=_ir_name: call(_n, ctx.value(a), ctx.value(b), span=ctx.span))


def _scaled(ctx, b, alpha):
    if alpha in (None, 1):
        return ctx.value(b)
    return call("mul", ctx.value(b), ctx.value(alpha), span=ctx.span)


@converts(*_ov(aten.add, "Tensor", "Scalar"))
def _add(ctx, node, a, b, alpha=1):
    return call("add", ctx.value(a), _scaled(ctx, b, alpha), span=ctx.span)


@converts(*_ov(aten.sub, "Tensor", "Scalar"))
def _sub(ctx, node, a, b, alpha=1):
    return call("sub", ctx.value(a), _scaled(ctx, b, alpha), span=ctx.span)


@converts(*_ov(aten.rsub, "Scalar", "Tensor"))
def _rsub(ctx, node, a, b, alpha=1):
    return call("sub", ctx.value(b), _scaled(ctx, a, alpha), span=ctx.span)


@converts(*_ov(aten.div, "Tensor", "Scalar", "Tensor_mode", "Scalar_mode"))
def _div(ctx, node, a, b, rounding_mode=None):
    return call("div", ctx.value(a), ctx.value(b), rounding_mode=rounding_mode, span=ctx.span)


@converts(*_ov(aten.gelu, "default"))
def _gelu(ctx, node, x, approximate="none"):
    return call("gelu", ctx.tensor(x), approximate=approximate, span=ctx.span)


@converts(*_ov(aten.where, "self", "ScalarOther", "ScalarSelf", "Scalar"))
def _where(ctx, node, cond, a, b):
    return call("where", ctx.tensor(cond), ctx.value(a), ctx.value(b), span=ctx.span)


@converts(*_ov(aten.masked_fill, "Scalar", "Tensor"))
def _masked_fill(ctx, node, x, mask, value):
    # torch keeps x's dtype whatever the fill value's (a float 0-d tensor into an int x is cast)
    return _cast_to_meta(ctx, node, call("where", ctx.tensor(mask), ctx.value(value), ctx.tensor(x),
                                         span=ctx.span))


@converts(*_ov(aten.clamp, "default"), *_ov(aten.clamp_min, "default"), *_ov(aten.clamp_max, "default"))
def _clamp(ctx, node, x, lo=None, hi=None):
    if node.target == getattr(aten.clamp_max, "default", None):
        lo, hi = None, lo
    return call("clamp", ctx.tensor(x), min=lo, max=hi, span=ctx.span)


@converts(*_ov(aten._to_copy, "default"), *_ov(aten.to, "dtype", "dtype_layout", "device"))
def _to_copy(ctx, node, x, *args, **kwargs):
    x = ctx.tensor(x)
    dtype = ctx.out_type(node).dtype
    return x if x.type.dtype == dtype else call("cast", x, dtype=dtype, span=ctx.span)


@converts(*_ov(aten.clone, "default"), *_ov(aten.contiguous, "default"), *_ov(aten.alias, "default"),
          *_ov(aten.detach, "default"), *_ov(aten.lift_fresh_copy, "default"),
          *_ov(aten.dropout, "default"))
def _identity(ctx, node, x, *args, **kwargs):
    return ctx.tensor(x)


@converts(*_ov(aten.native_dropout, "default"))
def _native_dropout(ctx, node, x, p, train=None):
    # (output, keep mask); torch keeps every element unless it trains
    if train and p:
        raise IRError(f"native_dropout with p={p} in training mode is not supported; call model.eval() "
                      f"(at {ctx.span})")
    x = ctx.tensor(x)
    return x, call("full", shape=x.type.shape, value=True, dtype="bool", span=ctx.span)


@converts(*_ov(aten._assert_tensor_metadata, "default"), *_ov(aten._assert_scalar, "default"),
          *_ov(aten.sym_constrain_range_for_size, "default"), *_ov(aten.sym_constrain_range, "default"),
          *_ov(aten._assert_async, "msg", "default"))
def _assertion(ctx, node, *args, **kwargs):
    return None


# ----------------------------------------------------------------- reductions
def _axes(dim, ndim):
    if dim is None:
        return ()
    if isinstance(dim, int):
        return (dim,)
    return tuple(dim)


def _reduction(ir_name):
    def conv(ctx, node, x, dim=None, keepdim=False, dtype=None):
        x = ctx.tensor(x)
        if isinstance(dim, bool):  # sum.default(x, dtype) style positional shift
            dim, keepdim = None, dim
        kw = {"dtype": ctx.dtype_name(dtype)} if dtype is not None and ir_name in ("sum", "mean", "prod") else {}
        return call(ir_name, x, axes=_axes(dim, x.type.ndim), keepdim=keepdim, span=ctx.span, **kw)
    return conv


converts(*_ov(aten.mean, "dim"))(_reduction("mean"))
converts(*_ov(aten.sum, "dim_IntList"))(_reduction("sum"))
converts(*_ov(aten.amax, "default"))(_reduction("amax"))
converts(*_ov(aten.amin, "default"))(_reduction("amin"))
converts(*_ov(aten.any, "dim", "dims", "default"))(_reduction("any"))
converts(*_ov(aten.all, "dim", "dims", "default"))(_reduction("all"))


@converts(*_ov(aten.sum, "default"), *_ov(aten.mean, "default"))
def _reduce_all(ctx, node, x, dtype=None):
    name = "sum" if node.target.__name__.startswith("sum") else "mean"
    kw = {"dtype": ctx.dtype_name(dtype)} if dtype is not None else {}
    return call(name, ctx.tensor(x), axes=(), span=ctx.span, **kw)


@converts(*_ov(aten.argmax, "default"))
def _argmax(ctx, node, x, dim=None, keepdim=False):
    x = ctx.tensor(x)
    if dim is None:
        x = call("reshape", x, shape=(x.type.numel(),), span=ctx.span)
        dim = 0
    return call("argmax", x, axis=dim, keepdim=keepdim, span=ctx.span)


@converts(*_ov(aten.max, "dim"))
def _max_dim(ctx, node, x, dim, keepdim=False):
    x = ctx.tensor(x)
    return (call("amax", x, axes=(dim,), keepdim=keepdim, span=ctx.span),
            call("argmax", x, axis=dim, keepdim=keepdim, span=ctx.span))


@converts(*_ov(aten.cumsum, "default"))
def _cumsum(ctx, node, x, dim, dtype=None):
    return call("cumsum", ctx.tensor(x), axis=dim, dtype=ctx.dtype_name(dtype) if dtype else None,
                span=ctx.span)


@converts(*_ov(aten._softmax, "default"), *_ov(aten.softmax, "int"))
def _softmax(ctx, node, x, dim, *rest):
    out = call("softmax", ctx.tensor(x), axis=dim, span=ctx.span)
    return _cast_to_meta(ctx, node, out)


@converts(*_ov(aten._safe_softmax, "default"))
def _safe_softmax(ctx, node, x, dim, *rest):
    # what scaled_dot_product_attention decomposes to under torch.compile: softmax, except that a row
    # of only -inf (a fully masked query) gives zeros, not NaN
    x = ctx.tensor(x)
    dead = call("all", call("eq", x, Literal(float("-inf")), span=ctx.span), axes=(dim,), keepdim=True,
                span=ctx.span)
    out = call("where", dead, Literal(0.0), call("softmax", x, axis=dim, span=ctx.span), span=ctx.span)
    return _cast_to_meta(ctx, node, out)


@converts(*_ov(aten._log_softmax, "default"), *_ov(aten.log_softmax, "int"))
def _log_softmax(ctx, node, x, dim, *rest):
    out = call("log_softmax", ctx.tensor(x), axis=dim, span=ctx.span)
    return _cast_to_meta(ctx, node, out)


def _cast_to_meta(ctx, node, out):
    dtype = ctx.out_type(node).dtype
    return out if out.type.dtype == dtype else call("cast", out, dtype=dtype, span=ctx.span)


# ------------------------------------------------------------------ nn layers
@converts(*_ov(aten.linear, "default"))
def _linear(ctx, node, x, w, b=None):
    args = [ctx.tensor(x), ctx.tensor(w)] + ([ctx.tensor(b)] if b is not None else [])
    return call("linear", *args, span=ctx.span)


@converts(*_ov(aten.addmm, "default"))
def _addmm(ctx, node, b, x, w, beta=1, alpha=1):
    if beta != 1 or alpha != 1:
        out = call("matmul", ctx.tensor(x), ctx.tensor(w), span=ctx.span)
        return call("add", call("mul", out, alpha, span=ctx.span),
                    call("mul", ctx.tensor(b), beta, span=ctx.span), span=ctx.span)
    wt = call("permute", ctx.tensor(w), dims=(1, 0), span=ctx.span)
    b = ctx.tensor(b)
    if b.type.ndim == 1:
        return call("linear", ctx.tensor(x), wt, b, span=ctx.span)
    return call("add", call("linear", ctx.tensor(x), wt, span=ctx.span), b, span=ctx.span)


@converts(*_ov(aten.mm, "default"), *_ov(aten.bmm, "default"), *_ov(aten.matmul, "default"))
def _matmul(ctx, node, a, b):
    a, b = ctx.tensor(a), ctx.tensor(b)
    if isinstance(b, Call) and b.op.name == "permute" and isinstance(b.args[0], Constant) and b.type.ndim == 2:
        # x @ W.t(): an nn.Linear without bias under torch.compile (t + mm): a linear, which the device runs
        return call("linear", a, b.args[0], span=ctx.span)
    return call("matmul", a, b, span=ctx.span)


@converts(*_ov(aten.conv2d, "default"))
def _conv2d(ctx, node, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    if isinstance(padding, str):
        raise IRError(f"conv2d with padding='{padding}' is not supported; give explicit padding "
                      f"(at {ctx.span})")
    args = [ctx.tensor(x), ctx.tensor(w)] + ([ctx.tensor(b)] if b is not None else [])
    pair = lambda v: tuple(v) * 2 if len(tuple(v)) == 1 else tuple(v)  # noqa: E731
    return call("conv2d", *args, stride=pair(stride), padding=pair(padding), dilation=pair(dilation),
                groups=groups, span=ctx.span)


@converts(*_ov(aten.convolution, "default"))
def _convolution(ctx, node, x, w, b, stride, padding, dilation, transposed, output_padding, groups):
    if transposed or len(tuple(stride)) != 2:
        raise IRError(f"only non-transposed 2-D convolution is supported (at {ctx.span})")
    return _conv2d(ctx, node, x, w, b, stride, padding, dilation, groups)


@converts(*_ov(aten.max_pool2d, "default"))
def _max_pool2d(ctx, node, x, kernel, stride=(), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    pair = lambda v: (tuple(v) * 2 if len(tuple(v)) == 1 else tuple(v)) if not isinstance(v, int) else (v, v)  # noqa: E731
    stride = stride or kernel
    return call("max_pool2d", ctx.tensor(x), kernel=pair(kernel), stride=pair(stride),
                padding=pair(padding), dilation=pair(dilation), ceil_mode=ceil_mode, span=ctx.span)


@converts(*_ov(aten.max_pool2d_with_indices, "default"))
def _max_pool2d_with_indices(ctx, node, x, kernel, stride=(), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    # nn.MaxPool2d under torch.compile (max_pool2d is CompositeImplicit): inference reads the values only
    if any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
        raise IRError(f"max_pool2d_with_indices whose indices are used is not supported (at {ctx.span})")
    return _max_pool2d(ctx, node, x, kernel, stride, padding, dilation, ceil_mode), None


@converts(*_ov(aten.avg_pool2d, "default"))
def _avg_pool2d(ctx, node, x, kernel, stride=(), padding=(0, 0), ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    if divisor_override is not None:
        raise IRError(f"avg_pool2d with divisor_override is not supported (at {ctx.span})")
    pair = lambda v: (tuple(v) * 2 if len(tuple(v)) == 1 else tuple(v)) if not isinstance(v, int) else (v, v)  # noqa: E731
    stride = stride or kernel
    return call("avg_pool2d", ctx.tensor(x), kernel=pair(kernel), stride=pair(stride),
                padding=pair(padding), ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                span=ctx.span)


@converts(*_ov(aten.adaptive_avg_pool2d, "default"), *_ov(aten._adaptive_avg_pool2d, "default"))
def _adaptive_avg_pool2d(ctx, node, x, output_size):
    x = ctx.tensor(x)
    oh, ow = output_size
    if (oh, ow) == (1, 1):
        return call("mean", x, axes=(2, 3), keepdim=True, span=ctx.span)
    h, w = x.type.shape[2], x.type.shape[3]
    if h.is_const and w.is_const and h.value % oh == 0 and w.value % ow == 0:
        k = (h.value // oh, w.value // ow)
        return call("avg_pool2d", x, kernel=k, stride=k, span=ctx.span)
    raise IRError(f"adaptive_avg_pool2d from {x.type} to {tuple(output_size)} is not supported "
                  f"(needs output 1x1 or an exact divisor) at {ctx.span}")


@converts(*_ov(aten._native_batch_norm_legit_no_training, "default"))
def _batch_norm(ctx, node, x, w, b, mean, var, momentum, eps):
    x = ctx.tensor(x)
    bshape = (1, x.type.shape[1]) + (1,) * (x.type.ndim - 2)
    r = lambda t: call("reshape", ctx.tensor(t), shape=bshape, span=ctx.span)  # noqa: E731
    y = call("mul", call("sub", x, r(mean), span=ctx.span),
             call("rsqrt", call("add", r(var), float(eps), span=ctx.span), span=ctx.span), span=ctx.span)
    if w is not None:
        y = call("mul", y, r(w), span=ctx.span)
    if b is not None:
        y = call("add", y, r(b), span=ctx.span)
    return (y, None, None)


@converts(*_ov(aten.batch_norm, "default"))
def _batch_norm_eval(ctx, node, x, w, b, mean, var, training, momentum, eps, cudnn_enabled=True):
    if training:
        raise IRError(f"batch_norm in training mode is not supported; call model.eval() (at {ctx.span})")
    return _batch_norm(ctx, node, x, w, b, mean, var, momentum, eps)[0]


@converts(*_ov(aten.layer_norm, "default"))
def _layer_norm(ctx, node, x, normalized_shape, w=None, b=None, eps=1e-5, *rest):
    x = ctx.tensor(x)
    params = [ctx.tensor(p) for p in (w, b) if p is not None]
    if w is None and b is not None:
        ones = call("full", shape=x.type.shape[-len(normalized_shape):], value=1.0, dtype=x.type.dtype)
        params = [ones, ctx.tensor(b)]
    return call("layer_norm", x, *params, ndim=len(normalized_shape), eps=eps, span=ctx.span)


@converts(*_ov(aten.native_layer_norm, "default"))
def _native_layer_norm(ctx, node, x, normalized_shape, w, b, eps):
    return (_layer_norm(ctx, node, x, normalized_shape, w, b, eps), None, None)


@converts(*_ov(aten.rms_norm, "default"))
def _rms_norm(ctx, node, x, normalized_shape, w=None, eps=None):
    x = ctx.tensor(x)
    if eps is None:
        eps = float(torch.finfo(getattr(torch, x.type.dtype)).eps)
    params = [ctx.tensor(w)] if w is not None else []
    return call("rms_norm", x, *params, ndim=len(normalized_shape), eps=eps, span=ctx.span)


@converts(*_ov(aten.scaled_dot_product_attention, "default"))
def _sdpa(ctx, node, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    if dropout_p:
        raise IRError(f"scaled_dot_product_attention with dropout_p={dropout_p} is not supported "
                      f"for inference; call model.eval() (at {ctx.span})")
    q, k, v = ctx.tensor(q), ctx.tensor(k), ctx.tensor(v)
    if is_causal and q.type.shape[-2] != k.type.shape[-2]:
        raise IRError("is_causal attention with different query and key lengths aligns top-left in "
                      f"torch, which DLAVM does not support (at {ctx.span})")
    args = [q, k, v] + ([ctx.tensor(attn_mask)] if attn_mask is not None else [])
    return call("attention", *args, causal=bool(is_causal), scale=scale, span=ctx.span)


@converts(*_ov(aten._scaled_dot_product_flash_attention_for_cpu, "default"))
def _sdpa_flash_cpu(ctx, node, q, k, v, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    """What ``scaled_dot_product_attention`` becomes on CPU tensors under AOTAutograd (torch.compile):
    the same attention, plus a logsumexp output that inference graphs do not use."""
    if any(tuple(u.args[1:2]) != (0,) for u in node.users):   # its users are getitem(node, index)
        raise IRError(f"the logsumexp output of _scaled_dot_product_flash_attention_for_cpu is used; "
                      f"DLAVM computes only the attention output (at {ctx.span})")
    return (_sdpa(ctx, node, q, k, v, attn_mask, dropout_p, is_causal, scale), None)


@converts(*_ov(aten.embedding, "default"))
def _embedding(ctx, node, w, idx, *rest):
    return call("embedding", ctx.tensor(w), ctx.tensor(idx), span=ctx.span)


# ---------------------------------------------------------------- data layout
@converts(*_ov(aten.view, "default"), *_ov(aten._unsafe_view, "default"), *_ov(aten.reshape, "default"),
          *_ov(aten.unsqueeze, "default"), *_ov(aten.squeeze, "dim", "dims", "default"),
          *_ov(aten.flatten, "using_ints"), *_ov(aten.unflatten, "int"))
def _reshape(ctx, node, x, *args):
    x = ctx.tensor(x)
    shape = ctx.out_type(node).shape
    if tuple(shape) == tuple(x.type.shape):
        return x
    return call("reshape", x, shape=shape, span=ctx.span)


@converts(*_ov(aten.permute, "default"))
def _permute(ctx, node, x, dims):
    return call("permute", ctx.tensor(x), dims=tuple(dims), span=ctx.span)


@converts(*_ov(aten.transpose, "int"))
def _transpose(ctx, node, x, d0, d1):
    x = ctx.tensor(x)
    n = x.type.ndim
    dims = list(range(n))
    dims[d0 % n], dims[d1 % n] = dims[d1 % n], dims[d0 % n]
    return call("permute", x, dims=tuple(dims), span=ctx.span)


@converts(*_ov(aten.t, "default"))
def _t(ctx, node, x):
    x = ctx.tensor(x)
    return x if x.type.ndim < 2 else call("permute", x, dims=(1, 0), span=ctx.span)


@converts(*_ov(aten.expand, "default"))
def _expand(ctx, node, x, size, implicit=False):
    x = ctx.tensor(x)
    shape = ctx.out_type(node).shape
    if tuple(shape) == tuple(x.type.shape):
        return x
    return call("expand", x, shape=shape, span=ctx.span)


def _norm_bound(v, dim):
    """torch's slice-bound clamping: negative counts from the end, then clamp to [0, dim]."""
    v = sym.as_expr(v)
    if v.is_const and v.value >= 2**62:
        return dim
    if v.is_const and v.value < 0:
        v = dim + v
    return sym.smin(sym.smax(v, 0), dim)


@converts(*_ov(aten.slice, "Tensor"))
def _slice(ctx, node, x, dim=0, start=None, end=None, step=1):
    x = ctx.tensor(x)
    ax = dim % x.type.ndim
    size = x.type.shape[ax]
    start = _norm_bound(0 if start is None else start, size)
    end = _norm_bound(2**63 - 1 if end is None else end, size)
    if start == sym.const(0) and end == size and step == 1:
        return x
    return call("slice", x, axis=ax, start=start, end=end, step=step, span=ctx.span)


@converts(*_ov(aten.select, "int"))
def _select(ctx, node, x, dim, index):
    x = ctx.tensor(x)
    ax = dim % x.type.ndim
    i = sym.as_expr(index)
    if i.is_const and i.value < 0:
        i = x.type.shape[ax] + i
    s = call("slice", x, axis=ax, start=i, end=i + 1, span=ctx.span)
    return call("reshape", s, shape=ctx.out_type(node).shape, span=ctx.span)


@converts(*_ov(aten.cat, "default"))
def _cat(ctx, node, tensors, dim=0):
    ts = [ctx.tensor(t) for t in tensors]
    ts = [t for t in ts if not (t.type.ndim == 1 and t.type.shape[0] == sym.const(0))] or ts[:1]
    if len(ts) == 1:
        return ts[0]
    return call("concat", *ts, axis=dim, span=ctx.span)


@converts(*_ov(aten.split, "Tensor"), *_ov(aten.split_with_sizes, "default"),
          *_ov(aten.chunk, "default"), *_ov(aten.unbind, "int"))
def _split(ctx, node, x, _sizes=None, dim=0, *rest):
    x = ctx.tensor(x)
    if node.target in _ov(aten.unbind, "int"):
        dim = _sizes if _sizes is not None else 0
    ax = dim % x.type.ndim
    outs, start = [], sym.const(0)
    for t in ctx.out_types(node):
        n = t.shape[ax] if node.target not in _ov(aten.unbind, "int") else sym.const(1)
        part = call("slice", x, axis=ax, start=start, end=start + n, span=ctx.span)
        if part.type.shape != t.shape:
            part = call("reshape", part, shape=t.shape, span=ctx.span)
        outs.append(part)
        start = start + n
    return tuple(outs)


@converts(*_ov(aten.index, "Tensor"))
def _index(ctx, node, x, indices):
    x = ctx.tensor(x)
    axes, idx = [], []
    for i, t in enumerate(indices):
        if t is None:
            continue
        t = ctx.tensor(t)
        if t.type.dtype == "bool":
            raise IRError("boolean-mask indexing has a data-dependent shape and is not supported "
                          f"(at {ctx.span})")
        axes.append(i)
        idx.append(t)
    return call("index", x, *idx, axes=tuple(axes), span=ctx.span)


@converts(*_ov(aten.gather, "default"))
def _gather(ctx, node, x, dim, index, sparse_grad=False):
    x, index = ctx.tensor(x), ctx.tensor(index)
    folded = _fold_gather(ctx, x, dim, index)
    if folded is not None:
        return folded
    return call("gather", x, index, axis=dim, span=ctx.span)


def _fold_gather(ctx, x, dim, index):
    """``gather`` of a weight by a weight, or by a slice of one (HF BERT gathers its constant
    ``token_type_ids`` buffer by its ``position_ids`` buffer cut to the sequence length), computed once
    at import: a new weight, sliced as the index was. Slicing the index along the gathered axis, or
    from 0 along another, slices the result the same way, so the fold holds for every length."""
    cut = None
    if isinstance(index, Call) and index.op.name == "slice" and isinstance(index.args[0], Constant):
        a = index.attrs
        if a["axis"] == dim % index.type.ndim or (a["start"] == sym.const(0) and a["step"] == 1):
            cut, index = a, index.args[0]
    if not (isinstance(x, Constant) and isinstance(index, Constant)):
        return None
    ax = dim % x.type.ndim
    if any(d != ax and i.value > n.value for d, (i, n) in enumerate(zip(index.type.shape, x.type.shape))):
        return None  # the whole index weight does not fit x (only its slice does): gather at run time
    xs, ids = ctx.constant_data(x), ctx.constant_data(index)
    data = None if xs is None or ids is None else torch.gather(xs, dim, ids)
    name = f"{x.name}.gather{ax}.{index.name}"
    out = ctx.add_constant(name, TensorType(index.type.shape, x.type.dtype), data)
    if cut is None:
        return out
    return call("slice", out, axis=cut["axis"], start=cut["start"], end=cut["end"], step=cut["step"],
                span=ctx.span)


def _argsort_of(ctx, x, dim, descending):
    return call("argsort", x, axis=dim, descending=bool(descending), span=ctx.span)


def _sort_args(node, packet, args, kwargs):
    """``(dim, descending)`` of ``packet.default(x, dim=-1, descending=False)`` or
    ``packet.stable(x, *, stable, dim=-1, descending=False)``: the IR's argsort is always stable, which
    also satisfies an unstable request."""
    if node.target == getattr(packet, "stable", None):
        return kwargs.get("dim", -1), kwargs.get("descending", False)
    return (args[0] if args else kwargs.get("dim", -1),
            args[1] if len(args) > 1 else kwargs.get("descending", False))


@converts(*_ov(aten.sort, "default", "stable"))
def _sort(ctx, node, x, *args, **kwargs):
    dim, descending = _sort_args(node, aten.sort, args, kwargs)
    x = ctx.tensor(x)
    idx = _argsort_of(ctx, x, dim, descending)
    return call("gather", x, idx, axis=dim, span=ctx.span), idx


@converts(*_ov(aten.argsort, "default", "stable"))
def _argsort(ctx, node, x, *args, **kwargs):
    dim, descending = _sort_args(node, aten.argsort, args, kwargs)
    return _argsort_of(ctx, ctx.tensor(x), dim, descending)


@converts(*_ov(aten.topk, "default"))
def _topk(ctx, node, x, k, dim=-1, largest=True, sorted=True):
    # the first k of a stable sort: sorted whatever ``sorted`` says (an unsorted request allows any
    # order); among equal values the lower index comes first
    x = ctx.tensor(x)
    ax = dim % x.type.ndim
    idx = call("slice", _argsort_of(ctx, x, ax, largest), axis=ax, start=0, end=k, span=ctx.span)
    return call("gather", x, idx, axis=ax, span=ctx.span), idx


@converts(*_ov(aten.index_select, "default"))
def _index_select(ctx, node, x, dim, index):
    return call("take", ctx.tensor(x), ctx.tensor(index), axis=dim, span=ctx.span)


@converts(*_ov(aten.diff, "default"))
def _diff(ctx, node, x, n=1, dim=-1, prepend=None, append=None):
    x = ctx.tensor(x)
    parts = [ctx.tensor(p) for p in (prepend,) if p is not None] + [x] + \
            [ctx.tensor(a) for a in (append,) if a is not None]
    ax = dim % x.type.ndim
    y = call("concat", *parts, axis=ax, span=ctx.span) if len(parts) > 1 else x
    for _ in range(n):
        size = y.type.shape[ax]
        hi = call("slice", y, axis=ax, start=1, end=size, span=ctx.span)
        lo = call("slice", y, axis=ax, start=0, end=size - 1, span=ctx.span)
        y = call("logical_xor" if y.type.dtype == "bool" else "sub", hi, lo, span=ctx.span)
    return y


@converts(*_ov(aten.tril, "default"), *_ov(aten.triu, "default"))
def _tri(ctx, node, x, diagonal=0):
    x = ctx.tensor(x)
    rows, cols = x.type.shape[-2], x.type.shape[-1]
    r = call("reshape", call("arange", end=rows, span=ctx.span), shape=(rows, 1), span=ctx.span)
    c = call("arange", end=cols, span=ctx.span)
    # keep(i, j) = j - i <= diagonal (tril) or j - i >= diagonal (triu)
    d = call("sub", c, r, span=ctx.span)
    keep = call("le" if node.target == aten.tril.default else "ge", d, diagonal, span=ctx.span)
    zero = Literal(False if x.type.dtype == "bool" else 0 if x.type.dtype.startswith(("int", "uint")) else 0.0)
    return call("where", keep, x, zero, span=ctx.span)


# ------------------------------------------------------------------- creation
@converts(*_ov(aten.arange, "default", "start", "start_step"))
def _arange(ctx, node, *args, **kwargs):
    nums = list(args)
    start, end, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2 else 1)
    for v in (start, end, step):
        if isinstance(v, float) or isinstance(v, Node):
            raise IRError(f"arange with non-integer or tensor bounds is not supported (at {ctx.span})")
    return call("arange", start=start, end=end, step=int(step), dtype=ctx.out_type(node).dtype, span=ctx.span)


@converts(*_ov(aten.full, "default"), *_ov(aten.zeros, "default"), *_ov(aten.ones, "default"),
          *_ov(aten.new_ones, "default"), *_ov(aten.new_zeros, "default"), *_ov(aten.new_full, "default"),
          *_ov(aten.full_like, "default"), *_ov(aten.zeros_like, "default"), *_ov(aten.ones_like, "default"),
          *_ov(aten.scalar_tensor, "default"), *_ov(aten.empty, "memory_format"),
          *_ov(aten.new_empty, "default"), *_ov(aten.empty_like, "default"))
def _full(ctx, node, *args, **kwargs):
    name = node.target.__name__.split(".")[0]
    t = ctx.out_type(node)
    if name in ("zeros", "new_zeros", "zeros_like", "empty", "new_empty", "empty_like"):
        value = 0
    elif name in ("ones", "new_ones", "ones_like"):
        value = 1
    elif name == "scalar_tensor":
        value = args[0]
    elif name in ("full", "full_like"):
        value = args[1]
    else:  # new_full(self, size, fill_value)
        value = args[2]
    if isinstance(value, (Node, sym.Expr)):
        raise IRError(f"{name} with a tensor or symbolic fill value is not supported (at {ctx.span})")
    value = ctx.cast_scalar(value, t.dtype)
    return call("full", shape=t.shape, value=value, dtype=t.dtype, span=ctx.span)
