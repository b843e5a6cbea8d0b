"""User host ops: numpy implementations of ops the compiler does not know (doc/host_ops.md).

``@dlavm.host_op("aten::xyz")`` registers ``fn`` here. The importer turns a
call of that op into a graph node of the same name that runs on the host
(its result type is torch's metadata for the call), the reference executor
and the Python runtime call ``fn``. ``fn`` gets the op's arguments as torch
passes them, tensors as numpy arrays, and returns one numpy array.

This registry is the bottom layer beside ``dlavm.sym`` (it imports nothing
of dlavm), so the frontend, the reference executor and the runtime all see
the one definition; a deployment host registers its ops here without torch.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class HostOp:
    """A registered user host op: ``name`` is ``namespace::op`` (every overload) or
    ``namespace::op.overload`` (that one); ``fn`` maps numpy arguments to one numpy array."""

    name: str
    fn: Callable


_REGISTRY: dict[str, HostOp] = {}


def host_op(name: str, fn: Callable | None = None, *, replace: bool = False):
    """Register ``fn`` as the host implementation of op ``name`` (``"aten::cummax"``,
    ``"mylib::fancy"``, ``"aten::foo.Tensor"`` for one overload); a decorator when ``fn`` is omitted.

    Registering a name twice is an error unless ``replace=True``. Returns ``fn``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"host op name {name!r} must look like 'namespace::op' or 'namespace::op.overload' "
                         f"(torch's operator name, e.g. 'aten::cummax' or 'mylib::fancy')")

    def wrap(f):
        if not callable(f):
            raise TypeError(f"host op '{name}': expected a function, got {type(f).__name__}")
        if name in _REGISTRY and not replace and _REGISTRY[name].fn is not f:
            raise ValueError(f"host op '{name}' is already registered (pass replace=True to replace it)")
        _REGISTRY[name] = HostOp(name, f)
        return f
    return wrap(fn) if fn is not None else wrap


def unregister(name: str) -> None:
    """Forget host op ``name`` (no error if it was never registered)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> HostOp | None:
    """The host op registered under exactly ``name``, or None."""
    return _REGISTRY.get(name)


def lookup(op: str, overload: str = "default") -> HostOp | None:
    """The host op for torch operator ``op`` (``"aten::cummax"``) at ``overload``: a registration of
    that overload first, then one of the op as a whole."""
    return _REGISTRY.get(f"{op}.{overload}") or _REGISTRY.get(op)


def encode_call(args, kwargs, operand) -> str:
    """The JSON template of a call's arguments: ``operand(x)`` gives ``("tensor", i)`` for the ``i``-th
    tensor operand, ``("int", i)`` for a size held by operand ``i`` (a 0-d array at run time), or None
    for a plain value (numbers, strings, None and lists of them)."""
    def enc(x):
        slot = operand(x)
        if slot is not None:
            return {"$" + slot[0]: slot[1]}
        if isinstance(x, (list, tuple)):
            return [enc(v) for v in x]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"argument {x!r} of type {type(x).__name__} cannot be passed to a host op")
    return json.dumps([enc(list(args)), {k: enc(v) for k, v in kwargs.items()}])


def call(name: str, template: str, operands: list):
    """Run registered host op ``name`` on ``operands`` (numpy arrays) as ``template`` (``encode_call``)
    lays the arguments out. Raises KeyError if ``name`` is not registered."""
    op = _REGISTRY.get(name)
    if op is None:
        raise KeyError(f"host op '{name}' is not registered in this process (@dlavm.host_op)")

    def dec(x):
        if isinstance(x, dict):
            ((kind, i),) = x.items()
            return operands[i] if kind == "$tensor" else int(operands[i])
        if isinstance(x, list):
            return [dec(v) for v in x]
        return x
    args, kwargs = json.loads(template)
    return op.fn(*dec(args), **{k: dec(v) for k, v in kwargs.items()})


def registered() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


__all__ = ["HostOp", "host_op", "unregister", "get", "lookup", "registered", "encode_call", "call"]
