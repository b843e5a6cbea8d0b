"""Convolution on the MVM unit: ``conv2d`` -> host ``im2col`` + ``dev.mvm`` + host NCHW.

The device has no convolution unit; a 2-D convolution with ``groups == 1``
is a matrix product once its input patches are laid out as rows
(*im2col*). The rule builds, from ops every host runs:

1. the patch matrix ``[N*OH*OW, C*KH*KW]`` (row = one output pixel, columns
   in the weight's ``(c, kh, kw)`` order):

   * *patch embedding* (``stride == kernel``, no padding, no dilation, the
     image an exact multiple of the kernel): ``reshape`` to
     ``[N, C, OH, KH, OW, KW]``, ``permute`` to ``[N, OH, OW, C, KH, KW]``,
     ``reshape``: pure data movement, no copy of a pixel twice (a 1x1
     convolution is the case ``KH = KW = 1``);
   * otherwise (padding, stride, dilation): ONE host op ``im2col`` (doc/ir.md), which gathers
     every tap of every output pixel with zero padding in a single copy (it replaced a chain of
     ``2*KH*KW + 4`` layout ops: ``full``/``concat`` padding, strided ``slice`` pairs per tap,
     ``concat``, ``permute``, ``reshape``);

2. ``dev.mvm`` with the weight viewed as ``[O, C*KH*KW]`` (a weight
   transform, folded into a weight by ``fold_weights``) and the conv's bias
   as the mvm bias (a preceding eval-mode BatchNorm is already folded in by
   ``fold_batchnorm``);
3. back to NCHW on the host: ``reshape`` to ``[N, OH, OW, O]`` and ``permute``.

A ReLU after the convolution moves into the mvm epilogue through the
layout ops (``relu->mvm.relu`` in ``mvm.py``). Numerics are the mvm's:
fp16 patches, the weight in its format, fp32 accumulation, one fp16
rounding. The im2col on the host costs a transfer of ``KH*KW`` times the
input (the DMA unit copies rows with byte strides, not 2-D windows with
padding, so the patches cannot be gathered on the device).
"""
from __future__ import annotations

from .. import sym
from ..ir import Call, call, post_order
from ..passes.patterns_match import (Pat, Pattern, is_float, is_op, is_weight, reshape, to_device, to_host,
                                     with_optional_bias)


def _conv_dims(node):
    x, w = node.args[0].type.shape, node.args[1].type.shape
    n, c, h, wd = x
    o, _, kh, kw = (int(d) for d in w)
    _, _, oh, ow = node.type.shape
    return n, c, h, wd, o, kh, kw, oh, ow


def is_patch_embedding(node) -> bool:
    """stride == kernel, no padding, no dilation and the image exactly covered by the patches."""
    a = node.attrs
    n, c, h, wd, o, kh, kw, oh, ow = _conv_dims(node)
    return (tuple(a["stride"]) == (kh, kw) and tuple(a["padding"]) == (0, 0) and tuple(a["dilation"]) == (1, 1)
            and sym.as_expr(h) == sym.as_expr(oh * kh) and sym.as_expr(wd) == sym.as_expr(ow * kw))


#: why the im2col and NCHW layout ops stay on the host (``host_op_reasons``, for the compile report)
HOST_LAYOUT_REASON = ("im2col / NCHW layout of a convolution run as dev.mvm (host data movement: the DMA unit "
                      "copies strided rows, not padded 2-D windows)")


class _Layout:
    """Layout calls carrying the convolution's source span (the compile report names the conv)."""

    def __init__(self, span):
        self.span = span

    def __call__(self, op, *args, **attrs):
        return call(op, *args, span=self.span, **attrs)

    def reshape(self, x, shape):
        shape = tuple(sym.as_expr(d) for d in shape)
        if is_op(x, "reshape"):
            x = x.args[0]
        return x if tuple(x.type.shape) == shape else self("reshape", x, shape=shape)

    def permute(self, x, dims):
        return self("permute", x, dims=tuple(dims))


def im2col(x, node):
    """The patch matrix ``[N*OH*OW, C*KH*KW]`` of ``conv2d`` ``node`` applied to ``x`` (module docstring)."""
    n, c, h, wd, o, kh, kw, oh, ow = _conv_dims(node)
    rows, cols = n * oh * ow, c * kh * kw
    b = _Layout(node.span)
    if is_patch_embedding(node):
        r = b.reshape(x, (n, c, oh, kh, ow, kw))
        return b.reshape(b.permute(r, (0, 2, 4, 1, 3, 5)), (rows, cols))
    return b("im2col", x, kernel=(kh, kw), stride=tuple(node.attrs["stride"]),
             padding=tuple(node.attrs["padding"]), dilation=tuple(node.attrs["dilation"]))


def conv_as_mvm(node, x, cols, weight=None, **mvm_attrs):
    """``dev.to_host(dev.mvm(to_device(cols), W [O, C*KH*KW][, b]))`` back in NCHW, as ``node``'s type;
    ``weight``: the weight already as ``[O, C*KH*KW]`` (default: a reshape of the conv's)."""
    n, c, h, wd, o, kh, kw, oh, ow = _conv_dims(node)
    b = _Layout(node.span)
    w = reshape(node.args[1], (sym.const(o), c * kh * kw)) if weight is None else weight
    extra = list(node.args[2:])
    y = call("dev.mvm", to_device(cols), w, *extra, bias=bool(extra), **mvm_attrs)
    out = b.reshape(to_host(y, node.type.dtype), (n, oh, ow, o))
    return b.permute(out, (0, 3, 1, 2))


def _conv(node, ctx, x, w, b=None):
    if node.attrs["groups"] != 1:
        return ctx.decline(node, f"grouped convolution (groups={node.attrs['groups']}) has no device lowering "
                                 "(im2col + dev.mvm covers groups=1)")
    out = conv_as_mvm(node, x, im2col(x, node))
    if node.span:  # the layout ops carry the conv's span: the report gives them the reason once
        for n in post_order(out):
            if isinstance(n, Call) and n.span == node.span and not n.op.name.startswith("dev."):
                ctx.decline(n, HOST_LAYOUT_REASON)
    return out


def _conv4d(node) -> bool:
    return is_weight(node) and node.type.ndim == 4


_X = Pat.any("x", where=is_float)

PATTERNS = (
    Pattern("conv2d->im2col+mvm", with_optional_bias("conv2d", _X, _conv4d),
            _conv, "conv2d(x, W[, b]) -> host im2col, dev.mvm(bias), host NCHW", priority=30,
            decline="conv2d needs a float input and weight (and bias) tensors that are weights"),
)


__all__ = ["PATTERNS", "conv_as_mvm", "im2col", "is_patch_embedding"]
