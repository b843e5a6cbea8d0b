"""Graph IR nodes: a dataflow DAG of typed values.

Like a torch.fx node, a ``Call`` is an op + arguments + attributes + metadata;
unlike fx there is no mutable node list: a function is its parameters and the
node it returns, and every traversal walks the DAG iteratively
(``dlavm.ir.traversal``). Every node carries its type, computed when it is
built, so a malformed graph is refused at construction with an error naming
the op and the source line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .op import IRTypeError, Op, get_op
from .types import TensorType, TupleType, Type, check_dtype, dtype_category


@dataclass(frozen=True)
class Span:
    """Where a node came from in user code (file, line, the source text, and the ``nn.Module``
    whose forward made it: its path in the model, ``features.1``, and its class, ``BatchNorm2d``)."""

    file: str = ""
    line: int = 0
    text: str = ""
    origin: str = ""  # e.g. the torch node name it was imported from
    module: str = ""  # the innermost submodule's path; "" for the top module or unknown
    module_type: str = ""  # its class name; "" when unknown

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.file else ""
        parts = [p for p in (loc, self.text.strip()) if p]
        return " | ".join(parts) or self.origin or "<unknown source>"


class Node:
    """Base class of IR nodes. ``type`` is always set; ``meta`` holds pass data."""

    __slots__ = ("type", "span", "meta", "__weakref__")

    def inputs(self) -> tuple:
        return ()


class Var(Node):
    """A function parameter."""

    __slots__ = ("name",)

    def __init__(self, name: str, type: Type, span: Span | None = None):
        self.name, self.type, self.span, self.meta = name, type, span, {}

    def __repr__(self) -> str:
        return f"Var(%{self.name}: {self.type})"


class Constant(Node):
    """A reference to a named weight in ``Module.params``; the data is not copied."""

    __slots__ = ("name",)

    def __init__(self, name: str, type: TensorType, span: Span | None = None):
        self.name, self.type, self.span, self.meta = name, type, span, {}

    def __repr__(self) -> str:
        return f"Constant(@{self.name}: {self.type})"


class Literal(Node):
    """A scalar number. It is *weak* in type promotion, like a Python scalar in torch."""

    __slots__ = ("value",)

    def __init__(self, value, dtype: str | None = None, span: Span | None = None):
        if isinstance(value, bool):
            dtype = dtype or "bool"
        elif isinstance(value, int):
            dtype = dtype or "int64"
        elif isinstance(value, float):
            dtype = dtype or "float32"
        else:
            raise IRTypeError(f"a literal must be a bool, int or float, got {value!r}")
        check_dtype(dtype)
        cat = dtype_category(dtype)
        value = bool(value) if cat == "bool" else int(value) if cat == "int" else float(value)
        self.value, self.type, self.span, self.meta = value, TensorType((), dtype), span, {}

    def __repr__(self) -> str:
        return f"Literal({self.value!r}: {self.type.dtype})"


class Call(Node):
    """Application of a registered op to argument nodes with attributes."""

    __slots__ = ("op", "args", "attrs")

    def __init__(self, op: Op | str, args, attrs: dict | None = None,
                 span: Span | None = None, type: Type | None = None):
        op = get_op(op) if isinstance(op, str) else op
        args = tuple(args)
        for a in args:
            if not isinstance(a, Node):
                raise IRTypeError(f"op '{op.name}': argument {a!r} is not an IR node"
                                  + (f" (at {span})" if span else ""))
        self.op, self.args, self.span, self.meta = op, args, span, {}
        try:
            op.check_arity(len(args))
            self.attrs = op.normalise_attrs(attrs or {})
            inferred = op.type_rel([a.type for a in args], self.attrs)
        except IRTypeError as e:
            where = f" at {span}" if span else ""
            raise IRTypeError(f"{e}{where}") from None
        if type is not None and type != inferred:
            raise IRTypeError(f"op '{op.name}': declared type {type} != inferred {inferred}"
                              + (f" at {span}" if span else ""))
        self.type = inferred

    def inputs(self) -> tuple:
        return self.args

    def __repr__(self) -> str:
        return f"Call({self.op.name}, {len(self.args)} args: {self.type})"


class Tuple(Node):
    """A tuple of values (function results with several outputs)."""

    __slots__ = ("fields",)

    def __init__(self, fields, span: Span | None = None):
        self.fields = tuple(fields)
        self.type, self.span, self.meta = TupleType(tuple(f.type for f in self.fields)), span, {}

    def inputs(self) -> tuple:
        return self.fields


class GetItem(Node):
    """Field ``index`` of a tuple-typed value (e.g. one output of a multi-output op)."""

    __slots__ = ("value", "index")

    def __init__(self, value: Node, index: int, span: Span | None = None):
        if not isinstance(value.type, TupleType):
            raise IRTypeError(f"GetItem of non-tuple value of type {value.type}")
        if not 0 <= index < len(value.type.fields):
            raise IRTypeError(f"GetItem index {index} out of range for {value.type}")
        self.value, self.index, self.span, self.meta = value, index, span, {}
        self.type = value.type.fields[index]

    def inputs(self) -> tuple:
        return (self.value,)


def call(op_name: str, *args, span: Span | None = None, **attrs) -> Call:
    """Build a ``Call`` of a registered op; Python numbers become ``Literal`` nodes."""
    nodes = [a if isinstance(a, Node) else Literal(a) for a in args]
    return Call(op_name, nodes, attrs, span=span)


@dataclass
class Function:
    """A graph: parameters, the returned node, and attributes (e.g. entry name)."""

    name: str
    params: list
    body: Node
    attrs: dict = field(default_factory=dict)

    @property
    def ret_type(self) -> Type:
        return self.body.type

    def sym_vars(self) -> list:
        """The symbolic variables of the parameter shapes, in first-use order."""
        seen: dict = {}
        for p in self.params:
            for d in getattr(p.type, "shape", ()):
                for v in sorted(d.free_vars(), key=str):
                    seen.setdefault(v, None)
        return list(seen)


@dataclass
class Module:
    """Several functions (e.g. ``prefill`` and ``decode``) sharing named weights.

    ``params`` maps a weight name to its storage: a numpy array, or ``None``
    for shape-only models (built on torch's ``meta`` device). The IR never
    looks inside the storage.
    """

    functions: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise KeyError(f"module has no function '{name}'; it has {sorted(self.functions)}") from None

    def add(self, fn: Function) -> None:
        if fn.name in self.functions:
            raise ValueError(f"module already has a function '{fn.name}'")
        self.functions[fn.name] = fn
