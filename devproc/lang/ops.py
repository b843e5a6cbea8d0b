"""The op registry (doc/devproc.md, "Ops"): per op its operands, attributes, type rule and numpy kernel.

This table is the one definition every layer reads: tracing checks a call with the type rule, the graph
reader re-checks a saved node with it, the Python runtime runs the numpy kernel, and the C++ generator
(devproc.build.cpp) emits one call of clib's ``dlavm::devproc`` op of the same name per node. Device ops
(``call``, ``prefill``, ``decode``, ``decode_loop``) have no numpy kernel: the runtime runs them on the
model's device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import DevprocError
from .types import DTYPES, DType, ImageType, KVCacheType, ModelType, StringType, TensorType, TokenizerType, Type

REQUIRED = object()
Float32, Int32, Int64 = DTYPES["float32"], DTYPES["int32"], DTYPES["int64"]


@dataclass
class OpDef:
    name: str
    operands: tuple            # names of the traced operands, in order
    attrs: dict                # attribute -> default (REQUIRED: must be given); Python constants
    infer: Callable            # (operand types, attrs) -> list of result types; raises _Rule
    kernel: Callable | None = None   # numpy: (operands, attrs) -> list of results; None: a device op
    variadic: bool = False     # the last operand is a list of values (concat's xs, call's args)
    optional: tuple = ()       # trailing operands that may be left out (decode_loop's embedding)
    device: bool = False       # runs on a model's device (the runtime's job)
    doc: str = ""
    check_attrs: Callable | None = field(default=None, repr=False)


class _Rule(Exception):
    """A broken type rule or attribute rule (the tracer and the graph reader add where)."""


OPS: dict[str, OpDef] = {}


def _op(name, operands, attrs=None, variadic=False, optional=(), device=False):
    def register(infer):
        OPS[name] = OpDef(name, tuple(operands), dict(attrs or {}), infer, None, variadic, tuple(optional), device,
                          (infer.__doc__ or "").strip())
        return infer
    return register


def kernel(name):
    def register(fn):
        OPS[name].kernel = fn
        return fn
    return register


def _c(a: np.ndarray) -> np.ndarray:
    """``a`` in C order, its shape kept (``np.ascontiguousarray`` makes a 0-d array 1-d)."""
    return np.require(a, requirements="C")


# ----------------------------------------------------------------------------- type-rule helpers

def _tensor(t: Type, what: str, dtype_kind: str | None = None, rank: int | None = None) -> TensorType:
    if not isinstance(t, TensorType):
        raise _Rule(f"{what} must be a Tensor, got {t!r}")
    if dtype_kind == "float" and not t.dtype.is_float:
        raise _Rule(f"{what} must be a float tensor, got {t!r}")
    if dtype_kind == "int" and not t.dtype.is_int:
        raise _Rule(f"{what} must be an integer or bool tensor, got {t!r}")
    if rank is not None and t.rank != rank:
        raise _Rule(f"{what} must have rank {rank}, got {t!r}")
    return t


def _is(t: Type, cls, what: str) -> None:
    if not isinstance(t, cls):
        raise _Rule(f"{what} must be a {cls().__repr__()}, got {t!r}")


def _int_attr(attrs, name, lo=None, hi=None) -> int:
    v = attrs[name]
    if not isinstance(v, int) or isinstance(v, bool) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _Rule(f"{name}={v!r} must be an integer" + (f" in [{lo}, {hi}]" if lo is not None and hi is not None
                                                          else f" >= {lo}" if lo is not None else ""))
    return v


def _bool_attr(attrs, name) -> bool:
    if not isinstance(attrs[name], bool):
        raise _Rule(f"{name}={attrs[name]!r} must be True or False")
    return attrs[name]


def _num_attr(attrs, name, lo=None, hi=None) -> float:
    v = attrs[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _Rule(f"{name}={v!r} must be a finite number" + (f" in [{lo}, {hi}]" if lo is not None else ""))
    return float(v)


def _axis(dim, rank: int, what: str = "dim") -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank:
        raise _Rule(f"{what}={dim!r} is outside the {rank} axes")
    return dim % rank


def _floats3(attrs, name) -> list:
    v = attrs[name]
    if not isinstance(v, list) or len(v) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float))
                                                     or not math.isfinite(x) for x in v):
        raise _Rule(f"{name}={v!r} must be 3 finite numbers (one per channel)")
    return [float(x) for x in v]


# ----------------------------------------------------------------------------- text

@_op("string", [], {"value": REQUIRED})
def _string(ts, attrs):
    """A String constant written in the kernel."""
    if not isinstance(attrs["value"], str) or len(attrs["value"]) > 1 << 20:
        raise _Rule("value must be a str of at most 1 MiB")
    return [StringType()]


@kernel("string")
def _string_k(args, attrs):
    return [attrs["value"]]


@_op("tokenize_encode", ["text", "tokenizer"], {"add_special_tokens": False})
def _tok_enc(ts, attrs):
    """Int32 [1, n]: the ids of text."""
    _is(ts[0], StringType, "text")
    _is(ts[1], TokenizerType, "tokenizer")
    _bool_attr(attrs, "add_special_tokens")
    return [TensorType(Int32, 2)]


@kernel("tokenize_encode")
def _tok_enc_k(args, attrs):
    text, tok = args
    ids = tok.encode(text, add_special_tokens=attrs["add_special_tokens"])
    return [np.asarray(ids, dtype=np.int32).reshape(1, -1)]


@_op("tokenize_decode", ["ids", "tokenizer"], {"skip_special_tokens": True})
def _tok_dec(ts, attrs):
    """String: the text of ids."""
    _tensor(ts[0], "ids", "int")
    _is(ts[1], TokenizerType, "tokenizer")
    _bool_attr(attrs, "skip_special_tokens")
    return [StringType()]


@kernel("tokenize_decode")
def _tok_dec_k(args, attrs):
    ids, tok = args
    return [tok.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens=attrs["skip_special_tokens"])]


# ----------------------------------------------------------------------------- tensors

@_op("to", ["x"], {"dtype": REQUIRED})
def _to(ts, attrs):
    """x converted to dtype (numpy's astype; a float that is not finite or does not fit an integer dtype is
    an error)."""
    t = _tensor(ts[0], "x")
    if attrs["dtype"] not in DTYPES:
        raise _Rule(f"dtype={attrs['dtype']!r} is not one of {', '.join(DTYPES)}")
    return [TensorType(DTYPES[attrs["dtype"]], t.rank)]


_INT_RANGE = {"bool": (0, 1), "uint8": (0, 255), "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


@kernel("to")
def _to_k(args, attrs):
    x, to = args[0], attrs["dtype"]
    if x.dtype.kind == "f" and to in _INT_RANGE and to != "bool":
        t = np.trunc(x.astype(np.float64))
        lo, hi = _INT_RANGE[to]     # hi + 1 is a power of two: exact in float64, unlike int64's hi
        bad = ~np.isfinite(x) | (t < lo) | (t >= float(hi + 1))
        if bad.any():
            raise DevprocError(f"to: value {float(x[bad].reshape(-1)[0])!r} does not fit dtype {to}")
    return [_c(x.astype(to))]


@_op("argmax", ["x"], {"dim": -1, "keepdim": False})
def _argmax(ts, attrs):
    """Int64: index of the first maximum along dim (NaN is the maximum)."""
    t = _tensor(ts[0], "x")
    if t.rank == 0:
        raise _Rule("x must have at least one axis")
    _axis(attrs["dim"], t.rank)
    keep = _bool_attr(attrs, "keepdim")
    return [TensorType(Int64, t.rank if keep else t.rank - 1)]


@kernel("argmax")
def _argmax_k(args, attrs):
    x = args[0]
    ax = attrs["dim"] % x.ndim
    if x.shape[ax] == 0:
        raise DevprocError(f"argmax: axis {ax} of shape {list(x.shape)} is empty")
    return [np.argmax(x, axis=ax, keepdims=attrs["keepdim"]).astype(np.int64)]


@_op("concat", ["xs"], {"dim": 0}, variadic=True)
def _concat(ts, attrs):
    """xs joined along dim: one dtype and rank."""
    if not ts:
        raise _Rule("concat needs at least one tensor")
    first = _tensor(ts[0], "xs[0]")
    for k, t in enumerate(ts[1:], 1):
        _tensor(t, f"xs[{k}]")
        if t != first:
            raise _Rule(f"xs[{k}] is {t!r} but xs[0] is {first!r}: concat needs one dtype and rank")
    _axis(attrs["dim"], first.rank)
    return [first]


@kernel("concat")
def _concat_k(args, attrs):
    xs = args
    ax = attrs["dim"] % xs[0].ndim
    for k, x in enumerate(xs[1:], 1):
        if x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + xs[0].shape[ax + 1:]:
            raise DevprocError(f"concat: shapes {list(xs[0].shape)} and {list(x.shape)} differ outside axis {ax}")
    return [np.concatenate(xs, axis=ax)]


@_op("transpose", ["x"], {"dim0": REQUIRED, "dim1": REQUIRED})
def _transpose(ts, attrs):
    """x with two axes swapped."""
    t = _tensor(ts[0], "x")
    _axis(attrs["dim0"], t.rank, "dim0")
    _axis(attrs["dim1"], t.rank, "dim1")
    return [t]


@kernel("transpose")
def _transpose_k(args, attrs):
    return [_c(np.swapaxes(args[0], attrs["dim0"], attrs["dim1"]))]


@_op("unsqueeze", ["x"], {"dim": REQUIRED})
def _unsqueeze(ts, attrs):
    """x with an axis of size 1 inserted at dim."""
    t = _tensor(ts[0], "x")
    _axis(attrs["dim"], t.rank + 1)
    return [TensorType(t.dtype, t.rank + 1)]


@kernel("unsqueeze")
def _unsqueeze_k(args, attrs):
    return [np.expand_dims(args[0], attrs["dim"] % (args[0].ndim + 1))]


@_op("ones_like", ["x"])
def _ones_like(ts, attrs):
    """Int32 ones of x's shape (an attention mask of a sequence without padding)."""
    t = _tensor(ts[0], "x")
    return [TensorType(Int32, t.rank)]


@kernel("ones_like")
def _ones_like_k(args, attrs):
    return [np.ones(args[0].shape, dtype=np.int32)]


@_op("mean_pool", ["x", "mask"])
def _mean_pool(ts, attrs):
    """Float32 [B, H]: the mean of x [B, n, H] over the rows the mask [B, n] keeps."""
    _tensor(ts[0], "x", "float", 3)
    _tensor(ts[1], "mask", "int", 2)
    return [TensorType(Float32, 2)]


@kernel("mean_pool")
def _mean_pool_k(args, attrs):
    x, mask = args
    if x.shape[:2] != mask.shape:
        raise DevprocError(f"mean_pool: mask of shape {list(mask.shape)} does not match x of shape "
                           f"{list(x.shape)} (needs [B, n] of x [B, n, H])")
    x = x.astype(np.float32)
    m = mask.astype(np.float32)
    if x.shape[1] == 0:
        return [np.zeros((x.shape[0], x.shape[2]), dtype=np.float32)]
    # float32 sums row by row, i = 0..n-1 (add.accumulate is sequential): the order clib's kernel adds in
    acc = np.add.accumulate(x * m[:, :, None], axis=1, dtype=np.float32)[:, -1]
    den = np.add.accumulate(m, axis=1, dtype=np.float32)[:, -1:]
    return [acc / np.maximum(den, np.float32(1e-9))]


@_op("l2_normalize", ["x"], {"dim": -1, "eps": 1e-12})
def _l2(ts, attrs):
    """Float32: x divided by its L2 norm along dim (at least eps)."""
    t = _tensor(ts[0], "x", "float")
    if t.rank == 0:
        raise _Rule("x must have at least one axis")
    _axis(attrs["dim"], t.rank)
    _num_attr(attrs, "eps", 0.0)
    return [TensorType(Float32, t.rank)]


@kernel("l2_normalize")
def _l2_k(args, attrs):
    x = np.moveaxis(args[0].astype(np.float32), attrs["dim"], -1)
    sq = x.astype(np.float64) ** 2      # exact: a float32 squared fits a double
    # summed in index order (add.accumulate is sequential), as clib adds
    s = np.add.accumulate(sq, axis=-1)[..., -1] if x.shape[-1] else np.zeros(x.shape[:-1])
    norm = np.maximum(np.sqrt(s), np.float64(attrs["eps"])).astype(np.float32)
    return [_c(np.moveaxis(x / norm[..., None], -1, attrs["dim"]))]


@_op("embed", ["ids", "table"])
def _embed(ts, attrs):
    """Float32 [..., H]: the rows of table [V, H] at ids."""
    t = _tensor(ts[0], "ids", "int")
    _tensor(ts[1], "table", "float", 2)
    return [TensorType(Float32, t.rank + 1)]


@kernel("embed")
def _embed_k(args, attrs):
    ids, table = args
    bad = (ids < 0) | (ids >= table.shape[0])
    if bad.any():
        raise DevprocError(f"embed: id {int(ids[bad].reshape(-1)[0])} is outside the table's {table.shape[0]} rows")
    return [table.astype(np.float32)[ids.astype(np.int64)]]


# ----------------------------------------------------------------------------- images

@_op("load_image", ["path"])
def _load_image(ts, attrs):
    """Image: a PNG or binary PPM file, as RGB."""
    _is(ts[0], StringType, "path")
    return [ImageType()]


@kernel("load_image")
def _load_image_k(args, attrs):
    from .image import load_image
    return [load_image(args[0])]


_METHODS = ("bilinear", "bicubic", "nearest")


@_op("resize", ["image"], {"size": REQUIRED, "method": "bilinear"})
def _resize(ts, attrs):
    """Image resized to size = [height, width] as Pillow resizes."""
    _is(ts[0], ImageType, "image")
    s = attrs["size"]
    if not isinstance(s, list) or len(s) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                    or not 1 <= v <= 16384 for v in s):
        raise _Rule(f"size={s!r} must be [height, width], integers in [1, 16384]")
    if attrs["method"] not in _METHODS:
        raise _Rule(f"method={attrs['method']!r} is not one of {', '.join(_METHODS)}")
    return [ImageType()]


@kernel("resize")
def _resize_k(args, attrs):
    from .image import resize
    return [resize(args[0], attrs["size"][0], attrs["size"][1], attrs["method"])]


@_op("normalize", ["image"], {"mean": REQUIRED, "std": REQUIRED})
def _normalize(ts, attrs):
    """Float32 [1, 3, H, W]: (v / 255 - mean[c]) / std[c] (torchvision's ToTensor then Normalize)."""
    _is(ts[0], ImageType, "image")
    _floats3(attrs, "mean")
    std = _floats3(attrs, "std")
    if any(s == 0 for s in std):
        raise _Rule(f"std={std!r} must not hold a zero")
    return [TensorType(Float32, 4)]


@kernel("normalize")
def _normalize_k(args, attrs):
    from .image import normalize
    return [normalize(args[0], attrs["mean"], attrs["std"])]


# ----------------------------------------------------------------------------- models (device ops)

@_op("call", ["model", "args"], variadic=True, device=True)
def _call(ts, attrs):
    """The model's compiled forward: result types are the model's (given by the trace)."""
    _model(ts[0], "forward")
    for k, t in enumerate(ts[1:]):
        _tensor(t, f"argument {k}")
    return None


def _model(t: Type, use: str) -> None:
    if not isinstance(t, ModelType):
        raise _Rule(f"the model operand must be a TorchModel, got {t!r}")
    if t.use not in (None, use):
        raise _Rule(f"this model is compiled for use '{t.use}', not '{use}'")


@_op("kv_cache", [], device=True)
def _kv_cache(ts, attrs):
    """An empty KV cache."""
    return [KVCacheType()]


def _llm_input(t: Type, what: str) -> TensorType:
    t = _tensor(t, what)
    if not ((t.dtype.is_int and t.rank == 2) or (t.dtype.is_float and t.rank == 3)):
        raise _Rule(f"{what} must be token ids (integer [1, n]) or embeddings (float [1, n, H]), got {t!r}")
    return t


def _logits_step(ts, what: str) -> list:
    _model(ts[0], "llm")
    _llm_input(ts[1], what)
    _is(ts[2], KVCacheType, "cache")
    return [TensorType(Float32, 2)]


@_op("prefill", ["model", "x", "cache"], device=True)
def _prefill(ts, attrs):
    """Float32 [1, vocab]: the last row's logits of x after the cached tokens."""
    return _logits_step(ts, "x")


@_op("decode", ["model", "token", "cache"], device=True)
def _decode(ts, attrs):
    """Float32 [1, vocab]: the logits after one more token."""
    return _logits_step(ts, "token")


@_op("decode_loop", ["model", "x", "cache", "embedding"],
     {"max_new_tokens": REQUIRED, "eos_id": None, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0},
     optional=("embedding",), device=True)
def _decode_loop(ts, attrs):
    """Int32 [1, m]: the generated tokens (dlavm generate's loop)."""
    _model(ts[0], "llm")
    x = _llm_input(ts[1], "x")
    _is(ts[2], KVCacheType, "cache")
    if x.dtype.is_float and len(ts) < 4:
        raise _Rule("a prompt of embeddings needs embedding= (the table that turns each new token into the "
                    "next input)")
    if len(ts) == 4:
        _tensor(ts[3], "embedding", "float", 2)
        if not x.dtype.is_float:
            raise _Rule("embedding= is for a prompt of embeddings; this prompt is token ids")
    _int_attr(attrs, "max_new_tokens", 1, 1 << 20)
    eos = attrs["eos_id"]
    eos_list = eos if isinstance(eos, list) else [] if eos is None else [eos]
    if any(isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < 1 << 24 for e in eos_list):
        raise _Rule(f"eos_id={eos!r} must be None, a token id or a list of token ids")
    _num_attr(attrs, "temperature", 0.0, 1e6)
    _int_attr(attrs, "top_k", 0, 1 << 24)
    _num_attr(attrs, "top_p", 0.0, 1.0)
    if attrs["top_p"] == 0:
        raise _Rule("top_p=0 must be a number in (0, 1]")
    _int_attr(attrs, "seed", 0, 2**63 - 1)
    return [TensorType(Int32, 2)]


# ----------------------------------------------------------------------------- checks

def full_attrs(op: OpDef, given: dict) -> dict:
    """``given`` with the defaults filled in; _Rule for an unknown or missing attribute."""
    unknown = set(given) - set(op.attrs)
    if unknown:
        raise _Rule(f"{op.name} has no attribute {sorted(unknown)[0]!r} (it takes: {', '.join(op.attrs) or 'none'})")
    out = {}
    for a, default in op.attrs.items():
        if a in given:
            out[a] = given[a]
        elif default is REQUIRED:
            raise _Rule(f"{op.name} needs {a}=")
        else:
            out[a] = default
    return out


def attr_value(v):
    """An attribute as the graph stores it: a DType by name, tuples as lists."""
    if isinstance(v, DType):
        return v.name
    if isinstance(v, (tuple, list)):
        return [attr_value(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def infer(op: OpDef, types: list, attrs: dict):
    """Result types of ``op`` on operands of ``types`` (None for ``call``: the model's); _Rule otherwise."""
    n_fixed = len(op.operands) - (1 if op.variadic else 0)
    lo = n_fixed - len(op.optional)
    if len(types) < lo or (not op.variadic and len(types) > n_fixed):
        raise _Rule(f"{op.name} takes {lo if lo == n_fixed else f'{lo} to {n_fixed}'} operand(s), got {len(types)}")
    return op.infer(types, attrs)


def check_node(node, types: list, at: str) -> None:
    """A saved node against its op's rules (graph reader): operands, attributes and result types."""
    op = OPS[node.op]
    try:
        attrs = full_attrs(op, node.attrs)
        if attrs != node.attrs:
            raise _Rule("attrs must list every attribute of the op")
        want = infer(op, types, attrs)
    except _Rule as e:
        raise DevprocError(f"{at} ({node.op}): {e}") from None
    if want is None:   # a model call: tensors of the model's outputs
        if not node.types or any(not isinstance(t, TensorType) for t in node.types):
            raise DevprocError(f"{at} (call): a model call's results must be tensors")
    elif want != node.types:
        raise DevprocError(f"{at} ({node.op}): result types {node.types} are not the op's {want}")


def run_host_op(node, args: list) -> list:
    """The numpy kernel of a host node on concrete operands (IEEE results: an overflow is inf, 0/0 NaN,
    without numpy's warnings)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return OPS[node.op].kernel(args, node.attrs)


__all__ = ["OPS", "OpDef", "REQUIRED", "attr_value", "check_node", "full_attrs", "infer", "run_host_op"]