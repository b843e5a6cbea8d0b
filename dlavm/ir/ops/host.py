"""Graph ops of user host ops (``@dlavm.host_op``, doc/host_ops.md).

Each registered user op that a model calls becomes a graph op of the same
name (``aten::cummax``), registered here on first use: its inputs are the
call's tensor operands, its result type is given by the importer (torch's
metadata for the call), and ``call`` is the JSON layout of the arguments
(``dlavm.host_ops.encode_call``). It has no device lowering: it runs on the host.
"""
from __future__ import annotations

from ..op import IRError, attr, get_op, register_op
from ..types import TensorType
from .common import tensor


def user_host_op(name: str) -> str:
    """Register (once) the graph op of user host op ``name``; returns ``name``."""
    try:
        get_op(name)
    except IRError:
        @register_op(name, ("*operands",), {"shape": attr("syms"), "dtype": attr("dtype"),
                                            "call": attr("str", "[[], {}]")},
                     doc=f"user host op {name} (numpy, registered with @dlavm.host_op)")
        def rel(types, attrs, _n=name):
            for t in types:
                tensor(t, _n, "operand")
            return TensorType(attrs["shape"], attrs["dtype"])
    return name


def is_user_host_op(name: str) -> bool:
    """True for the graph op of a user host op (its name has a ``namespace::``)."""
    return "::" in name
