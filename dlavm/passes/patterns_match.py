"""Structural matching and smart constructors shared by the legalize and fuse tables.

A pattern table entry is a ``Pattern(name, op, fn, doc)``: ``fn(node, ctx)``
returns a replacement for a call of ``op`` or ``None`` (it may record in
``ctx`` why it declined, for the compile report). ``run_table`` binds the
context and applies the table with ``dlavm.passes.rewrite`` until the graph
stops changing; each sweep recomputes the use counts, which ``rewrite`` keeps
exact as it rebuilds nodes, so a rule can ask ``ctx.single_use(node)`` before
it fuses a value another user still needs (a residual chain through 32 layers
fuses in one sweep).

The constructors below build the canonical forms directly (a permute of a
permute composes, a reshape of a reshape collapses, a device round trip
cancels), so rules compose in few sweeps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from ..ir import Call, Function, Literal, Node, call, users
from .rewrite import Rule, rewrite

MAX_SWEEPS = 32


@dataclass(frozen=True)
class Pattern:
    """One table entry: ``fn(node, ctx)`` -> replacement for a call of ``op``, or None."""

    name: str
    op: str
    fn: Callable
    doc: str = ""


@dataclass
class MatchContext:
    """Per-pass state the rules share: weights, use counts, decline reasons, firing counts."""

    params: dict
    attrs: dict
    uses: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)

    def single_use(self, node: Node) -> bool:
        return len(self.uses.get(node, (None, None))) == 1

    def decline(self, node: Node, reason: str) -> None:
        """Record why ``node`` stays on the host (keyed by op and source span)."""
        self.reasons[report_key(node)] = reason
        return None


def report_key(node: Call) -> str:
    return f"{node.op.name}|{node.span}" if node.span else f"{node.op.name}|"


def run_table(fn: Function, table, ctx: MatchContext) -> Function:
    """Apply the pattern ``table`` to ``fn`` until a sweep changes nothing."""
    rules = [Rule(p.name, p.op, partial(p.fn, ctx=ctx)) for p in table]
    for _ in range(MAX_SWEEPS):
        ctx.uses = users(fn.body)
        new = rewrite(fn, rules, ctx.stats, ctx.uses)
        if new is fn:
            return fn
        fn = new
    raise RuntimeError(f"pattern table did not converge on function '{fn.name}' in {MAX_SWEEPS} sweeps")


# ---------------------------------------------------------------------------------------------
# matchers

def is_op(node, *names) -> bool:
    return isinstance(node, Call) and node.op.name in names


def is_lit(node, value, rel: float = 1e-6) -> bool:
    """A literal equal to ``value`` (floats within ``rel``)."""
    if not isinstance(node, Literal) or isinstance(node.value, bool):
        return False
    return abs(node.value - value) <= rel * max(1.0, abs(value))


def operands(node: Call):
    """Both orders of a commutative binary call's operands."""
    a, b = node.args
    return ((a, b), (b, a))


def const_int(e):
    """The int value of a constant sym expression, or None."""
    return e.value if getattr(e, "is_const", False) else None


def is_float(node) -> bool:
    return hasattr(node.type, "dtype") and node.type.dtype in ("float16", "float32", "float64", "bfloat16")


def strip_views(node):
    """(inner, reshapes): ``node`` with its chain of reshapes removed."""
    chain = []
    while is_op(node, "reshape"):
        chain.append(node)
        node = node.args[0]
    return node, chain


# ---------------------------------------------------------------------------------------------
# smart constructors

def permute(x, dims):
    """``permute`` that composes with an inner permute and vanishes when it is the identity."""
    n = len(dims)
    dims = tuple(d % n for d in dims)
    if is_op(x, "permute"):
        inner = tuple(d % n for d in x.attrs["dims"])
        dims, x = tuple(inner[d] for d in dims), x.args[0]
    if dims == tuple(range(n)):
        return x
    return call("permute", x, dims=dims)


def reshape(x, shape):
    """``reshape`` that collapses an inner reshape and vanishes when the shape is unchanged."""
    shape = tuple(shape)
    if is_op(x, "reshape"):
        x = x.args[0]
    if tuple(x.type.shape) == shape:
        return x
    return call("reshape", x, shape=shape)


def to_device(x):
    """``x`` as a device fp16 tensor: a device value round-tripped through the host is reused
    (fp16 -> f32 -> fp16 is exact) and reshapes stay views on the device side."""
    views = []
    while is_op(x, "reshape"):
        views.append(x.attrs["shape"])
        x = x.args[0]
    if is_op(x, "dev.to_host") and x.args[0].type.dtype == "float16" and x.type.dtype in ("float32", "float64"):
        out = x.args[0]
    elif x.type.dtype == "float16" and is_op(x, *DEVICE_VALUE_OPS):
        out = x
    else:
        out = call("dev.to_device", x)
    for shape in reversed(views):
        out = reshape(out, shape)
    return out


def to_host(y, dtype: str = "float32"):
    return call("dev.to_host", y, dtype=dtype)


def device_value(x):
    """The device node behind ``x`` = (reshapes of) ``dev.to_host(node)``, or None."""
    inner, _ = strip_views(x)
    if is_op(inner, "dev.to_host"):
        return inner.args[0]
    return None


DEVICE_VALUE_OPS = ("dev.mvm", "dev.rmsnorm", "dev.layernorm", "dev.attention", "dev.rope",
                    "dev.eltwise", "dev.act", "dev.softmax", "dev.to_device")
