"""Types of graph IR values: tensors with symbolic shapes, and tuples.

A tensor type is a dtype plus a shape whose dims are ``dlavm.sym`` expressions
(constants included), so ``TensorType((seq, 4096), "float16")`` describes a
tensor whose first dim is any value of the bounded variable ``seq``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import sym

# dtype name -> (category, bit width). Categories drive type promotion:
# bool < integer < floating.
_DTYPES = {
    "bool": ("bool", 8),
    "uint8": ("int", 8),
    "int8": ("int", 8),
    "int16": ("int", 16),
    "int32": ("int", 32),
    "int64": ("int", 64),
    "float16": ("float", 16),
    "bfloat16": ("float", 16),
    "float32": ("float", 32),
    "float64": ("float", 64),
}
_CATEGORY_RANK = {"bool": 0, "int": 1, "float": 2}

DTYPES = tuple(_DTYPES)
DEFAULT_FLOAT = "float32"
DEFAULT_INT = "int64"


def check_dtype(dtype: str) -> str:
    """Return ``dtype`` if it names a known dtype, else raise ValueError."""
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dtype


def dtype_category(dtype: str) -> str:
    """'bool', 'int' or 'float'."""
    return _DTYPES[check_dtype(dtype)][0]


def dtype_bits(dtype: str) -> int:
    return _DTYPES[check_dtype(dtype)][1]


def dtype_bytes(dtype: str) -> int:
    return max(1, dtype_bits(dtype) // 8)


def is_float(dtype: str) -> bool:
    return dtype_category(dtype) == "float"


def promote_dtypes(strong: list[str], weak: list[str] = ()) -> str:
    """Result dtype of an elementwise op, following torch's rules.

    ``strong`` are dtypes of tensor operands with dimensions; ``weak`` are
    dtypes of scalar literals (Python numbers), which only matter when their
    category is higher than every strong operand's (then the default dtype of
    that category is used, as torch does for Python scalars).
    """
    if not strong:
        strong, weak = list(weak), []
    best = strong[0]
    for d in strong[1:]:
        best = _promote_pair(best, d)
    top = max((_CATEGORY_RANK[dtype_category(d)] for d in weak), default=-1)
    if top > _CATEGORY_RANK[dtype_category(best)]:
        best = {2: DEFAULT_FLOAT, 1: DEFAULT_INT, 0: "bool"}[top]
    return best


def _promote_pair(a: str, b: str) -> str:
    if a == b:
        return a
    ca, cb = _CATEGORY_RANK[dtype_category(a)], _CATEGORY_RANK[dtype_category(b)]
    if ca != cb:
        return a if ca > cb else b
    if {a, b} == {"float16", "bfloat16"}:
        return "float32"
    if {a, b} == {"uint8", "int8"}:
        return "int16"
    return a if dtype_bits(a) >= dtype_bits(b) else b


class Type:
    """Base class of IR types."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TensorType(Type):
    """A dense tensor: ``shape`` is a tuple of ``sym.Expr`` dims, ``dtype`` a dtype name."""

    shape: tuple
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(sym.as_expr(d) for d in self.shape))
        check_dtype(self.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self) -> sym.Expr:
        n = sym.const(1)
        for d in self.shape:
            n = n * d
        return n

    def nbytes(self) -> sym.Expr:
        return self.numel() * dtype_bytes(self.dtype)

    def free_vars(self) -> frozenset:
        out: set = set()
        for d in self.shape:
            out |= d.free_vars()
        return frozenset(out)

    def __str__(self) -> str:
        return f"{_SHORT.get(self.dtype, self.dtype)}[{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True, slots=True)
class TupleType(Type):
    """A fixed-size tuple of types (multi-output ops, function results)."""

    fields: tuple

    def __str__(self) -> str:
        return "(" + ", ".join(str(f) for f in self.fields) + ")"


_SHORT = {
    "float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64",
    "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
    "bool": "bool",
}
