"""Neural-network ops the accelerator cares about as units: matmul, linear,
conv2d, normalisations, attention and embedding lookup."""
from __future__ import annotations

from ... import sym
from ..op import IRTypeError, attr, register_op
from ..types import TensorType, dtype_category
from .common import broadcast_shapes, tensor


def _float_operands(ts, op):
    dts = {t.dtype for t in ts}
    if len(dts) != 1:
        raise IRTypeError(f"op '{op}': operands must share one dtype, got {sorted(dts)}")
    dt = dts.pop()
    if dtype_category(dt) != "float":
        raise IRTypeError(f"op '{op}': needs floating operands, got {dt}")
    return dt


def _same(a, b) -> bool:
    return a == b


@register_op("matmul", ("a", "b"), doc="batched matrix product with broadcast batch dims (torch.matmul, rank >= 2)")
def _matmul(types, attrs):
    a, b = tensor(types[0], "matmul", "a"), tensor(types[1], "matmul", "b")
    dt = _float_operands([a, b], "matmul")
    if a.ndim < 2 or b.ndim < 2:
        raise IRTypeError(f"op 'matmul' needs rank >= 2 operands, got {a} and {b}")
    if not _same(a.shape[-1], b.shape[-2]):
        raise IRTypeError(f"op 'matmul': contraction dims differ: {a} @ {b}")
    batch = broadcast_shapes([a.shape[:-2], b.shape[:-2]], "matmul")
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dt)


@register_op("linear", ("x", "weight", "*bias"),
             doc="y = x @ weight.T (+ bias); weight is [out, in] as in torch.nn.Linear")
def _linear(types, attrs):
    x, w = tensor(types[0], "linear", "x"), tensor(types[1], "linear", "weight")
    if len(types) > 3:
        raise IRTypeError("op 'linear' takes at most one bias")
    dt = _float_operands([x, w], "linear")
    if w.ndim != 2 or x.ndim < 1 or not _same(x.shape[-1], w.shape[1]):
        raise IRTypeError(f"op 'linear': x {x} does not match weight {w} ([out, in])")
    if len(types) == 3:
        b = tensor(types[2], "linear", "bias")
        if b.ndim != 1 or not _same(b.shape[0], w.shape[0]):
            raise IRTypeError(f"op 'linear': bias {b} does not match weight {w}")
    return TensorType(x.shape[:-1] + (w.shape[0],), dt)


@register_op("conv2d", ("x", "weight", "*bias"),
             {"stride": attr("ints", (1, 1)), "padding": attr("ints", (0, 0)),
              "dilation": attr("ints", (1, 1)), "groups": attr("int", 1)},
             doc="2-D convolution, NCHW input, OIHW weight")
def _conv2d(types, attrs):
    x, w = tensor(types[0], "conv2d", "x"), tensor(types[1], "conv2d", "weight")
    dt = _float_operands([x, w], "conv2d")
    if x.ndim != 4 or w.ndim != 4:
        raise IRTypeError(f"op 'conv2d' needs NCHW input and OIHW weight, got {x}, {w}")
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    g = attrs["groups"]
    if not _same(x.shape[1], w.shape[1] * g):
        raise IRTypeError(f"op 'conv2d': input channels {x.shape[1]} != {w.shape[1]} x groups {g}")
    oh = sym.floordiv(x.shape[2] + 2 * ph - dh * (w.shape[2] - 1) - 1, sh) + 1
    ow = sym.floordiv(x.shape[3] + 2 * pw - dw * (w.shape[3] - 1) - 1, sw) + 1
    return TensorType((x.shape[0], w.shape[0], oh, ow), dt)


@register_op("im2col", ("x",),
             {"kernel": attr("ints"), "stride": attr("ints", (1, 1)), "padding": attr("ints", (0, 0)),
              "dilation": attr("ints", (1, 1))},
             doc="the patch matrix of a 2-D convolution: NCHW x -> [N*OH*OW, C*KH*KW], rows (n, oh, ow), "
                 "columns (c, kh, kw) (the order of an OIHW weight viewed as [O, C*KH*KW]); zero padding")
def _im2col(types, attrs):
    x = tensor(types[0], "im2col", "x")
    if x.ndim != 4:
        raise IRTypeError(f"op 'im2col' needs an NCHW input, got {x}")
    if dtype_category(x.dtype) != "float":
        raise IRTypeError(f"op 'im2col' needs a floating input, got {x.dtype}")
    for name in ("kernel", "stride", "padding", "dilation"):
        v = attrs[name]
        if len(v) != 2 or min(v) < (0 if name == "padding" else 1):
            raise IRTypeError(f"op 'im2col': {name} must be 2 values "
                              f"{'>= 0' if name == 'padding' else '>= 1'}, got {tuple(v)}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = attrs["kernel"], attrs["stride"], attrs["padding"], attrs["dilation"]
    # the output size exactly as conv2d's type relation writes it (so the two agree symbolically)
    oh = sym.floordiv(x.shape[2] + 2 * ph - dh * (sym.const(kh) - 1) - 1, sh) + 1
    ow = sym.floordiv(x.shape[3] + 2 * pw - dw * (sym.const(kw) - 1) - 1, sw) + 1
    return TensorType((x.shape[0] * oh * ow, x.shape[1] * kh * kw), x.dtype)


def _norm(name, doc):
    @register_op(name, ("x", "*params"), {"ndim": attr("int", 1), "eps": attr("float", 1e-5)}, doc=doc)
    def rel(types, attrs, _n=name):
        x = tensor(types[0], _n)
        nd = attrs["ndim"]
        limit = 3 if _n == "layer_norm" else 2
        if len(types) > limit:
            raise IRTypeError(f"op '{_n}' takes at most {limit - 1} parameter tensors")
        if not 1 <= nd <= x.ndim:
            raise IRTypeError(f"op '{_n}': ndim {nd} out of range for {x}")
        for p in types[1:]:
            p = tensor(p, _n, "parameter")
            if tuple(p.shape) != tuple(x.shape[-nd:]):
                raise IRTypeError(f"op '{_n}': parameter {p} does not match normalised dims of {x}")
        if dtype_category(x.dtype) != "float":
            raise IRTypeError(f"op '{_n}' needs a floating input, got {x.dtype}")
        return TensorType(x.shape, x.dtype)


_norm("layer_norm", "layer normalisation over the last ``ndim`` dims, optional weight and bias")
_norm("rms_norm", "RMS normalisation over the last ``ndim`` dims, optional weight")


@register_op("attention", ("q", "k", "v", "*mask"),
             {"causal": attr("bool", False), "scale": attr("?float", None)},
             doc="softmax(q @ k^T * scale + mask) @ v on [..., heads, seq, dim]; "
                 "k/v may have fewer heads (grouped-query attention); bool mask "
                 "keeps True; causal aligns the mask to the bottom-right")
def _attention(types, attrs):
    q, k, v = (tensor(t, "attention", n) for t, n in zip(types, ("q", "k", "v")))
    dt = _float_operands([q, k, v], "attention")
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise IRTypeError(f"op 'attention' needs q, k, v of one rank >= 2, got {q}, {k}, {v}")
    if not _same(q.shape[-1], k.shape[-1]) or not _same(k.shape[-2], v.shape[-2]):
        raise IRTypeError(f"op 'attention': q {q}, k {k}, v {v} do not line up")
    if q.ndim >= 3:
        hq, hk = q.shape[-3], k.shape[-3]
        if not (hk == v.shape[-3] and hq.is_const and hk.is_const and hq.value % hk.value == 0):
            raise IRTypeError(f"op 'attention': q heads {hq} must be a multiple of k/v heads {hk}")
    if len(types) == 4:
        m = tensor(types[3], "attention", "mask")
        want = q.shape[:-1] + (k.shape[-2],)
        try:
            out = broadcast_shapes([m.shape, want], "attention")
        except IRTypeError:
            out = None
        if out != want:
            raise IRTypeError(f"op 'attention': mask {m} does not broadcast to [{', '.join(map(str, want))}]")
    elif len(types) > 4:
        raise IRTypeError("op 'attention' takes at most one mask")
    return TensorType(q.shape[:-1] + (v.shape[-1],), dt)


@register_op("embedding", ("weight", "indices"), doc="rows of weight [num, dim] picked by integer indices")
def _embedding(types, attrs):
    w, i = tensor(types[0], "embedding", "weight"), tensor(types[1], "embedding", "indices")
    if w.ndim != 2:
        raise IRTypeError(f"op 'embedding': weight must be [num, dim], got {w}")
    if dtype_category(i.dtype) != "int":
        raise IRTypeError(f"op 'embedding': indices must be integers, got {i.dtype}")
    return TensorType(i.shape + (w.shape[1],), w.dtype)


def _pool(name, extra):
    @register_op(name, ("x",), {"kernel": attr("ints"), "stride": attr("ints"), "padding": attr("ints", (0, 0)),
                                "ceil_mode": attr("bool", False), **extra},
                 doc=f"2-D {name.split('_')[0]} pooling over NCHW")
    def rel(types, attrs, _n=name):
        x = tensor(types[0], _n)
        if x.ndim != 4:
            raise IRTypeError(f"op '{_n}' needs an NCHW input, got {x}")
        dil = attrs.get("dilation", (1, 1))
        out = []
        for i in range(2):
            size, pad, stride = x.shape[2 + i], attrs["padding"][i], attrs["stride"][i]
            span = size + 2 * pad - dil[i] * (attrs["kernel"][i] - 1) - 1
            if attrs["ceil_mode"]:  # as torch: the last window must start inside the input or its left padding
                n = sym.ceildiv(span, stride) + 1
                out.append(sym.select(sym.ge((n - 1) * stride, size + pad), n - 1, n))
            else:
                out.append(sym.floordiv(span, stride) + 1)
        return TensorType((x.shape[0], x.shape[1], out[0], out[1]), x.dtype)


_pool("max_pool2d", {"dilation": attr("ints", (1, 1))})
_pool("avg_pool2d", {"count_include_pad": attr("bool", True)})
