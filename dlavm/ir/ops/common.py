"""Shared pieces of type relations: axis normalisation and broadcasting."""
from __future__ import annotations

from ... import sym
from ..op import IRTypeError
from ..types import TensorType, TupleType

ONE = None  # set lazily to sym.const(1) (sym may be imported after us)


def tensor(t, op: str, what: str = "input") -> TensorType:
    """``t`` as a TensorType, or an IRTypeError naming the op."""
    if not isinstance(t, TensorType):
        raise IRTypeError(f"op '{op}': {what} must be a tensor, got {t}")
    return t


def norm_axis(axis: int, ndim: int, op: str) -> int:
    """Map a possibly negative axis into ``[0, ndim)``."""
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise IRTypeError(f"op '{op}': axis {axis} out of range for rank {ndim}")
    return axis % max(ndim, 1)


def norm_axes(axes, ndim: int, op: str) -> tuple:
    out = tuple(sorted({norm_axis(a, ndim, op) for a in axes}))
    if len(out) != len(tuple(axes)):
        raise IRTypeError(f"op '{op}': repeated axis in {tuple(axes)}")
    return out


def is_one(d) -> bool:
    return d.is_const and d.value == 1


def broadcast_shapes(shapes, op: str) -> tuple:
    """Numpy broadcasting over symbolic dims.

    Dims broadcast when structurally equal or when one is the constant 1; two
    different dims that are not provably equal are an error (torch.export has
    already specialised any that it relies on being equal).
    """
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dim = None
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if dim is None or is_one(dim):
                dim = d
            elif is_one(d) or d == dim:
                continue
            else:
                raise IRTypeError(f"op '{op}': cannot broadcast dim {d} with {dim} "
                                  f"(shapes {', '.join('[' + ', '.join(map(str, s)) + ']' for s in shapes)})")
        out.append(dim if dim is not None else sym.const(1))
    return tuple(out)


def same_numel(a, b) -> bool:
    """True when two shapes provably have the same number of elements."""
    na, nb = sym.const(1), sym.const(1)
    for d in a:
        na = na * d
    for d in b:
        nb = nb * d
    return na == nb


def tuple_of(types) -> TupleType:
    return TupleType(tuple(types))
