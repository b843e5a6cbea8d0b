"""``fold_batchnorm``: per-channel affine ops after a conv2d / linear folded into its weight and bias.

Eval-mode BatchNorm imports as ``((y - mean) * rsqrt(var + eps)) * gamma + beta``
with ``mean``, ``var``, ``gamma``, ``beta`` weights reshaped to ``[1, C, 1, 1]``.
Every step is ``y op c`` where ``y`` is the output of a ``conv2d`` or
``linear`` of weights and ``c`` a *per-channel constant*: a subgraph of
weights and literals only (no input, no dynamic size) whose shape broadcasts
along the output-channel axis alone (axis 1 of NCHW, the last axis of a
linear), or a scalar. With ``y = x * W^T + b`` per channel ``o``:

* ``y + c``, ``c + y``: bias ``b + c``;   ``y - c``: ``b - c``;   ``c - y``: ``W * -1``, ``c - b``;
* ``y * c``, ``c * y``: ``W * c``, ``b * c``;   ``y / c``: ``W / c``, ``b / c``.

The whole chain folds one op at a time, bottom-up; each folded weight keeps
one recipe step ``("channel_affine", {"scale", "shift"})`` over its source
weight (composed, so a BatchNorm gives one new weight and one new bias
computed in float64 from the originals and rounded to float32 once), and
``fake_quantized_params`` writes the device's values back through it
(``(w' - shift) / scale``). A bias created where the conv/linear had none has
no source to write back to.

Preconditions (each stated by the rule): ``y`` has no other user (its
unfolded value would be lost), the result has ``y``'s type (no broadcast
or promotion), and, when the data is there, every folded scale is finite
and non-zero (a zero scale could not be written back). A shape-only model
(weights without data) folds the same way into weights without data.

Guarantees afterwards: no ``add``/``sub``/``mul``/``div`` has a single-use
``conv2d``/``linear`` of weights as one operand and a per-channel constant
as the other. Values change only by float32 rounding (the folded weights
are rounded once instead of the activations at every step).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..ir import Call, Constant, Literal, Module, TensorType, Var, module_pass
from .fold import FoldError, _prune_params, evaluate, free_dims
from .patterns_match import MatchContext, Pat, Pattern, is_op, record_rule_stats, run_table

#: the largest constant subgraph looked at (BatchNorm's is four nodes); bounds the work per add/mul
MAX_CONST_NODES = 32
STEP = "channel_affine"


def _channel_axis(y) -> int:
    return 1 if y.op.name == "conv2d" else y.type.ndim - 1


def _producer(y) -> bool:
    """A conv2d or linear whose weight (and bias) are weights: what the fold rewrites."""
    if not is_op(y, "conv2d", "linear") or not isinstance(y.args[1], Constant):
        return False
    if y.op.name == "conv2d" and y.attrs["groups"] != 1:
        return False
    return all(isinstance(b, Constant) for b in y.args[2:])


def _const_nodes(c) -> list | None:
    """The nodes of ``c``'s subgraph when it is made of weights and literals only, else None."""
    seen, stack = [], [c]
    while stack:
        n = stack.pop()
        if any(n is s for s in seen):
            continue
        if isinstance(n, Var) or len(seen) >= MAX_CONST_NODES:
            return None
        seen.append(n)
        if isinstance(n, Call):
            stack.extend(n.args)
    return seen


def _per_channel(c, y) -> bool:
    """``c`` is a constant broadcasting along ``y``'s channel axis only (or a scalar)."""
    if isinstance(c, Literal):
        return not isinstance(c.value, bool) and isinstance(c.value, (int, float))
    if _const_nodes(c) is None or free_dims(c) or not hasattr(c.type, "shape"):
        return False
    shape, nd, ax = tuple(c.type.shape), y.type.ndim, _channel_axis(y)
    if len(shape) > nd:
        return False
    shape = (1,) * (nd - len(shape)) + shape
    return all(int(d) == 1 for i, d in enumerate(shape) if i != ax) and \
        int(shape[ax]) in (1, int(y.type.shape[ax]))


def _vector(c, y, params) -> np.ndarray | None:
    """``c`` as a float64 vector over ``y``'s output channels (None: a weight has no data)."""
    n = int(y.type.shape[_channel_axis(y)])
    if isinstance(c, Literal):
        return np.full(n, float(c.value))
    try:
        arr = np.asarray(evaluate(c, params), dtype=np.float64)
    except FoldError:
        return None
    return np.broadcast_to(arr.reshape(-1), (n,)).copy() if arr.size in (1, n) else None


class _State:
    """Folded weights made so far: name -> (base weight name, scale, shift) over the base."""

    def __init__(self, params: dict, recipes: dict):
        self.params, self.recipes, self.derived = params, recipes, {}

    def base(self, w: Constant, n: int):
        """(base name, scale, shift) of weight ``w`` (identity for a weight this pass did not make)."""
        return self.derived.get(w.name, (w.name, np.ones(n), np.zeros(n)))

    def weight(self, base: str, scale, shift, ref: Constant, is_bias: bool) -> Constant:
        """The weight ``base * scale (+ shift)`` along axis 0, with its recipe; ``base`` None: ``shift``."""
        h = hashlib.sha1(np.ascontiguousarray(np.stack([scale, shift])).tobytes()).hexdigest()[:10]
        name = f"{base or ref.name + ':bias'}:{STEP}_{h}"
        if name not in self.params:
            src = self.params.get(base) if base is not None else np.zeros(len(shift))
            if src is None:
                self.params[name] = None
            else:
                bshape = (-1,) + (1,) * (np.ndim(src) - 1)
                val = np.asarray(src, np.float64) * scale.reshape(bshape) + (shift if is_bias else 0.0)
                self.params[name] = val.astype(np.float32)
            if base is not None:
                prev = self.recipes.get(base, {"source": base, "steps": []})
                step = (STEP, {"scale": tuple(float(v) for v in scale),
                               "shift": tuple(float(v) for v in (shift if is_bias else np.zeros(len(shift))))})
                self.recipes[name] = {"source": prev["source"], "steps": prev["steps"] + [step]}
            self.derived[name] = (base, scale, shift if is_bias else np.zeros(len(shift)))
        return Constant(name, ref.type if base is not None else
                        TensorType((ref.type.shape[0],), ref.type.dtype), span=ref.span)


def _fold(node, ctx: MatchContext, y, c):
    op = node.op.name
    if node.type != y.type or not ctx.single_use(y):
        return None
    state: _State = ctx.memo["fold_batchnorm"]
    n = int(y.type.shape[_channel_axis(y)])
    w, b = y.args[1], (y.args[2] if len(y.args) > 2 else None)
    consts = [k for k in (_const_nodes(c) or []) if isinstance(k, Constant)] + [w] + ([b] if b is not None else [])
    shape_only = any(state.params.get(k.name) is None for k in consts)
    v = np.ones(n) if shape_only else _vector(c, y, state.params)
    if v is None:
        return None
    if op == "add":
        s, t = np.ones(n), v
    elif op == "sub":
        s, t = (np.ones(n), -v) if node.args[0] is y else (-np.ones(n), v)
    elif op == "mul":
        s, t = v, np.zeros(n)
    else:
        if not np.all(v != 0):
            return None
        s, t = 1.0 / v, np.zeros(n)
    if not shape_only and not (np.all(np.isfinite(s)) and np.all(s != 0) and np.all(np.isfinite(t))):
        return None
    wb, ws, _ = state.base(w, n)
    new_w = state.weight(wb, ws * s, np.zeros(n), w, is_bias=False)
    if b is not None:
        bb, bs, bt = state.base(b, n)
        new_b = state.weight(bb, bs * s, bt * s + t, b, is_bias=True)
    elif np.any(t != 0) or (shape_only and op in ("add", "sub")):
        new_b = state.weight(None, np.zeros(n), t, w, is_bias=True)
    else:
        new_b = None
    if shape_only:
        state.params[new_w.name] = None
        if new_b is not None:
            state.params[new_b.name] = None
    args = (y.args[0], new_w) + ((new_b,) if new_b is not None else ())
    return Call(y.op, args, y.attrs, span=y.span)


_Y = Pat(("conv2d", "linear"), where=_producer, name="y")


def _table():
    rules = []
    for op in ("add", "mul"):
        rules.append(Pattern(f"{op}-per-channel->fold", Pat(op, _Y, Pat.any("c"), commutative=True), _fold_checked,
                             f"conv/linear {op} a per-channel constant -> folded weight and bias"))
    rules.append(Pattern("sub-per-channel->fold", Pat("sub", _Y, Pat.any("c")), _fold_checked,
                         "conv/linear - per-channel constant -> folded bias"))
    rules.append(Pattern("sub-from-per-channel->fold", Pat("sub", Pat.any("c"), _Y), _fold_checked,
                         "per-channel constant - conv/linear -> negated weight, folded bias"))
    rules.append(Pattern("div-per-channel->fold", Pat("div", _Y, Pat.any("c"), attrs={"rounding_mode": None}),
                         _fold_checked, "conv/linear / per-channel constant -> folded weight and bias"))
    return rules


def _fold_checked(node, ctx, y, c):
    if c is y or not _per_channel(c, y):
        return None
    return _fold(node, ctx, y, c)


FOLDS = _table()


@module_pass("fold_batchnorm")
def fold_batchnorm(mod: Module) -> Module:
    """Fold per-channel affine ops into the conv2d / linear before them (module docstring);
    ``mod.attrs["fold_batchnorm_stats"]`` counts the folds."""
    params = dict(mod.params)
    recipes = dict(mod.attrs.get("param_recipes", {}))
    ctx = MatchContext(params, dict(mod.attrs))
    ctx.memo["fold_batchnorm"] = _State(params, recipes)
    out = Module(params=params, attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(run_table(f, FOLDS, ctx))
    out.attrs["param_recipes"] = recipes
    out.attrs["fold_batchnorm_stats"] = dict(ctx.stats)
    record_rule_stats(ctx)
    return _prune_params(out)


__all__ = ["FOLDS", "fold_batchnorm"]
