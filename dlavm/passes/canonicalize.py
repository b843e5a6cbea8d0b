"""``canonicalize``: remove identities the exporter leaves behind.

After this pass no call is an identity: no ``add``/``sub`` of a zero literal
or ``mul`` by a one literal that keeps the type, no ``div`` by a one literal
that keeps the type and does not round (``rounding_mode`` None, or integer
operands, where rounding an exact quotient is exact), no ``reshape`` /
``expand`` to the input's own shape, no ``cast`` to the input's dtype, no
identity ``permute``; chains of ``reshape`` collapse to one, and a
``permute`` of a ``permute`` to one; a ``permute`` that moves only size-1
axes (the other axes keep their order: ``[1, S, D] -> [S, 1, D]``, a
batch-first model with batch 1) is a ``reshape``, which is a view on the
device, and a ``permute`` of a ``reshape`` that only inserts or drops
size-1 axes sinks below it (where it composes with the permute under it:
``nn.MultiheadAttention``'s head split and SDPA's head layout cancel).

Values and types are unchanged: every rule keeps the dtype and the shape
(the rewrite engine checks it, so no rule changes a broadcast or a type
promotion) and states which attribute values it holds for (a rule that
ignored an attribute is refused by ``Rule``). The only bit-level difference:
``add(x, 0)`` returns ``x``, so a ``-0.0`` element keeps its sign where the
add would give ``+0.0`` (the two compare equal).
"""
from __future__ import annotations

from ..ir import Call, Literal, call, dtype_category, function_pass
from .rewrite import READ, Rule, rewrite


def _is_literal(node, value) -> bool:
    return isinstance(node, Literal) and node.value == value and not isinstance(node.value, bool)


def _drop_neutral(neutral, right_only: bool):
    """``op(a, neutral) -> a`` (and ``op(neutral, b) -> b`` unless ``right_only``) when the type is kept."""
    def fn(node: Call):
        a, b = node.args
        if _is_literal(b, neutral) and a.type == node.type:
            return a
        if not right_only and _is_literal(a, neutral) and b.type == node.type:
            return b
        return None
    return fn


def _drop_integer_div_by_one(node: Call):
    """A rounded ``x / 1`` is ``x`` only when ``x`` is an integer (floor(1.5 / 1) is 1)."""
    if dtype_category(node.type.dtype) != "int":
        return None
    return _drop_neutral(1, right_only=True)(node)


def _same_shape_identity(node: Call):
    x = node.args[0]
    return x if x.type == node.type else None


def _reshape_of_reshape(node: Call):
    x = node.args[0]
    if isinstance(x, Call) and x.op.name == "reshape":
        return call("reshape", x.args[0], shape=node.attrs["shape"], span=node.span)
    return None


def _identity_permute(node: Call):
    dims = node.attrs["dims"]
    return node.args[0] if tuple(d % len(dims) for d in dims) == tuple(range(len(dims))) else None


def _permute_of_permute(node: Call):
    x = node.args[0]
    if isinstance(x, Call) and x.op.name == "permute":
        n = len(node.attrs["dims"])
        inner = [d % n for d in x.attrs["dims"]]
        outer = [d % n for d in node.attrs["dims"]]
        return call("permute", x.args[0], dims=tuple(inner[d] for d in outer), span=node.span)
    return None


def _unit_axes_permute(node: Call):
    """A permute whose axes of size other than 1 keep their order moves no element: a reshape."""
    x, dims = node.args[0], node.attrs["dims"]
    n = len(dims)
    moved = [d % n for d in dims if not (getattr(x.type.shape[d % n], "is_const", False)
                                         and x.type.shape[d % n].value == 1)]
    if moved != sorted(moved) or tuple(d % n for d in dims) == tuple(range(n)):
        return None
    return call("reshape", x, shape=tuple(node.type.shape), span=node.span)


def _is_unit(d) -> bool:
    return getattr(d, "is_const", False) and d.value == 1


def _non_unit_axes(shape) -> list:
    return [i for i, d in enumerate(shape) if not _is_unit(d)]


def unit_reshape_dims(r, dims) -> tuple | None:
    """For ``permute(r, dims)`` with ``r = reshape(x)`` inserting or dropping only size-1 axes: the dims
    ``p`` with ``permute(r, dims) == reshape(permute(x, p))``; None for another reshape."""
    x = r.args[0]
    xs, ss = list(x.type.shape), list(r.type.shape)
    xa, sa = _non_unit_axes(xs), _non_unit_axes(ss)
    if len(xa) != len(sa) or any(xs[i] != ss[j] for i, j in zip(xa, sa)):
        return None
    to_x = dict(zip(sa, xa))
    n = len(dims)
    order = [to_x[d % n] for d in dims if (d % n) in to_x]
    return tuple(order + [i for i in range(len(xs)) if i not in to_x.values()])


def _permute_of_unit_reshape(node: Call):
    """``permute(reshape(x))`` where the reshape only inserts or drops size-1 axes ->
    ``reshape(permute(x))``: the permute sinks to ``x``, where it may compose with another permute."""
    r = node.args[0]
    if not (isinstance(r, Call) and r.op.name == "reshape"):
        return None
    dims = unit_reshape_dims(r, node.attrs["dims"])
    x = r.args[0]
    if dims is None or (dims == tuple(range(len(dims))) and len(dims) == len(node.attrs["dims"])):
        return None
    if isinstance(x, Call) and x.op.name == "permute":  # compose now: the engine revisits only the root
        below = [d % len(dims) for d in x.attrs["dims"]]
        x, dims = x.args[0], tuple(below[d] for d in dims)
    inner = x if dims == tuple(range(len(dims))) else call("permute", x, dims=dims, span=node.span)
    return call("reshape", inner, shape=tuple(node.type.shape), span=node.span)


RULES = [
    Rule("add-zero", "add", _drop_neutral(0, right_only=False), attrs={}),
    Rule("sub-zero", "sub", _drop_neutral(0, right_only=True), attrs={}),
    Rule("mul-one", "mul", _drop_neutral(1, right_only=False), attrs={}),
    Rule("div-one", "div", _drop_neutral(1, right_only=True), attrs={"rounding_mode": None}),
    Rule("int-div-one", "div", _drop_integer_div_by_one,
         attrs={"rounding_mode": lambda mode: mode is not None}),
    Rule("reshape-noop", "reshape", _same_shape_identity, attrs={"shape": READ}),
    Rule("reshape-reshape", "reshape", _reshape_of_reshape, attrs={"shape": READ}),
    Rule("expand-noop", "expand", _same_shape_identity, attrs={"shape": READ}),
    Rule("cast-noop", "cast", _same_shape_identity, attrs={"dtype": READ}),
    Rule("permute-identity", "permute", _identity_permute, attrs={"dims": READ}),
    Rule("permute-permute", "permute", _permute_of_permute, attrs={"dims": READ}),
    Rule("permute-unit-axes", "permute", _unit_axes_permute, attrs={"dims": READ}),
    Rule("permute-of-unit-reshape", "permute", _permute_of_unit_reshape, attrs={"dims": READ}),
]

#: rules of the ``canonicalize`` pass that ``legalize`` does not reuse: sinking a permute below a reshape
#: would take apart the head layouts legalization rules build and match (``head_major``, HF ``repeat_kv``)
PRE_LEGALIZE_ONLY = frozenset({"permute-of-unit-reshape"})


@function_pass("canonicalize")
def canonicalize(fn):
    """Remove identity ops and collapse reshape/permute chains (see module docstring)."""
    return rewrite(fn, RULES)
