"""Declarative graph patterns and the pattern-table engine shared by ``legalize`` and ``fuse``.

A pattern (:class:`Pat`) describes a subgraph rooted at a call: the op name
(or names), an attribute predicate, operand sub-patterns (tried in both
orders for a commutative binary op), a predicate on the node (its type, a
weight, a literal), and named captures; a name captured twice must bind the
same node (``mul(x, x)``). It is a small cousin of tinygrad's ``UPat`` and
TVM's dataflow patterns::

    Pat("mul", Pat.any("x"), Pat("rsqrt", Pat("add", Pat("mean", ...), Pat.lit_any("eps"),
        commutative=True), name="r"), commutative=True)

A table entry is a :class:`Pattern`: ``Pattern(name, pat, fn, doc, priority)``.
When ``pat`` matches a call, ``fn(node, ctx, **captures)`` returns the
replacement, or ``None`` when a condition the pattern cannot express fails
(one that needs the pass's state, such as a use count; it may record in
``ctx`` why, for the compile report); the engine then tries the next way
the pattern matches (the other operand order). A rule states all
its own preconditions: it never relies on another rule having declined or
fired first. ``priority`` orders the rules rooted at the same op (lower is
tried first, ties in table order); the levels are documented in
doc/passes.md.

``run_table`` binds the context and applies the table with
``dlavm.passes.rewrite`` until the graph stops changing; each sweep
recomputes the use counts, which ``rewrite`` keeps exact as it rebuilds
nodes, so a rule can ask ``ctx.single_use(node)`` before it fuses a value
another user still needs (a residual chain through 32 layers fuses in one
sweep). Every rule's tries, hits and time go to ``ctx.rule_stats`` and to
the running ``PassContext`` (shown by ``--time-passes``).

The constructors below build the canonical forms directly (a permute of a
permute composes, a reshape of a reshape collapses, a device round trip
cancels), so rules compose in few sweeps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..ir import Call, Constant, Function, Literal, Node, call, users
from ..ir.op import device_spec
from ..ir.pass_manager import PassContext, RuleRecord
from .canonicalize import unit_reshape_dims
from .fold import free_dims, size_only_memo
from .rewrite import Rule, rewrite

MAX_SWEEPS = 32


class Pat:
    """A pattern over graph nodes (module docstring).

    ``op``: None (any node), an op name or a tuple of names (a call of one of
    them). ``src``: operand sub-patterns, one per operand (None: any
    operands). ``attrs``: attribute name -> required value, or a predicate
    on the value. ``where``: predicate on the node. ``name``: capture the
    node under this name. ``commutative``: a binary call's operands may
    match in either order.
    """

    __slots__ = ("ops", "src", "attrs", "where", "name", "commutative")

    def __init__(self, op=None, *src: "Pat", attrs: dict | None = None, where: Callable | None = None,
                 name: str | None = None, commutative: bool = False):
        self.ops = (op,) if isinstance(op, str) else (tuple(op) if op is not None else None)
        self.src = tuple(src) if src else None
        self.attrs = dict(attrs or {})
        self.where = where
        self.name = name
        self.commutative = commutative
        if commutative and (self.src is None or len(self.src) != 2):
            raise ValueError("a commutative pattern needs exactly two operand patterns")

    @staticmethod
    def any(name: str | None = None, where: Callable | None = None) -> "Pat":
        """Any node (satisfying ``where``), captured as ``name``."""
        return Pat(None, where=where, name=name)

    @staticmethod
    def lit(value, name: str | None = None, rel: float = 1e-6) -> "Pat":
        """A literal equal to ``value`` (floats within ``rel``)."""
        return Pat(None, where=lambda n: is_lit(n, value, rel), name=name)

    @staticmethod
    def lit_any(name: str) -> "Pat":
        """Any numeric literal, captured as ``name``."""
        return Pat(None, where=lambda n: isinstance(n, Literal) and not isinstance(n.value, bool), name=name)

    @staticmethod
    def alt(*alternatives: "Pat") -> "Pat":
        """The first of ``alternatives`` that matches (e.g. a call with or without an optional operand)."""
        return _Alt(alternatives)

    def match(self, node) -> dict | None:
        """The captures of the first way ``node`` matches, or None."""
        return next(self._match(node, {}), None)

    def matches(self, node):
        """The captures of every way ``node`` matches (e.g. both operand orders), in order."""
        return self._match(node, {})

    def _match(self, node, env: dict):
        if self.ops is not None and not (isinstance(node, Call) and node.op.name in self.ops):
            return
        if (self.attrs or self.src is not None) and not isinstance(node, Call):
            return
        for key, want in self.attrs.items():
            if key not in node.attrs:  # a typo in a pattern must not silently never match
                raise ValueError(f"pattern {self!r}: op '{node.op.name}' has no attribute '{key}'")
            have = node.attrs[key]
            if not (want(have) if callable(want) else have == want):
                return
        if self.where is not None and not self.where(node):
            return
        if self.name is not None:
            if self.name in env:
                if env[self.name] is not node:
                    return
            else:
                env = {**env, self.name: node}
        if self.src is None:
            yield env
            return
        args = node.args
        if len(args) != len(self.src):
            return
        orders = (args, args[::-1]) if self.commutative else (args,)
        for operands in orders:
            yield from _match_all(self.src, operands, env)

    def __repr__(self) -> str:
        op = "|".join(self.ops) if self.ops else "*"
        src = "" if self.src is None else "(" + ", ".join(map(repr, self.src)) + ")"
        return f"{op}{src}" + (f" as {self.name}" if self.name else "")


class _Alt(Pat):
    __slots__ = ("alternatives",)

    def __init__(self, alternatives):
        super().__init__()
        self.alternatives = tuple(alternatives)
        names = [a.ops for a in self.alternatives]
        self.ops = None if any(o is None for o in names) else tuple(dict.fromkeys(x for o in names for x in o))

    def _match(self, node, env):
        for a in self.alternatives:
            yield from a._match(node, env)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.alternatives))


def _match_all(pats, nodes, env):
    if not pats:
        yield env
        return
    for e in pats[0]._match(nodes[0], env):
        yield from _match_all(pats[1:], nodes[1:], e)


@dataclass(frozen=True)
class Pattern:
    """One table entry: when ``pat`` matches a call, ``fn(node, ctx, **captures)`` -> replacement or None.

    ``priority`` orders the rules rooted at the same op (lower first; see doc/passes.md);
    ``decline`` is the reason recorded for the compile report when the root op is there but the
    rest of the pattern is not."""

    name: str
    pat: Pat
    fn: Callable
    doc: str = ""
    priority: int = 50
    #: recorded as the reason a call of the root op stays on the host when ``pat`` does not match it
    decline: str | None = None

    @property
    def ops(self) -> tuple:
        if not self.pat.ops:
            raise ValueError(f"pattern '{self.name}': the root of a rule must name its op(s)")
        return self.pat.ops


@dataclass
class MatchContext:
    """Per-pass state the rules share: weights, use counts, decline reasons, firing counts."""

    params: dict
    attrs: dict
    uses: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    #: rule name -> [tries, hits, seconds]
    rule_stats: dict = field(default_factory=dict)

    def single_use(self, node: Node) -> bool:
        return len(self.uses.get(node, (None, None))) == 1

    def decline(self, node: Node, reason: str) -> None:
        """Record why ``node`` stays on the host (keyed by op and source span)."""
        self.reasons[report_key(node)] = reason
        return None

    def rule_records(self) -> list:
        return [RuleRecord(k, v[0], v[1], v[2]) for k, v in self.rule_stats.items()]


def report_key(node: Call) -> str:
    return f"{node.op.name}|{node.span}" if node.span else f"{node.op.name}|"


def ordered(table) -> list:
    """``table`` sorted by priority (stable: ties keep their table order)."""
    return sorted(table, key=lambda p: p.priority)


def _bind(p: Pattern, ctx: MatchContext):
    stat = ctx.rule_stats.setdefault(p.name, [0, 0, 0.0])

    def fire(node):
        t0 = time.perf_counter()
        stat[0] += 1
        out = None
        matched = False
        for m in p.pat.matches(node):
            matched = True
            out = p.fn(node, ctx, **m)
            if out is not None:
                break
        if not matched and p.decline is not None:
            ctx.decline(node, p.decline)
        if out is not None and out is not node:
            stat[1] += 1
        stat[2] += time.perf_counter() - t0
        return out
    return fire


def run_table(fn: Function, table, ctx: MatchContext) -> Function:
    """Apply the pattern ``table`` (in priority order) to ``fn`` until a sweep changes nothing."""
    rules = [Rule(p.name, op, _bind(p, ctx)) for p in ordered(table) for op in p.ops]
    with size_only_memo():  # rules ask is_size_only at many matches: one walk per node in all
        for _ in range(MAX_SWEEPS):
            ctx.uses = users(fn.body)
            new = rewrite(fn, rules, ctx.stats, ctx.uses)
            if new is fn:
                return fn
            fn = new
    raise RuntimeError(f"pattern table did not converge on function '{fn.name}' in {MAX_SWEEPS} sweeps")


def record_rule_stats(ctx: MatchContext) -> None:
    """Hand ``ctx``'s per-rule tries / hits / time to the running pass manager (``--time-passes``)."""
    PassContext.current().record_rules(ctx.rule_records())


# ---------------------------------------------------------------------------------------------
# matchers

def is_op(node, *names) -> bool:
    return isinstance(node, Call) and node.op.name in names


def is_lit(node, value, rel: float = 1e-6) -> bool:
    """A literal equal to ``value`` (floats within ``rel``)."""
    if not isinstance(node, Literal) or isinstance(node.value, bool):
        return False
    return abs(node.value - value) <= rel * max(1.0, abs(value))


def const_int(e):
    """The int value of a constant sym expression, or None."""
    return e.value if getattr(e, "is_const", False) else None


def is_float(node) -> bool:
    return hasattr(node.type, "dtype") and node.type.dtype in ("float16", "float32", "float64", "bfloat16")


def is_weight(node) -> bool:
    """A weight, or a static transform of one (slice, permute) that ``fold_weights`` turns into a weight."""
    return isinstance(node, Constant) or (is_op(node, *_WEIGHT_VIEWS) and isinstance(node.args[0], Constant)
                                          and not free_dims(node))


_WEIGHT_VIEWS = ("slice", "permute")


def with_optional_bias(op: str, x: Pat, weight_is) -> Pat:
    """``op(x, w)`` or ``op(x, w, b)``: ``w`` a weight for which ``weight_is`` holds, ``b`` a weight."""
    w = Pat.any("w", where=weight_is)
    return Pat.alt(Pat(op, x, w), Pat(op, x, w, Pat.any("b", where=is_weight)))


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
    """``permute`` that composes with an inner permute (also through a reshape that only inserts or
    drops size-1 axes: ``[H,S,D] -> [1,H,S,D]``) and vanishes when it is the identity."""
    n = len(dims)
    dims = tuple(d % n for d in dims)
    if is_op(x, "reshape") and is_op(x.args[0], "permute"):
        below = unit_reshape_dims(x, dims)
        if below is not None:
            shape = tuple(x.type.shape[d] for d in dims)
            return reshape(permute(x.args[0], below), shape)
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
    elif x.type.dtype == "float16" and is_device_value(x):
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


def is_device_value(x) -> bool:
    """A call of a device op whose result lives in device memory (its spec says so)."""
    return isinstance(x, Call) and x.op.name.startswith("dev.") and \
        device_spec(x.op, "legalize").result_on_device
