"""The public functions of ``devproc``: one per op of the registry, plus inputs, constants and tokenizers."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from .errors import DevprocError
from .ops import OPS, REQUIRED, _Rule, attr_value, full_attrs, infer
from .trace import ConstArray, InputSpec, TokenizerHandle, Value, current, refuse
from .types import ImageType, TokenizerType, type_of_value

#: the ops a user calls by name (``call`` is ``model(x)``, ``kv_cache`` is ``devproc.KVCache()``,
#: ``string`` is a str literal)
PUBLIC_OPS = ("tokenize_encode", "tokenize_decode", "to", "argmax", "concat", "transpose", "unsqueeze",
              "ones_like", "mean_pool", "l2_normalize", "embed", "load_image", "resize", "normalize", "prefill",
              "decode", "decode_loop")
MAX_TOKENIZER_BYTES = 64 << 20


def _signature(op) -> inspect.Signature:
    params = []
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in op.operands:
        default = None if name in op.optional else inspect.Parameter.empty
        params.append(inspect.Parameter(name, kind, default=default))
    if op.optional:   # attributes after an optional operand are given by name
        kind = inspect.Parameter.KEYWORD_ONLY
    for name, default in op.attrs.items():
        params.append(inspect.Parameter(name, kind,
                                        default=inspect.Parameter.empty if default is REQUIRED else default))
    return inspect.Signature(params)


def _eager_type(v):
    if isinstance(v, TokenizerHandle):
        return TokenizerType()
    if isinstance(v, ConstArray):
        v = v.array
    if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3 and v.shape[-1] == 3:
        return ImageType()    # an image, as load_image gives it
    return type_of_value(v)


def _eager_value(v):
    if isinstance(v, TokenizerHandle):
        return v.tokenizer
    if isinstance(v, ConstArray):
        return v.array
    return v


def _make(name: str):
    op = OPS[name]
    sig = _signature(op)

    def fn(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise refuse(f"{name}: {e}") from None
        bound.apply_defaults()
        a = bound.arguments
        operands = []
        for o in op.operands:
            v = a[o]
            if op.variadic and o == op.operands[-1]:
                if not isinstance(v, (list, tuple)):
                    raise refuse(f"{name}: {o} must be a list of tensors")
                operands.extend(v)
            elif o in op.optional and v is None:
                continue
            else:
                operands.append(v)
        attrs = {k: a[k] for k in op.attrs}
        b = current()
        if b is not None:
            for k, v in attrs.items():
                if isinstance(v, Value) or (isinstance(v, (list, tuple)) and any(isinstance(x, Value) for x in v)):
                    raise refuse(f"{name}: {k}= must be a Python constant, not a traced value")
            outs = b.add(name, operands, attrs)
            return outs[0] if len(outs) == 1 else tuple(outs)
        if op.device:
            raise DevprocError(f"{name} runs a model: call it inside a @devproc.kernel")
        try:   # eager, outside any kernel: the type rule, then the numpy kernel on concrete values
            attrs = full_attrs(op, {k: attr_value(v) for k, v in attrs.items()})
            infer(op, [_eager_type(v) for v in operands], attrs)
        except _Rule as e:
            raise DevprocError(f"{name}: {e}") from None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            outs = op.kernel([_eager_value(v) for v in operands], attrs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = sig
    fn.__doc__ = op.doc
    return fn


OP_FUNCTIONS = {n: _make(n) for n in PUBLIC_OPS}


def input(name: str, type_):  # noqa: A001 -- the name the DSL gives it (doc/devproc.md)
    """A runtime input of an AOT pipeline (``devproc.compile(k, (devproc.input("prompt", devproc.String), ...))``)."""
    return InputSpec(name, type_)


def const(array, name: str | None = None) -> ConstArray:
    """A numpy array as a pipeline constant (saved with the pipeline)."""
    return ConstArray(np.asarray(array), name)


def tokenizer_from_bytes(data: bytes, origin: str):
    """A ``dlavm.tokenizer.Tokenizer`` of tokenizer.json bytes; DevprocError naming ``origin`` otherwise."""
    from tokenizers import Tokenizer as HFTokenizer

    from dlavm.tokenizer import Tokenizer
    try:
        hf = HFTokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 -- tokenizers raises bare Exceptions for schema errors
        raise DevprocError(f"tokenizer {origin}: not a tokenizer.json HF tokenizers can read: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return Tokenizer(hf, Path(origin))


def load_tokenizer(path) -> TokenizerHandle:
    """A tokenizer constant from a ``tokenizer.json`` (or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    try:
        size = p.stat().st_size
        if size > MAX_TOKENIZER_BYTES:
            raise DevprocError(f"tokenizer {p}: {size} bytes is more than {MAX_TOKENIZER_BYTES}")
        data = p.read_bytes()
    except OSError as e:
        raise DevprocError(f"tokenizer {p}: cannot read it ({e.strerror})") from None
    return TokenizerHandle(data, tokenizer_from_bytes(data, p.name), p.name)
