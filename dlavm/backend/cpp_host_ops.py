"""The host-fallback ops the generated C++ driver runs: one table, op -> the call of its C++ kernel.

The kernels are in clib (``clib/include/dlavm/host_ops.h``, ``clib/src/host_ops.cc``, namespace
``dlavm::host``), compiled into ``libdlavm_rt.a`` that every generated driver links. Each computes
what the Python runtime's numpy kernel of the op computes (``dlavm/runtime/host_kernels.py``): the
same compute dtype, the same result dtype conversion; doc/runtime_cpp.md "Host ops" states where
the results are bit-exact and where they are within a tolerance.

:data:`CPP_HOST_OPS` maps each op to a :class:`CppHostOp`: the attribute values the C++ kernel
honours (as the Python kernels declare theirs) and ``emit``, which renders the call for one host step
(:class:`HostCall`). :func:`call_problem` says why a step cannot run in C++ (None when it can); the
driver generator (:mod:`.driver`) refuses such a model and the compiler reports each op once.
Literal operands are converted here, at generation time, to the value numpy computes with (a weak
Python scalar takes the dtype of the tensors it meets, NEP 50), so the C++ kernels never see one.

To add an op: implement it in clib/src/host_ops.cc (declared in host_ops.h), add an entry to
:data:`CPP_HOST_OPS` below, and its cases to ``_cases`` in tests/clib/test_cpp_driver_host_ops.py (a test
fails until every op of the table has one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlavm import sym


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: an attribute the C++ kernel honours for every value the op allows
ANY = _Any()

#: the dtypes a C++ host tensor holds exactly, with their ``dlavm::host::DType`` enumerator
CPP_DTYPES = {"bool": "kBool", "uint8": "kUInt8", "int8": "kInt8", "int16": "kInt16", "int32": "kInt32",
              "int64": "kInt64", "float16": "kFloat16", "float32": "kFloat32"}
_OPT_DTYPES = (None,) + tuple(CPP_DTYPES)
_NUMERIC_OPT_DTYPES = tuple(d for d in _OPT_DTYPES if d != "bool")  # a bool running sum is not defined


@dataclass(frozen=True)
class Operand:
    """One operand of a host step: a tensor (``kind`` "value" or "const", with its numpy ``dtype`` and
    C++ expression ``cpp``) or a literal (``kind`` "literal", ``literal`` its JSON value)."""
    kind: str
    dtype: str | None = None
    literal: object = None
    cpp: str = ""


@dataclass(frozen=True)
class HostCall:
    """One host step as a C++ kernel sees it: ``attrs`` hold ints or ``sym`` expressions (rendered by
    ``render``, None when only checking), ``out`` is the result dtype (a numpy name)."""
    op: str
    args: tuple
    attrs: dict
    out: str
    render: Callable | None = None

    def expr(self, v) -> str:
        """The C++ int64 expression of attribute value ``v`` (an int or a sym expression)."""
        return self.render(v)

    def ints(self, vs) -> str:
        return "std::vector<int64_t>{" + ", ".join(self.render(v) for v in vs) + "}"

    @property
    def dtype(self) -> str:
        return "dlavm::host::DType::" + CPP_DTYPES[self.out]

    def tensor(self, k: int) -> str:
        return self.args[k].cpp

    def opt(self, k: int) -> str:
        """``&operand`` or ``nullptr`` for an optional trailing operand."""
        return f"&{self.args[k].cpp}" if k < len(self.args) else "nullptr"


@dataclass(frozen=True)
class CppHostOp:
    """How the driver runs ``op``: ``emit(call)`` -> a C++ expression of type ``Tensor``; ``attrs``: name ->
    ``ANY`` or the tuple of supported values; ``literals``: how literal operands are converted
    ("promote", "common", "truth", or None: refused); ``check(call)``: a further reason, or None."""
    op: str
    emit: Callable
    attrs: dict = field(default_factory=dict)
    literals: str | None = None
    check: Callable | None = None


CPP_HOST_OPS: dict[str, CppHostOp] = {}


def _reg(ops, emit, literals=None, check=None, **attrs):
    for op in (ops,) if isinstance(ops, str) else ops:
        if op in CPP_HOST_OPS:
            raise ValueError(f"C++ host op '{op}' registered twice")
        CPP_HOST_OPS[op] = CppHostOp(op, emit, dict(attrs), literals, check)


def _is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


def _compute_dtype(out: str) -> str:
    """What a promoting numpy kernel computes in for result dtype ``out`` (float16: float32)."""
    return "float32" if out == "float16" else out


# --- literal operands, converted as numpy sees them -------------------------------------------

def _cpp_float(v: float) -> str:
    if math.isnan(v):
        return "std::numeric_limits<double>::quiet_NaN()"
    if math.isinf(v):
        return ("-" if v < 0 else "") + "std::numeric_limits<double>::infinity()"
    return float(v).hex()


def _cpp_int(v: int) -> str:
    v = int(v)
    return "(-9223372036854775807LL - 1)" if v == -2 ** 63 else f"{v}LL"


def _scalar(value, dtype: str) -> str:
    """The 0-d C++ tensor of ``value`` converted to numpy ``dtype`` (the conversion numpy makes)."""
    x = np.asarray(value).astype(dtype) if not isinstance(value, (bool, int, float)) else \
        np.array(value, dtype=dtype)
    if x.dtype.kind == "f":
        return f"dlavm::host::scalar_float({_cpp_float(float(x))})"
    return f"dlavm::host::scalar_int({_cpp_int(int(x))})"


def _is_number(v) -> bool:
    return isinstance(v, (bool, int, float)) and not isinstance(v, sym.Expr)


def _literal_problem(call: HostCall, how: str) -> str | None:
    lits = [a.literal for a in call.args if a.kind == "literal"]
    if not lits:
        return None
    if how is None:
        return "the C++ kernel takes tensor operands only, not a literal"
    for v in lits:
        if not _is_number(v):
            return f"literal operand {v!r} is not a number"
        if how == "promote" and isinstance(v, float) and not _is_float(_compute_dtype(call.out)):
            return f"a float literal ({v!r}) with an {call.out} result"
    try:   # a literal numpy cannot convert (300 for an int8 operand) fails the Python runtime too
        _with_literals(call, how, (1, 2) if call.op == "where" else None)
    except (OverflowError, ValueError, TypeError) as e:
        return f"a literal operand numpy cannot convert: {e}"
    return None


def _common_dtype(call: HostCall, positions) -> str:
    """numpy's result dtype of the operands at ``positions``, literals weak (NEP 50)."""
    return np.result_type(*(np.dtype(call.args[k].dtype) if call.args[k].kind != "literal" else call.args[k].literal
                            for k in positions)).name


def _with_literals(call: HostCall, how: str, positions=None) -> HostCall:
    """``call`` with each literal operand given its C++ expression (converted as numpy would)."""
    if not any(a.kind == "literal" for a in call.args):
        return call
    positions = range(len(call.args)) if positions is None else positions
    common = None
    if how == "common":
        common = _common_dtype(call, positions)
    args = []
    for k, a in enumerate(call.args):
        if a.kind != "literal":
            args.append(a)
            continue
        v = a.literal
        if how == "truth" or k not in positions:
            cpp = _scalar(bool(v), "bool")
        elif how == "promote":
            cpp = _scalar(v, _compute_dtype(call.out))
        else:
            cpp = _scalar(v, common)
        args.append(Operand("literal", None, v, cpp))
    return HostCall(call.op, tuple(args), call.attrs, call.out, call.render)


def _cast_to(out: str, expr: str, natural: str = "bool") -> str:
    return expr if out == natural else f"dlavm::host::cast({expr}, dlavm::host::DType::{CPP_DTYPES[out]})"


# --- the table ---------------------------------------------------------------------------------

_FLOAT_ONLY = ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf", "silu", "reciprocal")
_INT_UNARY = ("neg", "abs", "relu", "sign", "floor", "ceil", "bitwise_not")


def _float_out(call):
    return None if _is_float(call.out) else f"the C++ kernel computes it on floats only, not {call.out}"


def _int_out(call):
    return None if not _is_float(call.out) else f"the C++ kernel computes it on integers only, not {call.out}"


_reg(_FLOAT_ONLY, lambda c: f'dlavm::host::unary("{c.op}", {c.tensor(0)}, {c.dtype})', "promote", _float_out)
_reg(_INT_UNARY[:-1], lambda c: f'dlavm::host::unary("{c.op}", {c.tensor(0)}, {c.dtype})', "promote")
_reg("bitwise_not", lambda c: f'dlavm::host::unary("bitwise_not", {c.tensor(0)}, {c.dtype})', "promote", _int_out)
_reg("gelu", lambda c: f'dlavm::host::unary("{"gelu_tanh" if c.attrs["approximate"] == "tanh" else "gelu"}", '
                       f'{c.tensor(0)}, {c.dtype})', "promote", _float_out, approximate=("none", "tanh"))

_reg(("add", "sub", "mul", "maximum", "minimum", "pow", "floor_divide", "remainder"),
     lambda c: f'dlavm::host::binary("{c.op}", {c.tensor(0)}, {c.tensor(1)}, {c.dtype})', "promote")
_reg(("bitwise_and", "bitwise_or", "bitwise_xor"),
     lambda c: f'dlavm::host::binary("{c.op}", {c.tensor(0)}, {c.tensor(1)}, {c.dtype})', "promote", _int_out)
_DIV = {None: "div", "floor": "div_floor", "trunc": "div_trunc"}
_reg("div", lambda c: f'dlavm::host::binary("{_DIV[c.attrs["rounding_mode"]]}", {c.tensor(0)}, {c.tensor(1)}, '
                      f'{c.dtype})', "promote", rounding_mode=tuple(_DIV))
_reg(("lt", "le", "gt", "ge", "eq", "ne"),
     lambda c: _cast_to(c.out, f'dlavm::host::predicate("{c.op}", {c.tensor(0)}, {c.tensor(1)})'), "common")
_reg(("logical_and", "logical_or", "logical_xor"),
     lambda c: _cast_to(c.out, f'dlavm::host::predicate("{c.op}", {c.tensor(0)}, {c.tensor(1)})'), "truth")
_reg("logical_not", lambda c: _cast_to(c.out, f"dlavm::host::logical_not({c.tensor(0)})"), "truth")
_reg("where", lambda c: f"dlavm::host::where({c.tensor(0)}, {c.tensor(1)}, {c.tensor(2)}, {c.dtype})", "common")
_reg("cast", lambda c: f"dlavm::host::cast({c.tensor(0)}, {c.dtype})", dtype=tuple(CPP_DTYPES))


def _clamp_problem(call):
    for name in ("min", "max"):
        v = call.attrs.get(name)
        if v is not None and not _is_number(v):
            return f"{name}={v!r} is not a number"
        if isinstance(v, float) and not _is_float(_compute_dtype(call.out)):
            return f"a float bound ({name}={v!r}) with an {call.out} result"
    return None


def _clamp(c):
    lo, hi = c.attrs.get("min"), c.attrs.get("max")
    d = _compute_dtype(c.out)
    x = c.tensor(0)
    if lo is not None and hi is not None:
        return f"dlavm::host::clamp({x}, {_scalar(lo, d)}, {_scalar(hi, d)}, {c.dtype})"
    if lo is not None:
        return f'dlavm::host::binary("maximum", {x}, {_scalar(lo, d)}, {c.dtype})'
    if hi is not None:
        return f'dlavm::host::binary("minimum", {x}, {_scalar(hi, d)}, {c.dtype})'
    return f"dlavm::host::cast({x}, {c.dtype})"


_reg("clamp", _clamp, "promote", _clamp_problem, min=ANY, max=ANY)

_reg(("sum", "mean", "prod", "amax", "amin", "any", "all"),
     lambda c: f'dlavm::host::reduce("{c.op}", {c.tensor(0)}, {c.ints(c.attrs["axes"])}, '
               f'{"true" if c.attrs["keepdim"] else "false"}, {c.dtype})', "promote",
     axes=ANY, keepdim=ANY, dtype=_OPT_DTYPES)
_reg("cumsum", lambda c: f"dlavm::host::cumsum({c.tensor(0)}, {c.expr(c.attrs['axis'])}, {c.dtype})", "promote",
     axis=ANY, dtype=_NUMERIC_OPT_DTYPES)
_reg(("softmax", "log_softmax"),
     lambda c: f"dlavm::host::softmax({c.tensor(0)}, {c.expr(c.attrs['axis'])}, "
               f"{'true' if c.op == 'log_softmax' else 'false'}, {c.dtype})", "promote", _float_out, axis=ANY)
_reg("argmax", lambda c: f"dlavm::host::argmax({c.tensor(0)}, {'false' if c.attrs['axis'] is None else 'true'}, "
                         f"{0 if c.attrs['axis'] is None else c.expr(c.attrs['axis'])}, "
                         f"{'true' if c.attrs['keepdim'] else 'false'}, {c.dtype})", axis=ANY, keepdim=ANY)
_reg(("layer_norm", "rms_norm"),
     lambda c: f"dlavm::host::norm({c.tensor(0)}, {c.opt(1)}, {c.opt(2)}, {c.expr(c.attrs['ndim'])}, "
               f"{_cpp_float(float(c.attrs['eps']))}, {'true' if c.op == 'rms_norm' else 'false'}, {c.dtype})",
     ndim=ANY, eps=ANY)
_reg("linear", lambda c: f"dlavm::host::linear({c.tensor(0)}, {c.tensor(1)}, {c.opt(2)}, {c.dtype})")
_reg("matmul", lambda c: f"dlavm::host::matmul({c.tensor(0)}, {c.tensor(1)}, {c.dtype})")


def _attention(c):
    scale = c.attrs["scale"]
    mask_bool = len(c.args) > 3 and np.dtype(c.args[3].dtype) == np.bool_
    return (f"dlavm::host::attention({c.tensor(0)}, {c.tensor(1)}, {c.tensor(2)}, {c.opt(3)}, "
            f"{'true' if mask_bool else 'false'}, {'true' if c.attrs['causal'] else 'false'}, "
            f"{'false' if scale is None else 'true'}, {_cpp_float(0.0 if scale is None else float(scale))}, "
            f"{c.dtype})")


_reg("attention", _attention, causal=ANY, scale=ANY)
_reg("conv2d", lambda c: f"dlavm::host::conv2d({c.tensor(0)}, {c.tensor(1)}, {c.opt(2)}, {c.ints(c.attrs['stride'])}, "
                         f"{c.ints(c.attrs['padding'])}, {c.ints(c.attrs['dilation'])}, {c.expr(c.attrs['groups'])}, "
                         f"{c.dtype})", stride=ANY, padding=ANY, dilation=ANY, groups=ANY)
_reg("im2col",
     lambda c: f"dlavm::host::im2col({c.tensor(0)}, {c.ints(c.attrs['kernel'])}, {c.ints(c.attrs['stride'])}, "
               f"{c.ints(c.attrs['padding'])}, {c.ints(c.attrs['dilation'])}, {c.dtype})",
     kernel=ANY, stride=ANY, padding=ANY, dilation=ANY)
_reg("max_pool2d",
     lambda c: f"dlavm::host::max_pool2d({c.tensor(0)}, {c.ints(c.attrs['kernel'])}, {c.ints(c.attrs['stride'])}, "
               f"{c.ints(c.attrs['padding'])}, {c.ints(c.attrs.get('dilation', (1, 1)))}, "
               f"{'true' if c.attrs['ceil_mode'] else 'false'}, {c.dtype})",
     kernel=ANY, stride=ANY, padding=ANY, dilation=ANY, ceil_mode=ANY)
_reg("avg_pool2d",
     lambda c: f"dlavm::host::avg_pool2d({c.tensor(0)}, {c.ints(c.attrs['kernel'])}, {c.ints(c.attrs['stride'])}, "
               f"{c.ints(c.attrs['padding'])}, {'true' if c.attrs['ceil_mode'] else 'false'}, "
               f"{'true' if c.attrs['count_include_pad'] else 'false'}, {c.dtype})",
     kernel=ANY, stride=ANY, padding=ANY, ceil_mode=ANY, count_include_pad=ANY)

_reg("reshape", lambda c: f"dlavm::host::reshape({c.tensor(0)}, {c.ints(c.attrs['shape'])}, {c.dtype})", shape=ANY)
_reg("permute", lambda c: f"dlavm::host::permute({c.tensor(0)}, {c.ints(c.attrs['dims'])}, {c.dtype})", dims=ANY)
_reg("expand", lambda c: f"dlavm::host::expand({c.tensor(0)}, {c.ints(c.attrs['shape'])}, {c.dtype})", shape=ANY)
_reg("slice", lambda c: f"dlavm::host::slice({c.tensor(0)}, {c.expr(c.attrs['axis'])}, {c.expr(c.attrs['start'])}, "
                        f"{c.expr(c.attrs['end'])}, {c.expr(c.attrs['step'])}, {c.dtype})",
     axis=ANY, start=ANY, end=ANY, step=ANY)
_reg("concat", lambda c: "dlavm::host::concat(std::vector<const Tensor*>{"
                         + ", ".join(f"&{a.cpp}" for a in c.args) + f"}}, {c.expr(c.attrs['axis'])}, {c.dtype})",
     axis=ANY)
_reg("take", lambda c: f"dlavm::host::take({c.tensor(0)}, {c.tensor(1)}, {c.expr(c.attrs['axis'])}, {c.dtype})",
     axis=ANY)
_reg("gather", lambda c: f"dlavm::host::gather({c.tensor(0)}, {c.tensor(1)}, {c.expr(c.attrs['axis'])}, {c.dtype})",
     axis=ANY)
_reg("argsort", lambda c: f"dlavm::host::argsort({c.tensor(0)}, {c.expr(c.attrs['axis'])}, "
                          f"{'true' if c.attrs['descending'] else 'false'}, {c.dtype})", axis=ANY, descending=ANY)
_reg("embedding", lambda c: f"dlavm::host::embedding({c.tensor(0)}, {c.tensor(1)}, {c.dtype})")
_reg("index", lambda c: f"dlavm::host::index({c.tensor(0)}, {c.ints(c.attrs['axes'])}, std::vector<const Tensor*>{{"
                        + ", ".join(f"&{a.cpp}" for a in c.args[1:]) + f"}}, {c.dtype})", axes=ANY)


def _int_attrs(*names):
    def check(call):
        for n in names:
            v = call.attrs.get(n)
            if v is not None and (isinstance(v, (bool, float)) or not _is_intlike(v)):
                return f"{n}={v!r}: the C++ kernel takes integer values only"
        return None
    return check


def _is_intlike(v) -> bool:
    return isinstance(v, (int, sym.Expr)) or (isinstance(v, dict) and set(v) == {"sym"})


_reg("arange", lambda c: f"dlavm::host::arange({c.expr(c.attrs['start'])}, {c.expr(c.attrs['end'])}, "
                         f"{c.expr(c.attrs['step'])}, {c.dtype})", None, _int_attrs("start", "end", "step"),
     start=ANY, end=ANY, step=ANY, dtype=_NUMERIC_OPT_DTYPES[1:])


def _full_problem(call):
    v = call.attrs.get("value")
    return None if _is_number(v) else f"value={v!r} is not a number"


_reg("full", lambda c: f"dlavm::host::full({c.ints(c.attrs['shape'])}, {_scalar(c.attrs['value'], c.out)}, "
                       f"{c.dtype})", None, _full_problem, shape=ANY, value=ANY, dtype=tuple(CPP_DTYPES))
_reg("shape_value", lambda c: f"dlavm::host::full({{}}, dlavm::host::scalar_int({c.expr(c.attrs['value'])}), "
                              f"{c.dtype})", None, _int_attrs("value"), value=ANY, dtype=tuple(CPP_DTYPES))


# --- checking and emitting one host step --------------------------------------------------------

def _attr_key(v):
    """An attribute value as comparable data (a sym expression: its text)."""
    if isinstance(v, sym.Expr):
        return str(v)
    if isinstance(v, dict) and set(v) == {"sym"}:
        return v["sym"]
    return v


def unsupported_attrs(op: str, attrs: dict) -> list[str]:
    """The attributes of a call of ``op`` its C++ kernel does not honour, as ``"name=value (why)"``."""
    k = CPP_HOST_OPS[op]
    out = []
    for name, value in sorted(attrs.items()):
        want = k.attrs.get(name)
        if want is None:
            out.append(f"{name}={_attr_key(value)!r} (the C++ kernel ignores this attribute)")
        elif want is not ANY and _attr_key(value) not in want:
            out.append(f"{name}={_attr_key(value)!r} (the C++ kernel supports {', '.join(map(repr, want))})")
    return out


def call_problem(call: HostCall) -> str | None:
    """Why the C++ driver cannot run ``call`` (None when it can)."""
    k = CPP_HOST_OPS.get(call.op)
    if k is None and "::" in call.op:
        return "a user host op (@dlavm.host_op) has a numpy implementation only, no C++ kernel"
    if k is None:
        return f"no C++ kernel (doc/runtime_cpp.md lists the {len(CPP_HOST_OPS)} host ops the C++ driver runs)"
    for a in call.args:
        if a.kind != "literal" and np.dtype(a.dtype).name not in CPP_DTYPES:
            return f"an operand of dtype {np.dtype(a.dtype).name}, which the C++ driver does not hold exactly"
    if np.dtype(call.out).name not in CPP_DTYPES:
        return f"a result of dtype {np.dtype(call.out).name}, which the C++ driver does not hold exactly"
    bad = unsupported_attrs(call.op, call.attrs)
    if bad:
        return "attribute " + "; ".join(bad)
    why = _literal_problem(call, k.literals)
    if why is None and k.check is not None:
        why = k.check(call)
    return why


def emit_call(call: HostCall) -> str:
    """The C++ expression (a ``Tensor``) computing ``call``; :func:`call_problem` must have accepted it."""
    k = CPP_HOST_OPS[call.op]
    return k.emit(_with_literals(call, k.literals, (1, 2) if call.op == "where" else None))


__all__ = ["ANY", "CPP_DTYPES", "CPP_HOST_OPS", "CppHostOp", "HostCall", "Operand", "call_problem", "emit_call",
           "unsupported_attrs"]
