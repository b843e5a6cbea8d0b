"""The op registry: every graph-level op declares its inputs, attributes and
type relation here, and later layers attach per-target attributes (lowering
rules, cost models) to the same ``Op`` object, as TVM does with op attrs.

Device ops (``dev.*``) are registered by ``dlavm.devops``, one file per op,
each attaching a ``DeviceOpSpec`` as ``op.get_attr("spec")``: its type
relation, legalization patterns, reference kernel and lowering rules
(doc/device_ops.md). Layers below ``dlavm.devops`` (passes, the reference
executor, task lowering) look a spec up with :func:`device_spec` and never
import ``dlavm.devops``; the entry points (``dlavm.compiler``, ``dlavm.llm``,
``dlavm.cli``) import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import sym
from .types import check_dtype


class IRError(Exception):
    """Base error of the graph IR. Messages name the op, node and source."""


class IRTypeError(IRError):
    """An op was applied to arguments its type relation rejects."""


_MISSING = object()

# kind -> normaliser. A normaliser returns the canonical stored value or raises.
def _norm_int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected int, got {v!r}")
    return v


def _norm_float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"expected float, got {v!r}")
    return float(v)


def _norm_bool(v):
    if not isinstance(v, bool):
        raise TypeError(f"expected bool, got {v!r}")
    return v


def _norm_str(v):
    if not isinstance(v, str):
        raise TypeError(f"expected str, got {v!r}")
    return v


def _norm_ints(v):
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v,)
    return tuple(_norm_int(x) for x in v)


def _norm_sym(v):
    return sym.as_expr(v)


def _norm_syms(v):
    return tuple(sym.as_expr(x) for x in v)


def _norm_scalar(v):
    if not isinstance(v, (bool, int, float)):
        raise TypeError(f"expected a number, got {v!r}")
    return v


def _norm_optional(inner):
    def norm(v):
        return None if v is None else inner(v)
    return norm


_KINDS: dict[str, Callable[[Any], Any]] = {
    "int": _norm_int,
    "float": _norm_float,
    "bool": _norm_bool,
    "str": _norm_str,
    "dtype": lambda v: check_dtype(_norm_str(v)),
    "ints": _norm_ints,
    "sym": _norm_sym,
    "syms": _norm_syms,
    "scalar": _norm_scalar,
}


@dataclass(frozen=True)
class AttrSpec:
    """One declared attribute: its kind (see ``_KINDS``, prefix ``?`` for optional), default
    and, for an enumeration, ``choices`` (every value it may take, None included if optional)."""

    kind: str
    default: Any = _MISSING
    choices: tuple | None = None

    def normalise(self, value):
        kind = self.kind
        if kind.startswith("?"):
            value = _norm_optional(_KINDS[kind[1:]])(value)
        else:
            value = _KINDS[kind](value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        return value


def attr(kind: str, default: Any = _MISSING, choices: tuple | None = None) -> AttrSpec:
    """Declare an attribute of kind ``kind`` (``int``, ``float``, ``bool``, ``str``,
    ``dtype``, ``ints``, ``sym``, ``syms``, ``scalar``; ``?kind`` allows None);
    ``choices`` makes it an enumeration of exactly those values."""
    base = kind[1:] if kind.startswith("?") else kind
    if base not in _KINDS:
        raise ValueError(f"unknown attribute kind {kind!r}")
    return AttrSpec(kind, default, tuple(choices) if choices is not None else None)


class Op:
    """A registered graph-level op.

    ``inputs`` names the tensor inputs (a trailing ``*name`` makes the op
    variadic). ``type_rel(arg_types, attrs)`` returns the result type or raises
    ``IRTypeError``. ``attrs`` maps attribute names to ``AttrSpec``.
    Per-target data (lowering rules, costs) is attached with ``set_attr``.
    """

    __slots__ = ("name", "inputs", "attr_specs", "type_rel", "doc", "_extra", "variadic")

    def __init__(self, name, inputs, attr_specs, type_rel, doc):
        self.name = name
        self.inputs = tuple(inputs)
        self.variadic = bool(self.inputs) and self.inputs[-1].startswith("*")
        self.attr_specs = dict(attr_specs)
        self.type_rel = type_rel
        self.doc = doc
        self._extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Op({self.name})"

    def normalise_attrs(self, attrs: dict) -> dict:
        """Check ``attrs`` against the declaration; fill defaults; canonicalise values."""
        unknown = set(attrs) - set(self.attr_specs)
        if unknown:
            raise IRTypeError(
                f"op '{self.name}' has no attribute(s) {sorted(unknown)}; "
                f"declared: {sorted(self.attr_specs) or 'none'}")
        out = {}
        for key, spec in self.attr_specs.items():
            if key in attrs:
                try:
                    out[key] = spec.normalise(attrs[key])
                except (TypeError, ValueError) as e:
                    raise IRTypeError(f"op '{self.name}' attribute '{key}': {e}") from None
            elif spec.default is _MISSING:
                raise IRTypeError(f"op '{self.name}' requires attribute '{key}'")
            else:
                out[key] = spec.default
        return out

    def check_arity(self, n: int) -> None:
        fixed = len(self.inputs) - (1 if self.variadic else 0)
        if (self.variadic and n < fixed) or (not self.variadic and n != fixed):
            want = f"at least {fixed}" if self.variadic else str(fixed)
            raise IRTypeError(f"op '{self.name}' takes {want} inputs "
                              f"({', '.join(self.inputs)}), got {n}")

    def set_attr(self, key: str, value: Any) -> None:
        """Attach per-layer data (``'spec'``: the device-op spec of ``dlavm.devops``)."""
        self._extra[key] = value

    def get_attr(self, key: str, default: Any = None) -> Any:
        return self._extra.get(key, default)


_REGISTRY: dict[str, Op] = {}


def register_op(name: str, inputs: tuple, attrs: dict | None = None, doc: str = ""):
    """Decorator: register ``type_rel`` as the type relation of a new op ``name``."""
    def wrap(type_rel):
        if name in _REGISTRY:
            raise ValueError(f"op '{name}' is already registered")
        _REGISTRY[name] = Op(name, inputs, attrs or {}, type_rel, doc or (type_rel.__doc__ or "").strip())
        return type_rel
    return wrap


DEVICE_PREFIX = "dev."
_IMPORT_DEVOPS = "import dlavm.devops (it registers every device op and its spec)"


def get_op(name: str) -> Op:
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = f"; {_IMPORT_DEVOPS}" if name.startswith(DEVICE_PREFIX) else ""
        raise IRError(f"no op named '{name}' is registered{hint}") from None


def device_spec(op, consumer: str = ""):
    """The ``DeviceOpSpec`` attached to device op ``op`` (an ``Op`` or a name); raises ``IRError``
    naming the op (and ``consumer``, the layer asking) when none is registered."""
    o = op if isinstance(op, Op) else get_op(op)
    spec = o.get_attr("spec")
    if spec is None:
        who = f" ({consumer})" if consumer else ""
        raise IRError(f"op '{o.name}' has no device-op spec{who}; {_IMPORT_DEVOPS}")
    return spec


def device_specs() -> list:
    """Every registered device-op spec, ordered by op name (empty until ``dlavm.devops`` is imported)."""
    return [op.get_attr("spec") for op in list_ops() if op.get_attr("spec") is not None]


def list_ops() -> list[Op]:
    return [ _REGISTRY[k] for k in sorted(_REGISTRY) ]
