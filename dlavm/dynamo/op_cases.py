"""The cases of the op conformance suite (:mod:`dlavm.dynamo.conformance`, doc/ops.md): one per ATen
overload the torch frontend converts, and the reason for each overload torch.compile never hands to a
backend as an op with an output.

A case is a small function using the op (a module, where the op takes weights: the backend compiles
a model's parameters in as constants), its inputs per dtype with one size ``n`` varied, and the axes
of size ``n``. Float inputs are exactly representable in fp16, so the device's input rounding is exact
and every error measured is the op's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

aten = torch.ops.aten

F32, F16, I64, I32, BOOL = torch.float32, torch.float16, torch.int64, torch.int32, torch.bool
FLOATS = (F32, F16)
INTS = (I64, I32)


@dataclass(frozen=True)
class Case:
    """One converted ATen overload under test.

    ``build(dtype)`` returns the function (or ``nn.Module``) to compile; ``make(n, dtype, gen)`` its
    inputs with the varied size ``n``; ``dims`` the (input index, axis) pairs of size ``n``, marked
    dynamic; ``device``: the op runs on the tiny target's device (else the case is anchored, see
    :mod:`dlavm.dynamo.conformance`); ``reached_as``: for an overload torch decomposes before any
    backend sees it, the overloads it reaches the backend as (the run checks that it does not reach it
    itself); ``min_n``: the smallest size the case means (smaller edges are not run, ``note`` says why)."""
    op: str
    build: Callable
    make: Callable
    dims: tuple
    dtypes: tuple = FLOATS
    device: bool = False
    reached_as: tuple = ()
    min_n: int = 1
    note: str = ""


CASES: dict = {}
#: overload -> why torch.compile never hands it to a backend as an op with an output to compare
UNREACHABLE: dict = {}


def _case(op, fn, make, dims=((0, 1),), **kw):
    build = fn if kw.pop("module", False) else (lambda dtype, _f=fn: _f)
    CASES[op] = Case(op, build, make, tuple(dims), **kw)


def _floats(shape, dtype, g, lo=None, hi=None):
    """Values exactly representable in fp16 (so the device's input rounding is exact)."""
    if lo is None:
        x = torch.randn(shape, generator=g)
    else:
        x = lo + (hi - lo) * torch.rand(shape, generator=g)
    return x.to(F16).to(dtype)


def _x(n, dtype, g, shape=None, lo=None, hi=None):
    shape = shape or (3, n)
    if dtype == BOOL:
        return torch.rand(shape, generator=g) > 0.5
    if not dtype.is_floating_point:
        return torch.randint(0, 64, shape, generator=g, dtype=dtype)
    return _floats(shape, dtype, g, lo, hi)


def _one(**kw):
    return lambda n, dtype, g: (_x(n, dtype, g, **kw),)


def _two(lo=None, hi=None, lo2=None, hi2=None):
    return lambda n, dtype, g: (_x(n, dtype, g, lo=lo, hi=hi), _x(n, dtype, g, lo=lo2, hi=hi2))


_EW2 = ((0, 1), (1, 1))

# -- elementwise, unary
for _name, _kw in {"neg": {}, "abs": {}, "exp": {}, "log": {"lo": 0.25, "hi": 4.0}, "sqrt": {"lo": 0.25, "hi": 4.0},
                   "rsqrt": {"lo": 0.25, "hi": 4.0}, "sin": {}, "cos": {}, "tanh": {}, "erf": {},
                   "reciprocal": {"lo": 0.5, "hi": 4.0}, "floor": {}, "ceil": {}, "sign": {}, "relu": {}}.items():
    _case(f"aten.{_name}.default", getattr(torch, _name), _one(**_kw))
for _name in ("sigmoid", "silu"):
    _case(f"aten.{_name}.default", getattr(F, _name), _one(), device=True)
_case("aten.gelu.default", F.gelu, _one(), device=True)
_case("aten.logical_not.default", torch.logical_not, _one(), dtypes=(BOOL,))
_case("aten.bitwise_not.default", torch.bitwise_not, _one(), dtypes=INTS)

# -- elementwise, binary
_case("aten.add.Tensor", torch.add, _two(), _EW2, device=True)
_case("aten.sub.Tensor", torch.sub, _two(), _EW2, device=True)
_case("aten.mul.Tensor", torch.mul, _two(), _EW2, device=True)
_case("aten.add.Scalar", lambda x: aten.add.Scalar(x, 1.5, alpha=2), _one())
_case("aten.sub.Scalar", lambda x: aten.sub.Scalar(x, 1.5), _one())
_case("aten.mul.Scalar", lambda x: aten.mul.Scalar(x, 1.5), _one())
_case("aten.rsub.Scalar", lambda x: 1.5 - x, _one())
_case("aten.rsub.Tensor", lambda a, b: torch.rsub(a, b, alpha=2), _two(), _EW2)
_case("aten.div.Tensor", torch.div, _two(lo2=0.5, hi2=4.0), _EW2)
_case("aten.div.Scalar", lambda x: aten.div.Scalar(x, 3.0), _one())
_case("aten.div.Tensor_mode", lambda a, b: torch.div(a, b, rounding_mode="floor"), _two(lo2=0.5, hi2=4.0), _EW2)
_case("aten.div.Scalar_mode", lambda x: aten.div.Scalar_mode(x, 3.0, rounding_mode="trunc"), _one())
_case("aten.maximum.default", torch.maximum, _two(), _EW2)
_case("aten.minimum.default", torch.minimum, _two(), _EW2)
_case("aten.floor_divide.default", torch.floor_divide, _two(lo2=0.5, hi2=4.0), _EW2)
_case("aten.floor_divide.Scalar", lambda x: aten.floor_divide.Scalar(x, 3), _one(), dtypes=(F32, I64))
_case("aten.remainder.Tensor", torch.remainder, _two(lo2=0.5, hi2=4.0), _EW2)
_case("aten.remainder.Scalar", lambda x: x % 3, _one(), dtypes=(F32, I64))
_case("aten.remainder.Scalar_Tensor", lambda x: 3 % x, _one(lo=0.5, hi=4.0))
_case("aten.pow.Tensor_Tensor", torch.pow, _two(lo=0.5, hi=2.0), _EW2)
_case("aten.pow.Tensor_Scalar", lambda x: x ** 3, _one())
_case("aten.pow.Scalar", lambda x: 2 ** x, _one())
for _bit in ("and", "or", "xor"):
    _f = getattr(torch, f"bitwise_{_bit}")
    _case(f"aten.bitwise_{_bit}.Tensor", _f, _two(), _EW2, dtypes=INTS)
    _case(f"aten.bitwise_{_bit}.Scalar", lambda x, _f=_f: _f(x, 13), _one(), dtypes=INTS)
    _case(f"aten.bitwise_{_bit}.Scalar_Tensor", lambda x, _f=_f: _f(13, x), _one(), dtypes=INTS)
    _dunder = getattr(aten, f"__{_bit}__")
    _case(f"aten.__{_bit}__.Tensor", lambda a, b, _d=_dunder: _d.Tensor(a, b), _two(), _EW2, dtypes=(I64,),
          reached_as=(f"aten.bitwise_{_bit}.Tensor",))
    _case(f"aten.__{_bit}__.Scalar", lambda x, _d=_dunder: _d.Scalar(x, 13), _one(), dtypes=(I64,),
          reached_as=(f"aten.bitwise_{_bit}.Scalar",))
    _case(f"aten.logical_{_bit}.default", getattr(torch, f"logical_{_bit}"), _two(), _EW2, dtypes=(BOOL,))
for _cmp in ("eq", "ne", "lt", "le", "gt", "ge"):
    _f = getattr(torch, _cmp)
    _case(f"aten.{_cmp}.Tensor", _f, lambda n, dtype, g: (_x(n, dtype, g), _x(n, dtype, g).clamp(0.0, 1.0).round()),
          _EW2)
    _case(f"aten.{_cmp}.Scalar", lambda x, _f=_f: _f(x, 0.5), lambda n, dtype, g: (_x(n, dtype, g) / 2 ** 4,))
    UNREACHABLE[f"aten.{_cmp}.default"] = ("(Scalar, Scalar) -> bool: a comparison of sizes, evaluated by dynamo "
                                           "or computed by torch on the host as size arithmetic")
UNREACHABLE["aten.mul.default"] = "(Scalar, Scalar) -> Scalar: size arithmetic, computed by torch on the host"
UNREACHABLE["aten.remainder.default"] = "(Scalar, Scalar) -> Scalar: size arithmetic, computed by torch on the host"

_MASK = lambda n, dtype, g: (_x(n, dtype, g), _x(n, BOOL, g))  # noqa: E731
_COND = lambda n, dtype, g: (_x(n, BOOL, g), _x(n, dtype, g), _x(n, dtype, g))  # noqa: E731
_case("aten.where.self", torch.where, _COND, ((0, 1), (1, 1), (2, 1)))
_case("aten.where.ScalarOther", lambda c, a, b: aten.where.ScalarOther(c, a, 0.5), _COND, ((0, 1), (1, 1), (2, 1)),
      dtypes=(F32,), reached_as=("aten.where.self", "aten.scalar_tensor.default"))
_case("aten.where.ScalarSelf", lambda c, a, b: aten.where.ScalarSelf(c, 0.5, b), _COND, ((0, 1), (1, 1), (2, 1)),
      dtypes=(F32,), reached_as=("aten.where.self", "aten.scalar_tensor.default"))
_case("aten.where.Scalar", lambda c, a, b: aten.where.Scalar(c, 0.5, -1.5), _COND, ((0, 1), (1, 1), (2, 1)),
      dtypes=(F32,), reached_as=("aten.where.self", "aten.scalar_tensor.default"))
_case("aten.masked_fill.Scalar", lambda x, m: x.masked_fill(m, 0.5), _MASK, _EW2)
_case("aten.masked_fill.Tensor", lambda x, m: x.masked_fill(m, torch.tensor(0.5)), _MASK, _EW2)
_case("aten.clamp.default", lambda x: torch.clamp(x, -0.5, 0.75), _one())
_case("aten.clamp_min.default", lambda x: torch.clamp_min(x, -0.5), _one())
_case("aten.clamp_max.default", lambda x: torch.clamp_max(x, 0.75), _one())

# -- dtype conversion, copies, identities
_case("aten._to_copy.default", lambda x: x.to(F16 if x.dtype == F32 else F32), _one())
_case("aten.to.dtype", lambda x: aten.to.dtype(x, F16), _one(), dtypes=(F32,), reached_as=("aten._to_copy.default",))
_case("aten.to.dtype_layout", lambda x: aten.to.dtype_layout(x, dtype=F16), _one(), dtypes=(F32,),
      reached_as=("aten._to_copy.default",))
_case("aten.to.device", lambda x: aten.to.device(x, torch.device("cpu"), F16), _one(), dtypes=(F32,),
      reached_as=("aten._to_copy.default",))
_case("aten.clone.default", torch.clone, _one())
_case("aten.contiguous.default", lambda x: x.t().contiguous(), _one(), dtypes=(F32,),
      reached_as=("aten.clone.default",), min_n=2, note="at size 1 the transpose is contiguous already")
_case("aten.alias.default", aten.alias.default, _one())
_case("aten.detach.default", torch.detach, _one())
_case("aten.lift_fresh_copy.default", lambda x: torch.maximum(x, torch.tensor(1.5, dtype=x.dtype)), _one())
_case("aten.dropout.default", lambda x: aten.dropout(x, 0.5, False), _one(), dtypes=(F32,),
      reached_as=("aten.clone.default",))
_case("aten.native_dropout.default", lambda x: aten.native_dropout(x, 0.5, False)[0], _one())
for _a in ("_assert_async.default", "_assert_async.msg", "_assert_scalar.default", "_assert_tensor_metadata.default",
           "sym_constrain_range.default", "sym_constrain_range_for_size.default"):
    UNREACHABLE[f"aten.{_a}"] = ("an assertion or a size constraint: returns nothing, so there is no output to "
                                 "compare; AOTAutograd may insert it for a runtime check and the converter drops it")

def _masked_row(n, dtype, g):
    """Rows of values, the first all -inf: a fully masked attention row, which _safe_softmax makes 0."""
    x = _x(n, dtype, g)
    x[0] = float("-inf")
    return (x,)


# -- reductions
_case("aten.sum.dim_IntList", lambda x: x.sum(-1), _one())
_case("aten.sum.default", torch.sum, _one())
_case("aten.mean.dim", lambda x: x.mean(-1, keepdim=True), _one())
_case("aten.mean.default", torch.mean, _one())
_case("aten.amax.default", lambda x: x.amax(-1), _one())
_case("aten.amin.default", lambda x: x.amin(-1), _one())
_case("aten.any.dim", lambda x: x.any(1), _one(), dtypes=(BOOL,))
_case("aten.any.dims", lambda x: x.any((0, 1)), _one(), dtypes=(BOOL,))
_case("aten.any.default", torch.any, _one(), dtypes=(BOOL,))
_case("aten.all.dim", lambda x: x.all(1), _one(), dtypes=(BOOL,))
_case("aten.all.dims", lambda x: x.all((0, 1)), _one(), dtypes=(BOOL,))
_case("aten.all.default", torch.all, _one(), dtypes=(BOOL,))
_case("aten.argmax.default", lambda x: x.argmax(-1), _one())
_case("aten.max.dim", lambda x: torch.max(x, -1), _one())
_case("aten.cumsum.default", lambda x: x.cumsum(-1), _one(), dtypes=(F32, I64))
_case("aten._softmax.default", lambda x: x.softmax(-1), _one(), device=True)
_case("aten.softmax.int", lambda x: aten.softmax.int(x, -1), _one(), dtypes=(F32,), device=True,
      reached_as=("aten._softmax.default",))
_case("aten._safe_softmax.default", lambda x: aten._safe_softmax(x, -1), _masked_row, device=True)
_case("aten._log_softmax.default", lambda x: F.log_softmax(x, -1), _one())
_case("aten.log_softmax.int", lambda x: aten.log_softmax.int(x, -1), _one(), dtypes=(F32,),
      reached_as=("aten._log_softmax.default",))


# -- nn layers (weights are parameters: the backend compiles them in as constants)
def _module(factory):
    def build(dtype):
        torch.manual_seed(0)
        m = factory().to(dtype).eval()
        for b in m.buffers():   # batch-norm statistics that are not the trivial 0 / 1
            if b.is_floating_point():
                b.copy_((torch.rand(b.shape) + 0.5).to(b.dtype))
        return m
    return build


_TOKENS = lambda n, dtype, g: (_x(n, dtype, g, shape=(n, 24)),)  # noqa: E731
_case("aten.addmm.default", _module(lambda: torch.nn.Linear(24, 12)), _TOKENS, ((0, 0),), module=True, device=True)
_case("aten.linear.default", _module(lambda: torch.nn.Linear(24, 12, bias=False)), _TOKENS, ((0, 0),), module=True,
      device=True, dtypes=(F32,), reached_as=("aten.mm.default",))
_MM = lambda n, dtype, g: (_x(n, dtype, g, shape=(5, n)), _x(n, dtype, g, shape=(n, 12)))  # noqa: E731
_case("aten.mm.default", torch.mm, _MM, ((0, 1), (1, 0)))
_case("aten.matmul.default", torch.matmul, _MM, ((0, 1), (1, 0)), dtypes=(F32,), reached_as=("aten.mm.default",))
_case("aten.bmm.default", torch.bmm,
      lambda n, dtype, g: (_x(n, dtype, g, shape=(2, 5, n)), _x(n, dtype, g, shape=(2, n, 12))), ((0, 2), (1, 1)))
_IMG = lambda n, dtype, g: (_x(n, dtype, g, shape=(1, 3, 4, n)),)  # noqa: E731
_case("aten.convolution.default", _module(lambda: torch.nn.Conv2d(3, 8, (3, 1), padding=(1, 0))), _IMG, ((0, 3),),
      module=True, device=True)
_case("aten.conv2d.default", lambda x, w: aten.conv2d(x, w, None, [1, 1], [1, 0]),
      lambda n, dtype, g: (*_IMG(n, dtype, g), _x(n, dtype, g, shape=(8, 3, 3, 1))), ((0, 3),), dtypes=(F32,),
      reached_as=("aten.convolution.default",))
_case("aten.max_pool2d_with_indices.default", lambda x: aten.max_pool2d_with_indices(x, [2, 1])[0], _IMG, ((0, 3),))
_case("aten.max_pool2d.default", lambda x: F.max_pool2d(x, (2, 1)), _IMG, ((0, 3),), dtypes=(F32,),
      reached_as=("aten.max_pool2d_with_indices.default",))
_case("aten.avg_pool2d.default", lambda x: F.avg_pool2d(x, (2, 1)), _IMG, ((0, 3),))
_case("aten._adaptive_avg_pool2d.default", lambda x: aten._adaptive_avg_pool2d(x, [1, 1]), _IMG, ((0, 3),))
_case("aten.adaptive_avg_pool2d.default", lambda x: F.adaptive_avg_pool2d(x, 1), _IMG, ((0, 3),), dtypes=(F32,),
      reached_as=("aten.mean.dim",))
_case("aten._native_batch_norm_legit_no_training.default", _module(lambda: torch.nn.BatchNorm2d(3)), _IMG, ((0, 3),),
      module=True)
_case("aten.batch_norm.default", lambda x, w, b: aten.batch_norm(x, w, b, b, w, False, 0.1, 1e-5, False),
      lambda n, dtype, g: (*_IMG(n, dtype, g), _x(n, dtype, g, shape=(3,), lo=0.5, hi=1.5),
                           _x(n, dtype, g, shape=(3,))),
      ((0, 3),), dtypes=(F32,), reached_as=("aten._native_batch_norm_legit_no_training.default",))
# the device normalises with weights (gamma, beta) of a static width: the varied size is the token count
class _AtenLayerNorm(torch.nn.LayerNorm):
    def forward(self, x):
        return aten.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


_case("aten.native_layer_norm.default", _module(lambda: torch.nn.LayerNorm(24)), _TOKENS, ((0, 0),), module=True,
      device=True)
_case("aten.layer_norm.default", _module(lambda: _AtenLayerNorm(24)), _TOKENS, ((0, 0),), module=True, dtypes=(F32,),
      device=True, reached_as=("aten.native_layer_norm.default",))
_case("aten.rms_norm.default", _module(lambda: torch.nn.RMSNorm(24, eps=1e-6)), _TOKENS, ((0, 0),), module=True,
      dtypes=(F32,), device=True, reached_as=("aten.rsqrt.default", "aten.mean.dim"))
# q, k and v are cut from one input: separate inputs would have unrelated dynamic lengths, which the
# attention op refuses (keys and values must line up)
_QKV = lambda n, dtype, g: (_x(n, dtype, g, shape=(3, 1, 2, n, 16)),)  # noqa: E731
_case("aten._scaled_dot_product_flash_attention_for_cpu.default",
      lambda x: aten._scaled_dot_product_flash_attention_for_cpu(*x.unbind(0))[0], _QKV, ((0, 3),), device=True)
_case("aten.scaled_dot_product_attention.default", lambda x: F.scaled_dot_product_attention(*x.unbind(0)), _QKV,
      ((0, 3),), dtypes=(F32,), device=True,
      reached_as=("aten._scaled_dot_product_flash_attention_for_cpu.default",))
_case("aten.embedding.default", _module(lambda: torch.nn.Embedding(40, 16)),
      lambda n, dtype, g: (torch.randint(0, 40, (3, n), generator=g),), module=True)


# -- data layout (view-only ops are anchored like host ops: a subgraph of views alone stays in eager)
_case("aten.view.default", lambda x: x.view(-1), _one())
_case("aten._unsafe_view.default", lambda x: x.t().reshape(-1), _one(), min_n=2,
      note="at size 1 the transpose is contiguous and reshape is a view")
_case("aten.reshape.default", lambda x: aten.reshape(x, (-1, 1)), _one(), dtypes=(F32,),
      reached_as=("aten.view.default",))
_case("aten.flatten.using_ints", lambda x: x.unsqueeze(0).flatten(1), _one(), dtypes=(F32,),
      reached_as=("aten.view.default",))
_case("aten.unflatten.int", lambda x: x.unflatten(0, (3, 1)), _one(), dtypes=(F32,), reached_as=("aten.view.default",))
_case("aten.unsqueeze.default", lambda x: x.unsqueeze(1), _one())
_case("aten.squeeze.default", lambda x: x[:1].squeeze(), _one(), min_n=2)
_case("aten.squeeze.dim", lambda x: x[:1].squeeze(0), _one())
_case("aten.squeeze.dims", lambda x: x[:1].squeeze((0,)), _one())
_case("aten.permute.default", lambda x: x.unsqueeze(0).permute(2, 0, 1), _one())
_case("aten.transpose.int", lambda x: x.transpose(0, 1), _one())
_case("aten.t.default", torch.t, _one())
_case("aten.expand.default", lambda x: x[:1].expand(4, -1), _one())
_case("aten.slice.Tensor", lambda x: x[1:, : x.shape[1] // 2 + 1], _one())
_case("aten.select.int", lambda x: x[1], _one())
_case("aten.cat.default", lambda a, b: torch.cat([a, b], 1), _two(), _EW2)
_case("aten.split.Tensor", lambda x: x.split(2, 0), _one())
_case("aten.split_with_sizes.default", lambda x: x.split([1, 2], 0), _one())
_case("aten.chunk.default", lambda x: x.chunk(3, 0), _one(), dtypes=(F32,), reached_as=("aten.split.Tensor",))
_case("aten.unbind.int", lambda x: x.unbind(0), _one())
_IDX = lambda n, dtype, g: (_x(n, dtype, g), torch.randint(0, 3, (4,), generator=g))  # noqa: E731
_case("aten.index.Tensor", lambda x, i: x[i], _IDX)
_case("aten.index_select.default", lambda x, i: x.index_select(0, i), _IDX)
_case("aten.gather.default", lambda x, i: x.gather(0, i),
      lambda n, dtype, g: (_x(n, dtype, g), torch.randint(0, 3, (2, n), generator=g)), ((0, 1), (1, 1)))
_DISTINCT = lambda n, dtype, g: ((torch.randperm(3 * n, generator=g).reshape(3, n) - n).to(dtype),)  # noqa: E731
_case("aten.sort.default", lambda x: torch.sort(x, -1), _DISTINCT)
_case("aten.sort.stable", lambda x: torch.sort(x, dim=-1, stable=True, descending=True), _DISTINCT)
_case("aten.argsort.default", lambda x: aten.argsort(x, -1), _DISTINCT, dtypes=(F32,),
      reached_as=("aten.sort.default",))
_case("aten.argsort.stable", lambda x: aten.argsort.stable(x, stable=True), _DISTINCT, dtypes=(F32,),
      reached_as=("aten.sort.stable",))
_case("aten.topk.default", lambda x: torch.topk(x, 1), _DISTINCT)
_case("aten.diff.default", lambda x: aten.diff(x), _one(), dtypes=(F32,), reached_as=("aten.sub.Tensor",), min_n=2,
      device=True)
_case("aten.tril.default", lambda x: x.tril(1), _one())
_case("aten.triu.default", lambda x: x.triu(-1), _one())

# -- creation: the created tensor, through a maximum with the input that gives its size (a subgraph
#    taking a dynamic size only as an integer has no tensor to read it from: the backend leaves it to
#    eager); an ``empty`` result is read for its shape only, as its values are undefined
_SIZE = lambda x: x.shape  # noqa: E731
_MAX = lambda make: lambda x: torch.maximum(x, make(x))  # noqa: E731
_case("aten.arange.default", _MAX(lambda x: torch.arange(x.shape[1], dtype=x.dtype)), _one())
_case("aten.arange.start", _MAX(lambda x: torch.arange(1, x.shape[1] + 1, dtype=x.dtype)), _one())
_case("aten.arange.start_step", _MAX(lambda x: torch.arange(0, 2 * x.shape[1], 2, dtype=x.dtype)), _one())
_case("aten.full.default", _MAX(lambda x: torch.full(_SIZE(x), 1.5, dtype=x.dtype)), _one())
_case("aten.zeros.default", _MAX(lambda x: torch.zeros(_SIZE(x), dtype=x.dtype)), _one())
_case("aten.ones.default", _MAX(lambda x: torch.ones(_SIZE(x), dtype=x.dtype)), _one())
_case("aten.new_ones.default", _MAX(lambda x: x.new_ones(_SIZE(x))), _one())
_case("aten.new_zeros.default", _MAX(lambda x: x.new_zeros(_SIZE(x))), _one())
_case("aten.new_full.default", _MAX(lambda x: x.new_full(_SIZE(x), 1.5)), _one())
_case("aten.full_like.default", _MAX(lambda x: torch.full_like(x, 1.5)), _one())
_case("aten.zeros_like.default", _MAX(torch.zeros_like), _one())
_case("aten.ones_like.default", _MAX(torch.ones_like), _one())
_case("aten.scalar_tensor.default", _MAX(lambda x: aten.scalar_tensor(1.5, dtype=x.dtype)), _one())
_case("aten.empty.memory_format", _MAX(lambda x: torch.ones_like(torch.empty(_SIZE(x), dtype=x.dtype))), _one())
_case("aten.new_empty.default", _MAX(lambda x: torch.ones_like(x.new_empty(_SIZE(x)))), _one())
_case("aten.empty_like.default", _MAX(lambda x: torch.ones_like(torch.empty_like(x))), _one())
