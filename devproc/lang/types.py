"""DevProc's types (doc/devproc.md, "Types"): what flows along the edges of a pipeline graph.

A tensor type is a dtype and a rank; sizes are checked when the pipeline runs, not when it is traced.
``None`` in a type used as a kernel annotation means "any" (``devproc.Tensor`` accepts every tensor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DevprocError


@dataclass(frozen=True)
class DType:
    """An element type (``devproc.Int32``...): its name is numpy's."""
    name: str

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.name)

    @property
    def is_float(self) -> bool:
        return self.name.startswith("float")

    @property
    def is_int(self) -> bool:
        return self.name in ("uint8", "int32", "int64", "bool")

    def __repr__(self) -> str:
        return f"devproc.{_DTYPE_NAMES[self.name]}"


_DTYPE_NAMES = {"bool": "Bool", "uint8": "UInt8", "int32": "Int32", "int64": "Int64", "float16": "Float16",
                "float32": "Float32"}
DTYPES = {n: DType(n) for n in _DTYPE_NAMES}
Bool, UInt8, Int32, Int64, Float16, Float32 = (DTYPES[n] for n in _DTYPE_NAMES)


def dtype_of(x) -> DType:
    """The DType named by ``x`` (a DType, a numpy dtype or its name); DevprocError for another."""
    if isinstance(x, DType):
        return x
    try:
        name = np.dtype(x).name
    except TypeError:
        raise DevprocError(f"{x!r} is not a dtype (one of {', '.join(map(repr, DTYPES.values()))})") from None
    if name not in DTYPES:
        raise DevprocError(f"dtype {name} is not one DevProc holds ({', '.join(DTYPES)})")
    return DTYPES[name]


class Type:
    """Base of the types; ``accepts(other)`` says whether a value of ``other`` fits an annotation."""
    kind = ""

    def accepts(self, other: "Type") -> bool:
        return type(other) is type(self)

    def to_json(self) -> dict:
        return {"kind": self.kind}


@dataclass(frozen=True)
class StringType(Type):
    kind = "string"

    def __repr__(self) -> str:
        return "String"


@dataclass(frozen=True)
class TokenizerType(Type):
    kind = "tokenizer"

    def __repr__(self) -> str:
        return "Tokenizer"


@dataclass(frozen=True)
class KVCacheType(Type):
    kind = "kvcache"

    def __call__(self):
        """``devproc.KVCache()`` inside a kernel: a new, empty KV cache."""
        from .trace import current
        b = current()
        if b is None:
            raise DevprocError("devproc.KVCache() makes a KV cache inside a @devproc.kernel")
        return b.add("kv_cache", [], {})[0]

    def __repr__(self) -> str:
        return "KVCache"


@dataclass(frozen=True)
class ImageType(Type):
    """uint8 [H, W, 3], RGB."""
    kind = "image"

    def __repr__(self) -> str:
        return "Image"


@dataclass(frozen=True)
class ModelType(Type):
    """A TorchModel; ``use`` is ``forward`` (called as ``model(x)``) or ``llm`` (prefill / decode), None in
    an annotation."""
    use: str | None = None
    kind = "model"

    def accepts(self, other: Type) -> bool:
        return isinstance(other, ModelType) and (self.use is None or self.use == other.use)

    def to_json(self) -> dict:
        return {"kind": "model", "use": self.use}

    def __repr__(self) -> str:
        return "TorchModel"


@dataclass(frozen=True)
class TensorType(Type):
    dtype: DType | None = None
    rank: int | None = None
    kind = "tensor"

    def accepts(self, other: Type) -> bool:
        return (isinstance(other, TensorType) and (self.dtype is None or self.dtype == other.dtype)
                and (self.rank is None or self.rank == other.rank))

    def __getitem__(self, spec) -> "TensorType":
        """``Tensor[Float32]``, ``Tensor[Int32, 2]``: an annotation with a dtype and a rank."""
        spec = spec if isinstance(spec, tuple) else (spec,)
        dt = dtype_of(spec[0]) if spec and spec[0] is not None else None
        rank = spec[1] if len(spec) > 1 else None
        return TensorType(dt, rank)

    def to_json(self) -> dict:
        return {"kind": "tensor", "dtype": self.dtype.name if self.dtype else None, "rank": self.rank}

    def __repr__(self) -> str:
        if self.dtype is None and self.rank is None:
            return "Tensor"
        return f"Tensor[{self.dtype!r}{'' if self.rank is None else f', rank {self.rank}'}]"


String, Tokenizer, KVCache, Image, TorchModel, Tensor = (StringType(), TokenizerType(), KVCacheType(), ImageType(),
                                                         ModelType(), TensorType())

_KINDS = {"string": StringType, "tokenizer": TokenizerType, "kvcache": KVCacheType, "image": ImageType}
MODEL_USES = ("forward", "llm")


def type_from_json(obj, where: str) -> Type:
    """The type of a ``pipeline.json`` type object (doc/devproc.md), DevprocError naming ``where``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        raise DevprocError(f"{where}: a type must be an object with a string 'kind'")
    kind = obj["kind"]
    if kind in _KINDS:
        if set(obj) != {"kind"}:
            raise DevprocError(f"{where}: type '{kind}' takes no other field")
        return _KINDS[kind]()
    if kind == "model":
        if set(obj) != {"kind", "use"} or obj["use"] not in MODEL_USES:
            raise DevprocError(f"{where}: a model type needs 'use' of {', '.join(MODEL_USES)}")
        return ModelType(obj["use"])
    if kind == "tensor":
        if set(obj) != {"kind", "dtype", "rank"}:
            raise DevprocError(f"{where}: a tensor type has exactly the fields kind, dtype, rank")
        if not isinstance(obj["dtype"], str) or obj["dtype"] not in DTYPES:
            raise DevprocError(f"{where}: dtype {obj['dtype']!r} is not one of {', '.join(DTYPES)}")
        rank = obj["rank"]
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= 8:
            raise DevprocError(f"{where}: rank {rank!r} must be an integer in [0, 8]")
        return TensorType(DTYPES[obj["dtype"]], rank)
    raise DevprocError(f"{where}: unknown type kind {kind!r}")


def type_of_value(v) -> Type:
    """The type of a concrete Python value passed to a pipeline (a str, a numpy array)."""
    if isinstance(v, str):
        return String
    if isinstance(v, np.ndarray):
        return TensorType(dtype_of(v.dtype), v.ndim)
    raise DevprocError(f"a value of type {type(v).__name__} cannot be a pipeline input (a str or a numpy array)")
