"""``pad_heads``: pad attention head dims the device cannot run to its head granularity.

``kv_append``, ``mat_qk`` and ``mat_pv`` take head dims that are multiples of
``HEAD_DIM_MULTIPLE`` (16, ``dlavm.target.isa``; doc/isa.md section 8). A
``dev.attention`` whose head dim ``D`` is not (Qwen2-style D = 12, 24, ...)
is rewritten to head dim ``D' = ceil(D / 16) * 16`` with every padded lane
exactly zero, so the attention computes the same function:

* the q/k/v projection weights (``dev.mvm`` ``[H*D, K]``) and biases get
  zero output rows per head; the new weights are ``<name>.padded_heads``
  with a recipe step ``("pad_heads", {axis, heads, d, d_pad, layout})`` in
  ``attrs["param_recipes"]`` (``quantize.fake_quantized_params`` writes the
  device's values back onto the model's own weights through it);
* the per-head layout keeps RoPE's lane pairing: with rotate-half RoPE
  (``interleaved=False``, pairs ``(i, i + D/2)``) each head is
  ``[first half (D/2), zeros, second half (D/2), zeros]`` so the device's
  pairs ``(i, i + D'/2)`` are the original ones (``layout="halves"``); with
  interleaved RoPE (pairs ``(2i, 2i + 1)``) or no RoPE the zeros go at the
  end (``layout="end"``);
* the RoPE table ``[P, D]`` (D/2 cosines then D/2 sines) becomes ``[P, D']``
  with cos = 1, sin = 0 in the padded columns (``<table>.padded_heads``);
  the padded lanes are zero, so any finite value would do;
* the attention's ``scale`` stays ``1/sqrt(D)`` of the *original* D (set
  explicitly if it was None, as the lowering would otherwise use D');
* the output projection (every ``dev.mvm`` reading the attention's
  ``[.., H*D]`` view) gets zero input columns in the same per-head layout.

The KV caches (``kv_cache`` pass, lowering) are then sized with ``D'``.

Quantisation: zero rows and columns quantise to zero in every format, and
the q/k/v padding adds whole output rows (int8 and int4 scales are per row /
per row-group: the real rows are unchanged). The output projection's K axis
grows from ``H*D`` to ``H*D'``, so its int4 groups of 128 input channels hold
different inputs than the unpadded weight's groups would (the group scales
differ): the device multiplies by ``fake_quant(padded)``, NOT by the padding
of ``fake_quant(original)``. ``fake_quantized_params`` fake-quantises the
padded weight (the one the device packs) and writes its real lanes back, so
the torch reference computes with exactly the device's weights.

Guarantees afterwards: every ``dev.attention`` whose inputs are q/k/v
projections (``mvm -> reshape [.., H, D] [-> rope]``) and whose output only
feeds output projections has a head dim that is a multiple of
``HEAD_DIM_MULTIPLE``; ``attrs["padded_heads"]`` lists ``{"heads",
"kv_heads", "d", "d_pad", "layout"}`` per padded attention (absent when
nothing needed padding). An attention the pass cannot pad
is left unchanged with its reason in ``attrs["pad_heads_declined"]`` (the
lowering then refuses it naming the head dim).
"""
from __future__ import annotations

import math

import numpy as np

from .. import sym
from ..ir import Call, Constant, Module, Mutator, module_pass, post_order
from ..ir.traversal import users as users_of
from ..ir.types import TensorType
from ..target.isa import HEAD_DIM_MULTIPLE
from .patterns_match import is_op, reshape

SUFFIX = ".padded_heads"


def padded_dim(d: int, multiple: int = HEAD_DIM_MULTIPLE) -> int:
    return -(-int(d) // multiple) * multiple


def head_lanes(d: int, d_pad: int, layout: str) -> np.ndarray:
    """Index in ``[0, d_pad)`` of each original lane ``0..d-1`` of a head."""
    if layout == "halves":
        h = d // 2
        return np.concatenate([np.arange(h), d_pad // 2 + np.arange(h)])
    return np.arange(d)


def pad_axis(x, axis: int, heads: int, d: int, d_pad: int, layout: str):
    """``x`` with its ``axis`` of ``heads*d`` lanes spread to ``heads*d_pad`` (zeros in between)."""
    if x is None:
        return None
    x = np.moveaxis(np.asarray(x), axis, 0)
    rest = x.shape[1:]
    out = np.zeros((heads, d_pad) + rest, dtype=x.dtype)
    out[:, head_lanes(d, d_pad, layout)] = x.reshape((heads, d) + rest)
    return np.ascontiguousarray(np.moveaxis(out.reshape((heads * d_pad,) + rest), 0, axis))


def unpad_axis(x, axis: int, heads: int, d: int, d_pad: int, layout: str):
    """The inverse of :func:`pad_axis`: the real lanes of a padded ``axis``."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    rest = x.shape[1:]
    out = x.reshape((heads, d_pad) + rest)[:, head_lanes(d, d_pad, layout)]
    return np.ascontiguousarray(np.moveaxis(out.reshape((heads * d,) + rest), 0, axis))


def pad_rope_table(table, d: int, d_pad: int):
    """``[P, d]`` (d/2 cosines, d/2 sines) -> ``[P, d_pad]`` with cos 1, sin 0 in the padded columns."""
    if table is None:
        return None
    t = np.asarray(table, np.float32)
    h, hp = d // 2, d_pad // 2
    out = np.zeros((t.shape[0], d_pad), np.float32)
    out[:, :hp] = 1.0
    out[:, :h] = t[:, :h]
    out[:, hp:hp + h] = t[:, h:]
    return out


class _Decline(Exception):
    pass


def _projection(x, h: int, d: int):
    """``x`` = [rope(] reshape(mvm(..., W [H*D, K][, b]), [.., H, D]) [)] -> (rope | None, reshape, mvm)."""
    rope = None
    if is_op(x, "dev.rope"):
        rope, x = x, x.args[0]
        if not isinstance(rope.args[1], Constant):
            raise _Decline("the RoPE table is not a weight")
    if not is_op(x, "reshape"):
        raise _Decline("q/k/v is not a view of a projection (dev.mvm)")
    m = x.args[0]
    if not (is_op(m, "dev.mvm") and isinstance(m.args[1], Constant) and m.attrs["res"] == "none"
            and not m.attrs["argmax"] and (not m.attrs["bias"] or isinstance(m.args[2], Constant))):
        raise _Decline("q/k/v is not a plain projection (dev.mvm of a weight, no residual)")
    if int(m.args[1].type.shape[0]) != h * d or tuple(int(v) for v in x.type.shape[-2:]) != (h, d):
        raise _Decline("the projection's rows are not the heads of q/k/v")
    return rope, x, m


class _Padder(Mutator):
    def __init__(self, params: dict, recipes: dict, multiple: int):
        super().__init__()
        self.params, self.recipes, self.multiple = params, recipes, multiple
        self.plans: dict = {}      # attention -> plan
        self.views: dict = {}      # attention output view -> attention
        self.oproj: dict = {}      # output projection -> attention
        self.report: list = []
        self.declined: list = []

    # -- planning ------------------------------------------------------------------------------
    def plan(self, body):
        use = users_of(body)
        for n in post_order(body):
            if not (isinstance(n, Call) and n.op.name == "dev.attention"):
                continue
            d = int(n.args[0].type.shape[2])
            if d % self.multiple == 0:
                continue
            try:
                self.plans[n] = self._plan_one(n, use, d)
            except _Decline as e:
                self.declined.append({"node": str(n.span or "dev.attention"), "d": d, "reason": str(e)})

    def _plan_one(self, att, use, d):
        h, hkv = int(att.args[0].type.shape[1]), int(att.args[1].type.shape[1])
        if att.attrs["cache"] is not None:
            raise _Decline("the attention already has a KV cache (pad before kv_cache)")
        prods = [_projection(x, hh, d) for x, hh in zip(att.args, (h, hkv, hkv))]
        ropes = [p[0] for p in prods if p[0] is not None]
        kinds = {bool(r.attrs["interleaved"]) for r in ropes}
        if len(kinds) > 1:
            raise _Decline("q and k use different RoPE layouts")
        layout = "halves" if kinds == {False} else "end"
        if layout == "halves" and d % 2:
            raise _Decline("rotate-half RoPE with an odd head dim")
        views = use.get(att, [])
        if not views:
            raise _Decline("the attention output is not used")
        for r in views:
            if not (is_op(r, "reshape") and int(r.type.shape[-1]) == h * d):
                raise _Decline("the attention output is not merged to [.., heads*dim] by a view")
            for o in use.get(r, []):
                if not (is_op(o, "dev.mvm") and o.args[0] is r and isinstance(o.args[1], Constant)
                        and o.args[1] is not r and r not in o.args[2:]):
                    raise _Decline("the merged attention output feeds something other than a projection")
            if not use.get(r):
                raise _Decline("the merged attention output is not used by a projection")
        for r in views:
            self.views[r] = att
            for o in use[r]:
                self.oproj[o] = att
        return {"d": d, "d_pad": padded_dim(d, self.multiple), "layout": layout, "h": h, "hkv": hkv,
                "prods": prods, "new": None}

    # -- weights -------------------------------------------------------------------------------
    def _padded_weight(self, w: Constant, axis: int, heads: int, plan) -> Constant:
        d, dp, layout = plan["d"], plan["d_pad"], plan["layout"]
        name = f"{w.name}{SUFFIX}"
        step = ("pad_heads", {"axis": axis, "heads": heads, "d": d, "d_pad": dp, "layout": layout})
        base = self.recipes.get(w.name, {"source": w.name, "steps": []})
        recipe = {"source": base["source"], "steps": base["steps"] + [step]}
        if name in self.params:
            if self.recipes.get(name) != recipe:
                raise ValueError(f"pad_heads: weight @{w.name} is padded in two different ways")
        else:
            self.params[name] = pad_axis(self.params.get(w.name), axis, heads, d, dp, layout)
            self.recipes[name] = recipe
        shape = list(w.type.shape)
        shape[axis] = sym.as_expr(heads * dp)
        return Constant(name, TensorType(tuple(shape), w.type.dtype), span=w.span)

    def _padded_table(self, t: Constant, plan) -> Constant:
        d, dp = plan["d"], plan["d_pad"]
        name = f"{t.name}{SUFFIX}"
        if name not in self.params:
            self.params[name] = pad_rope_table(self.params.get(t.name), d, dp)
        return Constant(name, TensorType((t.type.shape[0], sym.as_expr(dp)), t.type.dtype), span=t.span)

    # -- rewriting -----------------------------------------------------------------------------
    def _new_input(self, prod, heads, plan):
        rope, view, m = prod
        w = self._padded_weight(m.args[1], 0, heads, plan)
        extra = [self._padded_weight(m.args[2], 0, heads, plan)] if m.attrs["bias"] else []
        mm = Call(m.op, (self.new(m.args[0]), w, *extra), m.attrs, span=m.span)
        y = reshape(mm, tuple(view.type.shape[:-1]) + (plan["d_pad"],))
        if rope is not None:
            y = Call(rope.op, (y, self._padded_table(rope.args[1], plan)), rope.attrs, span=rope.span)
        return y

    def visit_call(self, node):
        if node in self.plans:
            plan = self.plans[node]
            q, k, v = (self._new_input(p, hh, plan)
                       for p, hh in zip(plan["prods"], (plan["h"], plan["hkv"], plan["hkv"])))
            scale = node.attrs["scale"]
            scale = 1.0 / math.sqrt(plan["d"]) if scale is None else float(scale)
            new = Call(node.op, (q, k, v), {**node.attrs, "scale": scale}, span=node.span)
            self.report.append({"heads": plan["h"], "kv_heads": plan["hkv"], "d": plan["d"],
                                "d_pad": plan["d_pad"], "layout": plan["layout"]})
            return new
        if node in self.views:
            att = self.views[node]
            plan = self.plans[att]
            return reshape(self.new(att), tuple(node.type.shape[:-1]) + (plan["h"] * plan["d_pad"],))
        if node in self.oproj:
            plan = self.plans[self.oproj[node]]
            w = self._padded_weight(node.args[1], 1, plan["h"], plan)
            return Call(node.op, (self.new(node.args[0]), w, *(self.new(a) for a in node.args[2:])),
                        node.attrs, span=node.span)
        return super().visit_call(node)


def pad_heads_module(mod: Module, multiple: int = HEAD_DIM_MULTIPLE) -> Module:
    """The rewrite of the module docstring with head granularity ``multiple``."""
    params = dict(mod.params)
    recipes = dict(mod.attrs.get("param_recipes", {}))
    out = Module(params=params, attrs=dict(mod.attrs))
    report, declined = [], []
    for f in mod.functions.values():
        p = _Padder(params, recipes, multiple)
        p.plan(f.body)
        out.add(p.mutate_function(f) if p.plans else f)
        report += p.report
        declined += p.declined
    if report:
        used = {n.name for f in out.functions.values() for n in post_order(f.body) if isinstance(n, Constant)}
        out.params = {k: v for k, v in params.items() if k in used}
        out.attrs["param_recipes"] = {k: v for k, v in recipes.items() if k in used}
    if report:
        out.attrs["padded_heads"] = report
    if declined:
        out.attrs["pad_heads_declined"] = declined
    return out


@module_pass("pad_heads")
def pad_heads(mod: Module) -> Module:
    """Pad attention head dims to ``HEAD_DIM_MULTIPLE`` (module docstring); ``attrs["padded_heads"]``."""
    return pad_heads_module(mod)


__all__ = ["pad_heads", "pad_heads_module", "padded_dim", "pad_axis", "unpad_axis", "pad_rope_table",
           "head_lanes", "SUFFIX"]
