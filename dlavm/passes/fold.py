"""Compile-time evaluation and folding.

* ``evaluate(node, params, env)``: a small numpy interpreter for the
  subgraphs a compiler folds: weight transforms (``permute`` / ``slice`` /
  ``reshape`` / ``cast`` of weights) and *size-only* subgraphs (attention
  masks and RoPE tables built from ``arange`` and the dynamic sizes). It
  is independent of ``dlavm.reference`` (passes must not import torch);
  tests check the two agree.
* ``is_size_only(node)``: whether a subgraph depends on no input; inside
  ``size_only_memo()`` (a pattern-table pass opens one) each node is walked
  once for all the questions a pass asks, so asking at every match of a
  32-layer graph stays linear in its size.
* ``fold_weights`` (pass): after it, no call has only weights and literals
  as inputs when its op is a weight transform; each such chain is a new
  weight whose *recipe* (source weight and steps) is recorded in
  ``mod.attrs["param_recipes"]`` so formats chosen per source weight and
  fake-quantised values can be mapped back onto the model's own weights.
* ``fold_views`` (pass): common-subexpression elimination (so the host
  input is cast to the device once), reshape chains collapsed, and weights
  no longer referenced dropped. After it every ``reshape`` left in a device
  graph is a view (pure address arithmetic on a contiguous row-major
  tensor), and no two calls compute the same op on the same inputs.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from .. import sym
from ..ir import Call, Constant, Function, Literal, Module, Mutator, Var, module_pass, post_order
from .canonicalize import RULES as CANONICAL_RULES
from .rewrite import rewrite


class FoldError(Exception):
    """A subgraph cannot be evaluated at compile time (names the op and why)."""


_NP = {"bool": np.bool_, "uint8": np.uint8, "int8": np.int8, "int16": np.int16, "int32": np.int32,
       "int64": np.int64, "float16": np.float16, "float32": np.float32, "float64": np.float64}

_UNARY = {"cos": np.cos, "sin": np.sin, "neg": np.negative, "exp": np.exp, "sqrt": np.sqrt,
          "rsqrt": lambda x: 1.0 / np.sqrt(x), "abs": np.abs, "logical_not": np.logical_not,
          "bitwise_not": np.invert, "reciprocal": np.reciprocal, "tanh": np.tanh}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "pow": np.power,
           "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal, "bitwise_and": np.bitwise_and,
           "bitwise_or": np.bitwise_or, "logical_and": np.logical_and, "logical_or": np.logical_or,
           "maximum": np.maximum, "minimum": np.minimum}


def _index(x, ins, attrs):
    idx: list = [slice(None)] * x.ndim
    for a, t in zip(attrs["axes"], ins):
        idx[a] = t
    return x[tuple(idx)]


def _eval_call(node: Call, ins: list, ev):
    op, a = node.op.name, node.attrs
    if op in _UNARY:
        return _UNARY[op](ins[0])
    if op in _BINARY:
        return _BINARY[op](ins[0], ins[1])
    if op == "div" and a["rounding_mode"] is None:
        return np.true_divide(ins[0], ins[1])
    if op == "arange":
        return np.arange(ev(a["start"]), ev(a["end"]), a["step"])
    if op == "full":
        return np.full([ev(d) for d in a["shape"]], a["value"])
    if op == "shape_value":
        return np.asarray(ev(a["value"]))
    if op == "reshape":
        return np.reshape(ins[0], [ev(d) for d in a["shape"]])
    if op == "expand":
        return np.broadcast_to(ins[0], [ev(d) for d in a["shape"]])
    if op == "permute":
        return np.transpose(ins[0], a["dims"])
    if op == "cast":
        return np.asarray(ins[0])
    if op == "slice":
        x = ins[0]
        idx = [slice(None)] * x.ndim
        idx[a["axis"]] = slice(ev(a["start"]), ev(a["end"]), a["step"])
        return x[tuple(idx)]
    if op == "concat":
        return np.concatenate(ins, a["axis"])
    if op == "cumsum":
        return np.cumsum(ins[0], a["axis"])
    if op == "index":
        return _index(ins[0], ins[1:], a)
    if op == "where":
        return np.where(ins[0], ins[1], ins[2])
    raise FoldError(f"op '{node.op.name}' cannot be evaluated at compile time")


def evaluate(node, params: dict, env: dict | None = None) -> np.ndarray:
    """Evaluate ``node`` with numpy for the dim binding ``env`` (sym var -> int).

    Weights come from ``params``; a ``Var`` in the subgraph, a weight without
    data or an op outside the small table above raises ``FoldError``. Every
    intermediate is cast to its IR dtype, so results follow the IR's types.
    """
    env = env or {}
    memo: dict = {}

    def ev(e):
        return sym.evaluate(e, env)

    with np.errstate(all="ignore"):
        for n in post_order(node):
            if isinstance(n, Var):
                raise FoldError(f"the subgraph depends on the input %{n.name}")
            if isinstance(n, Constant):
                data = params.get(n.name)
                if data is None:
                    raise FoldError(f"weight @{n.name} has no data")
                memo[n] = np.asarray(data)
            elif isinstance(n, Literal):
                memo[n] = np.asarray(n.value, dtype=_NP[n.type.dtype])
            elif isinstance(n, Call):
                out = _eval_call(n, [memo[a] for a in n.args], ev)
                memo[n] = np.asarray(out).astype(_NP[n.type.dtype], copy=False)
            else:
                raise FoldError(f"cannot evaluate a {type(n).__name__} at compile time")
    return memo[node]


#: The memo of :func:`is_size_only` while a :func:`size_only_memo` scope is open (node -> bool).
_SIZE_ONLY_MEMO: ContextVar = ContextVar("dlavm_size_only_memo", default=None)


@contextmanager
def size_only_memo():
    """Within this scope :func:`is_size_only` remembers its answer for every node it has walked, so a
    pass that asks about many nodes of one graph (a pattern table asks at every RoPE, eltwise and
    attention match) walks each node once in all, not the whole upstream graph per question.

    The answer for a node never goes stale: it is a function of the node's inputs, which are fixed
    when the node is built (no pass reassigns ``args``; a rewrite builds new nodes). The memo holds
    its nodes, so no id is reused while it is open; it is dropped when the outermost scope closes,
    so it lives as long as the pass that opened it. Nested scopes share the outer memo. The scope
    yields the memo (node -> answer), for tests that check every answer a pass was given.
    """
    memo = _SIZE_ONLY_MEMO.get()
    token = _SIZE_ONLY_MEMO.set(memo if memo is not None else {})
    try:
        yield _SIZE_ONLY_MEMO.get()
    finally:
        _SIZE_ONLY_MEMO.reset(token)


def is_size_only(node) -> bool:
    """True when ``node`` depends on no input (``Var``): only on sizes, literals and weights.

    One walk of the nodes not yet known, iterative; inside :func:`size_only_memo` what it learns is
    kept for the next question (outside, for this question only).
    """
    memo = _SIZE_ONLY_MEMO.get()
    if memo is None:
        memo = {}
    known = memo.get(node)
    if known is not None:
        return known
    stack = [node]
    while stack:
        n = stack[-1]
        if n in memo:
            stack.pop()
            continue
        if isinstance(n, Var):
            memo[n] = False
            stack.pop()
            continue
        pending = [c for c in n.inputs() if c not in memo]
        if pending:
            stack.extend(pending)
            continue
        memo[n] = all(memo[c] for c in n.inputs())
        stack.pop()
    return memo[node]


def free_dims(node) -> list:
    """The symbolic dims appearing in the types and sym attributes of ``node``'s subgraph."""
    found: dict = {}
    for n in post_order(node):
        exprs = list(getattr(n.type, "shape", ()))
        if isinstance(n, Call):
            for v in n.attrs.values():
                if isinstance(v, sym.Expr):
                    exprs.append(v)
                elif isinstance(v, tuple):
                    exprs.extend(x for x in v if isinstance(x, sym.Expr))
        for e in exprs:
            for v in sorted(e.free_vars(), key=str):
                found.setdefault(v, None)
    return list(found)


# ---------------------------------------------------------------------------------------------
# fold_weights

#: Ops that transform one weight into another (row-wise data movement or a cast).
WEIGHT_TRANSFORMS = ("permute", "slice", "reshape", "cast")


def _step_name(node: Call) -> str:
    a = node.attrs
    if node.op.name == "permute":
        return "T" if tuple(a["dims"]) == (1, 0) else "permute" + "_".join(map(str, a["dims"]))
    if node.op.name == "slice":
        return f"slice{a['axis']}_{a['start']}_{a['end']}_{a['step']}"
    if node.op.name == "reshape":
        return "reshape" + "x".join(map(str, a["shape"]))
    return f"cast_{a['dtype']}"


class _WeightFolder(Mutator):
    def __init__(self, params: dict, recipes: dict):
        super().__init__()
        self.params, self.recipes = params, recipes

    def visit_call(self, node: Call):
        node = super().visit_call(node)
        if (node.op.name not in WEIGHT_TRANSFORMS or not isinstance(node.args[0], Constant)
                or free_dims(node)):
            return node
        src = node.args[0]
        name = f"{src.name}:{_step_name(node)}"
        if name not in self.params:
            data = self.params.get(src.name)
            self.params[name] = None if data is None else np.ascontiguousarray(evaluate(node, self.params))
            base = self.recipes.get(src.name, {"source": src.name, "steps": []})
            step = (node.op.name, {k: (tuple(int(x) for x in v) if isinstance(v, tuple) else
                                       int(v) if isinstance(v, sym.Expr) else v)
                                   for k, v in node.attrs.items()})
            self.recipes[name] = {"source": base["source"], "steps": base["steps"] + [step]}
        return Constant(name, node.type, span=node.span)


@module_pass("fold_weights")
def fold_weights(mod: Module) -> Module:
    """Replace weight transforms (permute/slice/reshape/cast of a weight) by new weights.

    Guarantees: no ``permute``/``slice``/``reshape``/``cast`` call has a
    weight as its input; every new weight has a recipe in
    ``mod.attrs["param_recipes"]`` (source weight, steps).
    """
    params = dict(mod.params)
    recipes = dict(mod.attrs.get("param_recipes", {}))
    out = Module(params=params, attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(_WeightFolder(params, recipes).mutate_function(f))
    out.attrs["param_recipes"] = recipes
    return _prune_params(out)


# ---------------------------------------------------------------------------------------------
# fold_views

def _attr_key(attrs: dict):
    return tuple((k, repr(v)) for k, v in sorted(attrs.items()))


class _CSE(Mutator):
    def __init__(self):
        super().__init__()
        self.seen: dict = {}

    def _key(self, n):
        if isinstance(n, Literal):
            return ("lit", n.value, n.type.dtype)
        return ("node", id(n))

    def visit_call(self, node: Call):
        node = super().visit_call(node)
        key = (node.op.name, tuple(self._key(a) for a in node.args), _attr_key(node.attrs))
        return self.seen.setdefault(key, node)


def _prune_params(mod: Module) -> Module:
    used = {n.name for f in mod.functions.values() for n in post_order(f.body) if isinstance(n, Constant)}
    mod.params = {k: v for k, v in mod.params.items() if k in used}
    if "param_recipes" in mod.attrs:
        mod.attrs["param_recipes"] = {k: v for k, v in mod.attrs["param_recipes"].items() if k in used}
    return mod


_VIEW_RULES = [r for r in CANONICAL_RULES if r.name in ("reshape-noop", "reshape-reshape")]


def eliminate_common(fn: Function) -> Function:
    """One CSE sweep: calls with the same op, inputs and attributes become one node."""
    return _CSE().mutate_function(fn)


@module_pass("fold_views")
def fold_views(mod: Module) -> Module:
    """Collapse reshape chains, share identical calls (CSE), drop unreferenced weights.

    Guarantees: no reshape of a reshape or to the same shape; no two calls
    with the same op, inputs and attributes (so each host input crosses to the
    device once); ``mod.params`` holds exactly the referenced weights.
    """
    out = Module(params=dict(mod.params), attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(eliminate_common(rewrite(f, _VIEW_RULES)))
    return _prune_params(out)
