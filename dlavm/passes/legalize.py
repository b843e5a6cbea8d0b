"""``legalize``: ATen-level graph ops -> ``dev.*`` ops, by a pattern table.

Each entry of ``PATTERNS`` rewrites one ATen-level op (one-to-one, e.g.
``layer_norm``) or a whole subgraph rooted at it (one-to-many matched, e.g.
the decomposed RMSNorm, the RoPE formula, HF GQA attention with its mask)
into device ops wrapped as ``dev.to_host(dev_op(dev.to_device(x)...))``, so
every rewrite keeps the graph's types and a legalized region composes with
its neighbours: a ``dev.to_device(dev.to_host(y))`` pair is cancelled when
the next rule builds its input, and only real host/device boundaries keep
their conversions.

Guarantees afterwards: every op the table covers is a ``dev.*`` op (or a
view ``reshape`` of one); everything else stays as it was and runs on the
host; when a rule declines for a reason worth reporting (a mask that is not
causal, a RoPE table that is not prefix-consistent, ...) the reason is in
``mod.attrs["host_op_reasons"]`` keyed by op and source span. Rules in the
table are tried in order for each call, bottom-up, to a fixed point.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from .. import sym
from ..ir import Call, Constant, Literal, Module, Var, call, module_pass
from ..ir.ops.elementwise import ARITH_BINARY, FLOAT_UNARY, SAME_UNARY
from ..ir.types import TensorType
from .canonicalize import RULES as CANONICAL_RULES
from .fold import FoldError, evaluate, free_dims, is_size_only
from .patterns_match import (MatchContext, Pattern, const_int, device_value, is_float, is_lit, is_op,
                             operands, permute, reshape, run_table, to_device, to_host)
from .rewrite import Rule


def _weight(node) -> bool:
    """A weight, or a static transform of one that ``fold_weights`` turns into a weight."""
    return isinstance(node, Constant) or (is_op(node, *_WEIGHT_VIEWS) and isinstance(node.args[0], Constant)
                                          and not free_dims(node))


_WEIGHT_VIEWS = ("slice", "permute")


# ---------------------------------------------------------------------------------------------
# matrix-vector: linear (+bias), relu, argmax, slicing of a linear's output

def _linear(node, ctx):
    x, w = node.args[:2]
    b = node.args[2] if len(node.args) > 2 else None
    if not (is_float(x) and _weight(w) and w.type.ndim == 2 and (b is None or _weight(b))):
        return ctx.decline(node, "linear needs a float input and weight (and bias) tensors that are weights")
    extra = [b] if b is not None else []
    y = call("dev.mvm", to_device(x), w, *extra, bias=b is not None)
    return to_host(y, node.type.dtype)


def _plain_mvm(y, ctx, allow_relu=True) -> bool:
    return (is_op(y, "dev.mvm") and y.attrs["res"] == "none" and not y.attrs["argmax"]
            and (allow_relu or not y.attrs["relu"]) and ctx.single_use(y))


def _relu(node, ctx):
    x = node.args[0]
    if is_op(x, "dev.to_host") and _plain_mvm(x.args[0], ctx, allow_relu=False):
        y = x.args[0]
        return to_host(Call(y.op, y.args, {**y.attrs, "relu": True}), node.type.dtype)
    return None


def _argmax(node, ctx):
    x = node.args[0]
    if node.attrs["keepdim"] or node.attrs["axis"] not in (-1, x.type.ndim - 1):
        return None
    if is_op(x, "dev.to_host") and ctx.single_use(x) and _plain_mvm(x.args[0], ctx):
        y = x.args[0]
        return to_host(Call(y.op, y.args, {**y.attrs, "argmax": True}), node.type.dtype)
    return None


def _slice_of_linear(node, ctx):
    """Columns [a, b) of a linear's output = a linear with rows [a, b) of its weight (and bias)."""
    x = node.args[0]
    nd = x.type.ndim
    if node.attrs["axis"] % nd != nd - 1 or node.attrs["step"] != 1:
        return None
    inner, chain = x, []
    while is_op(inner, "reshape") and inner.type.shape[-1] == inner.args[0].type.shape[-1]:
        chain.append(inner)
        inner = inner.args[0]
    if not (is_op(inner, "dev.to_host") and _plain_mvm(inner.args[0], ctx)):
        return None
    if chain and not all(ctx.single_use(c) for c in chain[1:]):
        return None
    y = inner.args[0]
    a, b = node.attrs["start"], node.attrs["end"]
    w = call("slice", y.args[1], axis=0, start=a, end=b, step=1)
    extra = [call("slice", y.args[2], axis=0, start=a, end=b, step=1)] if y.attrs["bias"] else []
    out = to_host(Call(y.op, (y.args[0], w, *extra), y.attrs), inner.type.dtype)
    n = node.type.shape[-1]
    for c in reversed(chain):
        out = reshape(out, tuple(c.attrs["shape"][:-1]) + (n,))
    return out


# ---------------------------------------------------------------------------------------------
# normalisation

def _rms_norm(node, ctx):
    x = node.args[0]
    if node.attrs["ndim"] != 1 or not is_float(x):
        return ctx.decline(node, "rms_norm over more than the last dim has no device op")
    gamma = node.args[1] if len(node.args) > 1 else _ones(ctx, x.type.shape[-1])
    if not _weight(gamma):
        return ctx.decline(node, "rms_norm weight is not a weight tensor")
    return to_host(call("dev.rmsnorm", to_device(x), gamma, eps=node.attrs["eps"]), node.type.dtype)


def _ones(ctx, c):
    name = f"dlavm.ones.{c}"
    ctx.params.setdefault(name, np.ones(int(c), dtype=np.float32))
    return Constant(name, TensorType((sym.as_expr(c),), "float32"))


def _match_rms(node):
    """x * rsqrt(mean(x^2, -1, keepdim) + eps) -> (x, eps), or None."""
    for x, r in operands(node):
        if not is_op(r, "rsqrt") or not is_op(r.args[0], "add"):
            continue
        for m, eps in operands(r.args[0]):
            if not (is_op(m, "mean") and m.attrs["keepdim"] and len(m.attrs["axes"]) == 1
                    and m.attrs["axes"][0] % x.type.ndim == x.type.ndim - 1):
                continue
            sq = m.args[0]
            squares = ((is_op(sq, "pow") and sq.args[0] is x and is_lit(sq.args[1], 2))
                       or (is_op(sq, "mul") and sq.args[0] is x and sq.args[1] is x))
            if squares and isinstance(eps, Literal):
                return x, float(eps.value)
    return None


def _rms_decomposed(node, ctx):
    """HF Llama/Qwen2 RMSNorm: weight * (x * rsqrt(mean(x^2) + eps))."""
    for g, body in operands(node):
        if not (_weight(g) and g.type.ndim == 1 and is_op(body, "mul")):
            continue
        found = _match_rms(body)
        if found and found[0].type.shape[-1] == g.type.shape[0] and found[0].type == node.type:
            x, eps = found
            return to_host(call("dev.rmsnorm", to_device(x), g, eps=eps), node.type.dtype)
    return None


def _layer_norm(node, ctx):
    x = node.args[0]
    if node.attrs["ndim"] != 1 or len(node.args) != 3 or not all(_weight(p) for p in node.args[1:]):
        return ctx.decline(node, "layer_norm needs ndim=1 and both weight and bias for dev.layernorm")
    return to_host(call("dev.layernorm", to_device(x), *node.args[1:], eps=node.attrs["eps"]),
                   node.type.dtype)


# ---------------------------------------------------------------------------------------------
# activations and elementwise

def _act(fn):
    def rule(node, ctx):
        if not is_float(node.args[0]):
            return None
        return to_host(call("dev.act", to_device(node.args[0]), fn=fn), node.type.dtype)
    return rule


def _softmax(node, ctx):
    x = node.args[0]
    if not is_float(x) or node.attrs["axis"] % max(x.type.ndim, 1) != x.type.ndim - 1:
        return ctx.decline(node, "softmax over a dim other than the last has no device op")
    return to_host(call("dev.softmax", to_device(x)), node.type.dtype)


def _gelu_tanh_decomposed(node, ctx):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> the gelu table (see doc/passes.md)."""
    for half, t in operands(node):
        if not (is_op(half, "mul") and is_op(t, "add")):
            continue
        x = next((a for a, b in operands(half) if is_lit(b, 0.5)), None)
        th = next((a for a, b in operands(t) if is_lit(b, 1.0)), None)
        if x is None or not is_op(th, "tanh") or not is_op(th.args[0], "mul"):
            continue
        inner = next((a for a, b in operands(th.args[0]) if is_lit(b, math.sqrt(2 / math.pi))), None)
        if not is_op(inner, "add"):
            continue
        for xx, cube in operands(inner):
            if xx is not x or not is_op(cube, "mul"):
                continue
            p = next((a for a, b in operands(cube) if is_lit(b, 0.044715)), None)
            if is_op(p, "pow") and p.args[0] is x and is_lit(p.args[1], 3):
                return _act("gelu")(Call("gelu", (x,), {"approximate": "tanh"}), ctx)
    return None


_HOST_ARITH = frozenset(ARITH_BINARY + FLOAT_UNARY + SAME_UNARY) - {"relu"}


def _eltwise(fn):
    def rule(node, ctx):
        a, b = node.args
        if not (isinstance(a, (Call, Var)) and isinstance(b, (Call, Var))):
            return None
        if not (is_float(a) and is_float(b) and a.type.shape == b.type.shape == node.type.shape):
            return None
        if a.type.dtype != node.type.dtype or b.type.dtype != node.type.dtype:
            return None
        if is_size_only(a) and is_size_only(b):
            return None
        if a is b and device_value(a) is None:
            return None  # a host square is the inside of a norm pattern, not a device op
        if is_op(a, *_HOST_ARITH) or is_op(b, *_HOST_ARITH):
            # an operand still computed by host arithmetic may be the inside of a larger pattern
            # (GPT-2's GELU formula); moving this op alone would break the match.
            return None
        return to_host(call("dev.eltwise", to_device(a), to_device(b), fn=fn), node.type.dtype)
    return rule


# ---------------------------------------------------------------------------------------------
# RoPE and attention

def token_major(x):
    """[1, H, S, D] (head-major, batch 1) -> device [S, H, D]."""
    _, h, s, d = x.type.shape
    return to_device(reshape(permute(x, (0, 2, 1, 3)), (s, h, d)))


def head_major(y, dtype):
    """Device [S, H, D] -> host [1, H, S, D] (the inverse of ``token_major``)."""
    s, h, d = y.type.shape
    return permute(reshape(to_host(y, dtype), (1, s, h, d)), (0, 2, 1, 3))


def _batch1_4d(x) -> bool:
    return x.type.ndim == 4 and const_int(x.type.shape[0]) == 1 and all(
        const_int(d) is not None for d in (x.type.shape[1], x.type.shape[3]))


def _rotate_half(r, x) -> bool:
    """r == concat(-x[..., D/2:], x[..., :D/2], -1)."""
    if not is_op(r, "concat") or len(r.args) != 2 or r.attrs["axis"] % 4 != 3:
        return False
    neg, lo = r.args
    if not is_op(neg, "neg") or not is_op(neg.args[0], "slice") or not is_op(lo, "slice"):
        return False
    hi = neg.args[0]
    d = const_int(x.type.shape[3])
    half = d // 2
    return all(s.args[0] is x and s.attrs["axis"] % 4 == 3 and s.attrs["step"] == 1 for s in (hi, lo)) and \
        (const_int(hi.attrs["start"]), const_int(hi.attrs["end"])) == (half, d) and \
        (const_int(lo.attrs["start"]), const_int(lo.attrs["end"])) == (0, half)


def _dim_var(node):
    dims = free_dims(node)
    if len(dims) != 1:
        return None, None, f"depends on {len(dims)} dynamic dims (exactly one is supported)"
    v = dims[0]
    lo, hi = sym.bounds(v)
    if hi is None:
        return None, None, f"dim {v} has no upper bound"
    return v, (max(1, lo or 1), hi), ""


def _probe_sizes(lo, hi):
    return sorted({lo, min(hi, max(lo, 2)), max(lo, (lo + hi) // 2 | 1), hi})


def rope_table(ctx, cos, sin, seq):
    """f32 [P, D] table (D/2 cosines then D/2 sines per position) from the size-only cos/sin
    subgraphs, evaluated at the bound of ``seq``; checked to be prefix-consistent (row p does not
    depend on the size) and half-duplicated (HF's concat(freqs, freqs)). Returns (Constant, reason)."""
    v, rng, why = _dim_var(cos)
    if v is None or sym.as_expr(seq) != v:
        return None, f"RoPE cos/sin table {why or 'is not indexed by the sequence dim'}"
    lo, hi = rng
    d = None
    try:
        full = [evaluate(t, ctx.params, {v: hi}) for t in (cos, sin)]
        d = full[0].shape[-1]
        full = [np.asarray(t, dtype=np.float32).reshape(-1, d) for t in full]
        if full[0].shape[0] != hi:
            return None, "RoPE cos/sin are not one row per position"
        for n in _probe_sizes(lo, hi):
            for t, ref in zip((cos, sin), full):
                got = np.asarray(evaluate(t, ctx.params, {v: n}), dtype=np.float32).reshape(-1, d)
                if not np.array_equal(got, ref[:n]):
                    return None, f"RoPE table is not prefix-consistent (differs at {v}={n})"
    except (FoldError, ValueError, sym.UnboundVarError) as e:
        if not isinstance(e, FoldError) or "has no data" not in str(e):
            return None, f"RoPE table cannot be evaluated at compile time: {e}"
        full = None  # shape-only model: the table has no data either
    if d is None:
        d = const_int(cos.type.shape[-1])
    half = d // 2
    if full is not None and not all(np.array_equal(t[:, :half], t[:, half:]) for t in full):
        return None, "RoPE cos/sin halves differ (not the rotate_half layout of dev.rope)"
    data = None if full is None else np.ascontiguousarray(
        np.concatenate([full[0][:, :half], full[1][:, :half]], 1).astype(np.float32))
    key = "none" if data is None else hashlib.sha1(data.tobytes()).hexdigest()[:10]
    name = f"dlavm.rope_table.{hi}x{d}.{key}"
    ctx.params.setdefault(name, data)
    return Constant(name, TensorType((sym.as_expr(hi), sym.as_expr(d)), "float32")), ""


def _rope(node, ctx):
    """x * cos + rotate_half(x) * sin on [1, H, S, D] -> dev.rope on [S, H, D]."""
    for a, b in operands(node):
        if not (is_op(a, "mul") and is_op(b, "mul")):
            continue
        for x, cos in operands(a):
            if not (is_float(x) and x.type.ndim == 4 and _batch1_4d(x) and is_size_only(cos)
                    and not is_size_only(x)):
                continue
            for r, sin in operands(b):
                if _rotate_half(r, x) and is_size_only(sin):
                    table, why = rope_table(ctx, cos, sin, x.type.shape[2])
                    if table is None:
                        return ctx.decline(node, why)
                    y = call("dev.rope", token_major(x), table, pos0=0)
                    return head_major(y, node.type.dtype)
    return None


def _strip_repeat_kv(x):
    """HF repeat_kv: reshape(expand(reshape(x, [1,Hkv,1,S,D]), [1,Hkv,r,S,D]), [1,Hkv*r,S,D]) -> x."""
    if not (is_op(x, "reshape") and is_op(x.args[0], "expand") and is_op(x.args[0].args[0], "reshape")):
        return x
    inner = x.args[0].args[0].args[0]
    e = x.args[0]
    if inner.type.ndim == 4 and e.type.ndim == 5 and const_int(e.args[0].type.shape[2]) == 1 \
            and tuple(e.args[0].type.shape) == tuple(inner.type.shape[:2]) + (1,) + tuple(inner.type.shape[2:]):
        return inner
    return x


def mask_kind(ctx, mask, lq, lk, causal: bool):
    """Classify a size-only mask by evaluating it at several sizes (1, 2, a middle odd one and the
    bound): ("causal" | "full", "") when it equals the bottom-right causal mask (resp. keeps every
    key) at every probed size, else (None, reason)."""
    if not is_size_only(mask):
        return None, "attention mask depends on the inputs (not a size-only mask)"
    v, rng, why = _dim_var(mask)
    if v is None:
        return None, f"attention mask {why}"
    kinds = set()
    for n in _probe_sizes(*rng):
        env = {v: n}
        try:
            m = evaluate(mask, ctx.params, env)
            nq, nk = sym.evaluate(lq, env), sym.evaluate(lk, env)
            if m.dtype == np.bool_:
                keep = m
            elif np.all((m == 0) | np.isneginf(m)):
                keep = m == 0
            else:
                return None, "attention mask adds finite biases (not a keep/drop mask)"
            keep = np.broadcast_to(keep, keep.shape[:-2] + (nq, nk)).reshape(-1, nq, nk)
        except (FoldError, ValueError, sym.UnboundVarError) as e:
            return None, f"attention mask cannot be evaluated at compile time: {e}"
        tril = np.tril(np.ones((nq, nk), dtype=bool), nk - nq)
        if causal:
            keep = keep & tril
        if all(np.array_equal(k, tril) for k in keep):
            kinds.add("causal")
        elif keep.all():
            kinds.add("full")
        else:
            return None, f"attention mask is neither causal nor full at {v}={n}"
    if len(kinds) != 1:
        return None, "attention mask changes kind with the sequence length"
    return kinds.pop(), ""


def _attention(node, ctx):
    q, k, v = node.args[:3]
    mask = node.args[3] if len(node.args) > 3 else None
    k, v = _strip_repeat_kv(k), _strip_repeat_kv(v)
    if not all(is_float(t) and _batch1_4d(t) for t in (q, k, v)):
        return ctx.decline(node, "attention needs [1, heads, seq, dim] q/k/v (batch 1) for dev.attention")
    if const_int(q.type.shape[1]) % const_int(k.type.shape[1]):
        return ctx.decline(node, "query heads are not a multiple of key/value heads")
    causal = node.attrs["causal"]
    if mask is not None:
        key = ("mask", mask, q.type.shape[2], k.type.shape[2], causal)
        if key not in ctx.memo:
            ctx.memo[key] = mask_kind(ctx, mask, q.type.shape[2], k.type.shape[2], causal)
        kind, why = ctx.memo[key]
        if kind is None:
            return ctx.decline(node, why)
        causal = kind == "causal"
    d = const_int(q.type.shape[3])
    scale = node.attrs["scale"] if node.attrs["scale"] is not None else 1.0 / math.sqrt(d)
    y = call("dev.attention", token_major(q), token_major(k), token_major(v), causal=causal, scale=scale)
    return head_major(y, node.type.dtype)


# ---------------------------------------------------------------------------------------------
# boundary cancellation

def _roundtrip(node, ctx):
    x = node.args[0]
    out = to_device(x)
    return None if out is node or (is_op(out, "dev.to_device") and out.args[0] is x) else out


PATTERNS = [
    Pattern("linear->mvm", "linear", _linear, "linear(x, W[, b]) -> dev.mvm(bias)"),
    Pattern("relu->mvm.relu", "relu", _relu, "relu(mvm) -> dev.mvm(relu=True)"),
    Pattern("argmax->mvm.argmax", "argmax", _argmax, "argmax(mvm, -1) -> dev.mvm(argmax=True)"),
    Pattern("slice-of-linear", "slice", _slice_of_linear, "columns of a linear -> linear of weight rows"),
    Pattern("rms_norm->rmsnorm", "rms_norm", _rms_norm, "rms_norm -> dev.rmsnorm"),
    Pattern("rmsnorm-decomposed", "mul", _rms_decomposed, "w * (x * rsqrt(mean(x^2) + eps)) -> dev.rmsnorm"),
    Pattern("layer_norm->layernorm", "layer_norm", _layer_norm, "layer_norm -> dev.layernorm"),
    Pattern("silu->act", "silu", _act("silu"), "silu -> dev.act(silu)"),
    Pattern("sigmoid->act", "sigmoid", _act("sigmoid"), "sigmoid -> dev.act(sigmoid)"),
    Pattern("gelu->act", "gelu", _act("gelu"), "gelu (erf or tanh) -> dev.act(gelu)"),
    Pattern("softmax->softmax", "softmax", _softmax, "softmax over the last dim -> dev.softmax"),
    Pattern("gelu-tanh-decomposed", "mul", _gelu_tanh_decomposed, "GPT-2 NewGELU formula -> dev.act(gelu)"),
    Pattern("rope", "add", _rope, "x*cos + rotate_half(x)*sin -> dev.rope"),
    Pattern("attention", "attention", _attention, "GQA attention (+causal mask) -> dev.attention"),
    Pattern("add->eltwise", "add", _eltwise("add"), "same-shape add -> dev.eltwise(add)"),
    Pattern("sub->eltwise", "sub", _eltwise("sub"), "same-shape sub -> dev.eltwise(sub)"),
    Pattern("mul->eltwise", "mul", _eltwise("mul"), "same-shape mul -> dev.eltwise(mul)"),
    Pattern("device-roundtrip", "dev.to_device", _roundtrip, "to_device(to_host(y)) -> y; views stay on device"),
] + [Pattern(r.name, r.op, (lambda node, ctx, _f=r.fn: _f(node)), "canonicalize") for r in CANONICAL_RULES]


def legalize_function(fn, ctx: MatchContext, table=None):
    """Apply the legalization ``table`` (default ``PATTERNS``) to one function."""
    return run_table(fn, PATTERNS if table is None else table, ctx)


@module_pass("legalize")
def legalize(mod: Module) -> Module:
    """Rewrite ATen-level ops to ``dev.*`` ops with the ``PATTERNS`` table (module docstring).

    New weights (RoPE tables, all-ones norm weights) are added to ``mod.params``;
    ``mod.attrs["legalize_stats"]`` counts rule firings and
    ``mod.attrs["host_op_reasons"]`` maps ``op|span`` to why a rule declined.
    """
    params = dict(mod.params)
    ctx = MatchContext(params, dict(mod.attrs), reasons=dict(mod.attrs.get("host_op_reasons", {})))
    out = Module(params=params, attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(legalize_function(f, ctx))
    out.attrs["legalize_stats"] = dict(ctx.stats)
    out.attrs["host_op_reasons"] = ctx.reasons
    return out


__all__ = ["PATTERNS", "Rule", "legalize", "legalize_function", "mask_kind", "rope_table"]
