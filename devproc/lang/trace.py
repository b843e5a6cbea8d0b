"""Tracing (doc/devproc.md, "Tracing"): ``@kernel`` and the traced values that build a pipeline graph.

A traced :class:`Value` stands for a value that exists only when the pipeline runs, so anything that
would need it now (``if``, ``len``, indexing, numpy or torch functions, arithmetic) is refused with the
kernel's source line; DevProc ops are the only things that accept it.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
import threading
from typing import Any

import numpy as np

from .errors import DevprocError
from .graph import Const, Graph, Input, Node
from .ops import OPS, _Rule, attr_value, full_attrs, infer
from .types import (ImageType, ModelType, StringType, TensorType, TokenizerType, Type, dtype_of,
                    type_of_value)

_HERE = os.path.dirname(os.path.abspath(__file__))
_PKG = os.path.dirname(_HERE)
_state = threading.local()


def user_frame():
    """The innermost frame outside the devproc package (the user's kernel line)."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG + os.sep):
        f = f.f_back
    return f


def user_loc() -> str:
    """``file.py:LINE`` of the user's line (the base name: a saved pipeline names no folder of a machine)."""
    f = user_frame()
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}" if f is not None else "<unknown>:0"


def refuse(rule: str) -> DevprocError:
    return DevprocError(f"{user_loc()}: {rule}")


def current() -> "Builder | None":
    return getattr(_state, "builder", None)


# ----------------------------------------------------------------------------- constants

class TokenizerHandle:
    """A tokenizer constant (``devproc.load_tokenizer``): the bytes of its tokenizer.json and the loaded
    ``dlavm.tokenizer.Tokenizer``."""

    def __init__(self, data: bytes, tokenizer, origin: str):
        self.data, self.tokenizer, self.origin = data, tokenizer, origin
        self.sha256 = hashlib.sha256(data).hexdigest()

    def __repr__(self) -> str:
        return f"<devproc tokenizer {self.origin}>"


class ModelHandle:
    """What tracing needs of a TorchModel: its name and the types of its forward's results. The build
    side (``devproc.load_torch_model``) makes the real one."""
    name = "model"

    def output_types(self) -> list:
        raise NotImplementedError


class ConstArray:
    """A numpy array made a pipeline constant (``devproc.const``)."""

    def __init__(self, array, name: str | None = None):
        a = np.ascontiguousarray(array)
        dtype_of(a.dtype)
        self.array, self.name = a, name


# ----------------------------------------------------------------------------- traced values

def _no(what: str):
    def method(self, *a, **k):
        raise refuse(f"{what} on a traced value ({self!r}) is not possible while tracing: its value exists only "
                     "when the pipeline runs (use a DevProc op)")
    return method


class Value:
    """A traced value of a pipeline graph."""
    __slots__ = ("builder", "vid", "type")

    def __init__(self, builder: "Builder", vid: str, type_: Type):
        self.builder, self.vid, self.type = builder, vid, type_

    def __repr__(self) -> str:
        return f"<traced {self.type!r} {self.vid}>"

    def __call__(self, *args):
        if not isinstance(self.type, ModelType):
            raise refuse(f"{self!r} is not callable (only a TorchModel is)")
        return self.builder.call_model(self, args)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise refuse(f"'{name}' is not a DevProc op: a traced {self.type!r} has no attributes or methods "
                     "(call devproc.<op>(value, ...))")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise refuse(f"{getattr(func, '__name__', func)} is a torch function, not a DevProc op: torch cannot run "
                     "on a traced value (models run through model(x))")

    def __array__(self, *a, **k):
        raise refuse("numpy cannot convert a traced value: it exists only when the pipeline runs (use a DevProc op)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise refuse(f"numpy.{ufunc.__name__} is not a DevProc op")

    def __array_function__(self, func, types, args, kwargs):
        raise refuse(f"numpy.{func.__name__} is not a DevProc op")

    __bool__ = _no("Python control flow (if/while/and/or/not)")
    __len__ = _no("len()")
    __iter__ = _no("iteration (for ... in)")
    __getitem__ = _no("indexing")
    __int__ = _no("int()")
    __float__ = _no("float()")
    __index__ = _no("use as an index")
    __contains__ = _no("'in'")
    for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
                  "lshift", "rshift"):
        locals()[f"__{_name}__"] = _no(f"the operator __{_name}__ (arithmetic is not a DevProc op)")
        locals()[f"__r{_name}__"] = _no(f"the operator __{_name}__ (arithmetic is not a DevProc op)")
    for _name in ("lt", "le", "gt", "ge", "neg", "pos", "abs", "invert"):
        locals()[f"__{_name}__"] = _no(f"the operator __{_name}__")
    del _name
    __hash__ = object.__hash__


# ----------------------------------------------------------------------------- the builder

class Builder:
    """Collects the graph of one trace."""

    def __init__(self, name: str):
        self.graph = Graph(name)
        self._n = 0
        self.kernels: dict = {}          # name -> Kernel traced into this graph
        self._const_of: dict = {}        # id(payload) -> Value
        self.handles: dict = {}          # vid -> payload of a constant
        self._names: set = set()

    def new_vid(self) -> str:
        vid = f"v{self._n}"
        self._n += 1
        return vid

    def _unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def add_input(self, name: str, t: Type) -> Value:
        v = Value(self, self.new_vid(), t)
        self.graph.inputs.append(Input(self._unique(name), v.vid, t))
        return v

    def const(self, payload, name: str) -> Value:
        """The Value of a constant object (one per object in a trace)."""
        if id(payload) in self._const_of:
            return self._const_of[id(payload)]
        if isinstance(payload, TokenizerHandle):
            t: Type = TokenizerType()
        elif isinstance(payload, ModelHandle):
            t = ModelType(None)
            name = payload.name if name == "const" or name.endswith("_operand") else name
        elif isinstance(payload, ConstArray):
            t = TensorType(dtype_of(payload.array.dtype), payload.array.ndim)
            name = payload.name or name
        else:
            raise refuse(f"{type(payload).__name__} cannot be a pipeline constant")
        v = Value(self, self.new_vid(), t)
        self.graph.consts.append(Const(self._unique(_ident(name)), v.vid, t, payload))
        self._const_of[id(payload)] = v
        self.handles[v.vid] = payload
        return v

    def lift(self, x, name: str = "const"):
        """A traced Value for an operand: a Value, a constant object, a str or a numpy array."""
        if isinstance(x, Value):
            if x.builder is not self:
                raise refuse(f"{x!r} belongs to another trace")
            return x
        if isinstance(x, (TokenizerHandle, ModelHandle, ConstArray)):
            return self.const(x, name)
        if isinstance(x, str):
            return self.add("string", [], {"value": x})[0]
        if isinstance(x, np.ndarray):
            return self.const(ConstArray(x), name)
        raise refuse(f"a {type(x).__name__} ({x!r:.60}) is not a pipeline value (a traced value, a str, a numpy "
                     "array, a tokenizer or a model)")

    def add(self, op_name: str, operands: list, attrs: dict, result_types=None) -> list:
        op = OPS[op_name]
        vals = [self.lift(x, f"{op_name}_operand") for x in operands]
        try:
            attrs = full_attrs(op, {k: attr_value(v) for k, v in attrs.items()})
            types = infer(op, [v.type for v in vals], attrs)
        except _Rule as e:
            raise refuse(f"{op_name}: {e}") from None
        if types is None:
            types = result_types
        for v in vals:   # a model's use is decided by its first use
            if isinstance(v.type, ModelType) and v.type.use is None:
                self._set_use(v, "forward" if op_name == "call" else "llm")
        outs = [Value(self, self.new_vid(), t) for t in types]
        self.graph.nodes.append(Node(op_name, [v.vid for v in vals], attrs, [o.vid for o in outs], list(types),
                                     user_loc()))
        return outs

    def _set_use(self, v: Value, use: str) -> None:
        v.type = ModelType(use)
        for c in self.graph.consts:
            if c.value == v.vid:
                c.type = v.type

    def call_model(self, model: Value, args) -> Any:
        handle = self.handles[model.vid]
        if model.type.use == "llm":
            raise refuse(f"model '{handle.name}' is used by prefill/decode/decode_loop (compiled for generation "
                         "with a KV cache); call it as model(x) through another devproc.load_torch_model")
        outs = self.add("call", [model, *args], {}, handle.output_types())
        return outs[0] if len(outs) == 1 else tuple(outs)


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:48] or "const"
    return out if not out[0].isdigit() else "c_" + out


# ----------------------------------------------------------------------------- kernels

class InputSpec:
    """``devproc.input(name, type)``: a runtime input of an AOT pipeline."""

    def __init__(self, name: str, type_: Type):
        if not isinstance(type_, (StringType, TensorType, ImageType)):
            raise DevprocError(f"input '{name}': an input is a String, an Image or a Tensor, not {type_!r}")
        if isinstance(type_, TensorType) and (type_.dtype is None or type_.rank is None):
            raise DevprocError(f"input '{name}': give the tensor's dtype and rank (devproc.Tensor[devproc.Float32, 2])")
        self.name, self.type = name, type_


#: the JIT a kernel called with values goes to (``devproc`` installs ``devproc.build.jit``, a layer above)
_JIT: list = [None]


def install_jit(fn) -> None:
    _JIT[0] = fn


class Kernel:
    """A function traced into a pipeline (``@devproc.kernel``)."""

    def __init__(self, fn):
        if not callable(fn):
            raise DevprocError(f"@devproc.kernel needs a function, got {fn!r}")
        self.fn = fn
        self.name = fn.__name__
        try:   # annotations written as strings (from __future__ import annotations) are evaluated
            self.signature = inspect.signature(fn, eval_str=True)
        except Exception as e:  # noqa: BLE001 -- an annotation that does not evaluate is the user's error
            raise DevprocError(f"kernel '{fn.__name__}': its annotations do not evaluate ({type(e).__name__}: {e})") \
                from None
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<devproc kernel {self.name}>"

    @functools.cached_property
    def source(self) -> str:
        try:
            return inspect.getsource(self.fn)
        except (OSError, TypeError):
            return self.fn.__code__.co_code.hex()

    def __call__(self, *args, **kwargs):
        b = current()
        if b is not None:
            return self.inline(b, args, kwargs)
        if _JIT[0] is None:
            raise DevprocError(f"kernel '{self.name}' was called with values but no JIT is installed (import devproc)")
        return _JIT[0](self, args, kwargs)    # JIT: trace, compile (torch), cache, run

    def inline(self, b: Builder, args, kwargs):
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise refuse(f"kernel '{self.name}': {e}") from None
        bound.apply_defaults()
        b.kernels[self.name] = self
        values = {}
        for name, v in bound.arguments.items():
            ann = self.signature.parameters[name].annotation
            if isinstance(v, (Value, TokenizerHandle, ModelHandle, ConstArray, str, np.ndarray)) and \
                    (isinstance(ann, Type) or not isinstance(v, (str, np.ndarray))):
                v = b.lift(v, name)
            if isinstance(ann, Type):
                if not isinstance(v, Value):
                    raise refuse(f"argument '{name}' of kernel '{self.name}' should be {ann!r}, got a "
                                 f"{type(v).__name__}")
                if not ann.accepts(v.type) and not (isinstance(ann, ModelType) and isinstance(v.type, ModelType)):
                    raise refuse(f"argument '{name}' of kernel '{self.name}' is {v.type!r}, not {ann!r}")
            values[name] = v
        return self.fn(**values)


def kernel(fn) -> Kernel:
    """Decorator: ``fn`` becomes a DevProc kernel (doc/devproc.md)."""
    return Kernel(fn)


def _as_input(name: str, v, ann) -> tuple | None:
    """(name, type) when ``v`` is a runtime input of a JIT call, else None."""
    if isinstance(v, InputSpec):
        return v.name, v.type
    if isinstance(v, str) and not isinstance(ann, TokenizerType):
        return name, StringType()
    if isinstance(v, np.ndarray) and not isinstance(v, ConstArray):
        if isinstance(ann, ImageType):
            if v.dtype != np.uint8 or v.ndim != 3 or v.shape[2] != 3:
                raise DevprocError(f"argument '{name}': an Image is a uint8 array [H, W, 3], got {v.dtype} "
                                   f"{list(v.shape)}")
            return name, ImageType()
        return name, type_of_value(v)
    return None


def trace(k: Kernel, args: tuple, kwargs: dict | None = None) -> tuple[Graph, Builder, list]:
    """The graph of ``k`` called with ``args``: runtime inputs (``devproc.input`` markers, str, arrays) become
    graph inputs, tokenizers / models / ``devproc.const`` arrays constants, other Python values stay
    constants of the trace. Returns (graph, builder, the concrete input values in input order, None for a
    marker)."""
    if not isinstance(k, Kernel):
        raise DevprocError(f"{k!r} is not a @devproc.kernel")
    if current() is not None:
        raise refuse("a pipeline is compiled or run from outside a kernel, not inside one")
    try:
        bound = k.signature.bind(*args, **(kwargs or {}))
    except TypeError as e:
        raise DevprocError(f"kernel '{k.name}': {e}") from None
    bound.apply_defaults()
    b = Builder(k.name)
    concrete = []
    call_args = {}
    for name, v in bound.arguments.items():
        ann = k.signature.parameters[name].annotation
        inp = _as_input(name, v, ann)
        if inp is not None:
            call_args[name] = b.add_input(*inp)
            concrete.append(None if isinstance(v, InputSpec) else v)
        else:
            call_args[name] = v
    _state.builder = b
    try:
        result = k.inline(b, (), call_args)
    finally:
        _state.builder = None
    outputs: list = []

    def collect(r):
        if isinstance(r, Value):
            if r.vid not in outputs:
                outputs.append(r.vid)
            return r.vid
        if isinstance(r, (tuple, list)) and r:
            return tuple(collect(x) for x in r)
        raise DevprocError(f"kernel '{k.name}' must return traced values (or a tuple of them), got {r!r:.80}")
    b.graph.result = collect(result)
    b.graph.outputs = outputs
    used = {v for n in b.graph.nodes for v in n.inputs} | set(outputs)
    for c in b.graph.consts:
        if isinstance(c.type, ModelType) and c.type.use is None:
            c.type = ModelType("forward")
    unused = [i.name for i in b.graph.inputs if i.value not in used]
    if unused:
        raise DevprocError(f"kernel '{k.name}': input(s) {', '.join(unused)} are never used")
    return b.graph, b, concrete


__all__ = ["ConstArray", "InputSpec", "Kernel", "ModelHandle", "TokenizerHandle", "Value", "current", "kernel",
           "refuse", "trace", "user_loc"]