"""Lowering rules: one function per ``dev.*`` op, selected by target capability.

A rule is registered with :func:`lowering` as ``(op name, requires)`` where
``requires(target) -> bool`` states the capability it needs (a weight format,
a buffer size); :func:`find_rule` returns the first registered rule whose
requirement holds, so a target variant that needs a different strategy adds
a rule with a narrower ``requires`` *before* the generic one, instead of a
per-version copy. A rule gets the :class:`~dlavm.task.lower.LowerContext`
and the node (its output buffer is already allocated) and returns task-IR
statements with operand byte ranges (``reads``/``writes``); wait bits are
assigned later from those ranges (:mod:`dlavm.task.deps`).
"""
from __future__ import annotations

import math

import numpy as np

from dlavm import sym
from dlavm.target import layout, pwl
from dlavm.target.isa import HEAD_DIM_MULTIPLE

from .ir import For, If
from .lower import LowerContext, LoweringError, numel, ub

_RULES: list = []


def lowering(op: str, requires=lambda target: True):
    """Register a rule for ``op`` usable on targets where ``requires(target)``."""
    def deco(fn):
        _RULES.append((op, requires, fn))
        return fn
    return deco


def find_rule(op: str, target):
    for name, req, fn in _RULES:
        if name == op and req(target):
            return fn
    return None


def rule_table() -> list:
    """``[(op, rule name, requirement doc)]`` for documentation and the report."""
    return [(op, fn.__name__, (req.__doc__ or "any target").strip()) for op, req, fn in _RULES]


# --- mvm ------------------------------------------------------------------------------------------

def _pack_weight(ctx: LowerContext, w, fmt: str):
    """(weight addr, scale addr) of weight constant ``w`` packed in ``fmt``."""
    n, k = (int(d) for d in w.type.shape)
    g = ctx.target.int4_group
    wbytes, sbytes = layout.weight_bytes(fmt, n, k, g)
    cache: dict = {}

    def quant():
        if "q" not in cache:
            data = ctx.param(w)
            if data is None:
                cache["q"] = (None, None)
            elif fmt == "int4":
                cache["q"] = layout.quantize_pack_int4(data, g)
            elif fmt == "int8":
                cache["q"] = layout.quantize_int8(data)
            else:
                cache["q"] = (np.asarray(data, np.float32).astype(np.float16), None)
            if data is not None and ctx.on_progress:
                ctx.packed += 1
                ctx.on_progress("pack", ctx.packed, None, f"{w.name} -> {fmt} ({(wbytes + sbytes) / 2**20:.2f} MiB)")
        return cache["q"]

    wa = ctx.blob(f"{w.name}.{fmt}", lambda: quant()[0], wbytes)
    sa = ctx.blob(f"{w.name}.{fmt}.scale", lambda: quant()[1], sbytes) if sbytes else 0
    return wa, sa


def _affine(ctx: LowerContext, b, n: int) -> int:
    def make():
        data = ctx.param(b)
        if data is None:
            return None
        return np.stack([np.ones(n, np.float32), np.asarray(data, np.float32)]).astype(np.float16)
    return ctx.blob(f"{b.name}.aff", make, 4 * n)


def mvm_rows_per_tile(target, k: int) -> int:
    """Largest token tile with ``m * k * 2 <= act_buffer_bytes`` (doc/isa.md section 8)."""
    return target.act_buffer_bytes // (2 * k)


@lowering("dev.mvm")
def lower_mvm(ctx: LowerContext, node):
    """Tiles the token axis so each tile's activations fit ``act_buffer_bytes``.

    One instruction when the bound of M fits; otherwise a loop over
    ``ceil(M / Mt)`` tiles whose last tile has ``min(Mt, M - i*Mt)`` rows.
    Every tile streams the whole weight (the ISA keeps no weights on chip
    between instructions), so the token loop is the only loop and its order
    does not change the weight traffic.
    """
    a = node.attrs
    x, w = node.args[0], node.args[1]
    fmt = a["wfmt"]
    if fmt not in ctx.target.weight_formats:
        raise LoweringError(f"dev.mvm: weight format {fmt!r} is not supported by target "
                            f"'{ctx.target.name}' (it has {list(ctx.target.weight_formats)})")
    n, k = (int(d) for d in w.type.shape)
    m = numel(x.type.shape[:-1])
    wa, sa = _pack_weight(ctx, w, fmt)
    extra = list(node.args[2:])
    aff = _affine(ctx, extra.pop(0), n) if a["bias"] else 0
    resid = ctx.addr(extra.pop(0)) if a["res"] != "none" else 0
    xa, out = ctx.addr(x), ctx.addr(node)
    orow = 8 if a["argmax"] else 2 * n
    mt = mvm_rows_per_tile(ctx.target, k)
    if mt < 1:
        raise LoweringError(f"dev.mvm: K={k} does not fit the activation buffer "
                            f"({ctx.target.act_buffer_bytes} bytes) even for one token")
    wbytes, sbytes = layout.weight_bytes(fmt, n, k, ctx.target.int4_group)

    def one(mi, r0):
        reads = [(xa + r0 * 2 * k, mi * 2 * k), (wa, wbytes), (sa, sbytes), (aff, 4 * n if aff else 0)]
        if resid:
            reads.append((resid + r0 * 2 * n, mi * 2 * n))
        return ctx.emit("mvm", reads=reads, writes=[(out + r0 * orow, mi * orow)],
                        comment=f"{fmt} [{m}x{k}]x[{n}x{k}]^T",
                        wfmt=fmt, affine=bool(a["bias"]), res=a["res"], relu=a["relu"], argmax=a["argmax"],
                        x=xa + r0 * 2 * k, w=wa, wscale=sa, out=out + r0 * orow, aff=aff,
                        resid=resid + r0 * 2 * n if resid else 0, m=mi, k=k, n=n)

    if ub(m) <= mt:
        return [one(m, 0)]
    trips = sym.ceildiv(m, mt)
    i = sym.Var(f"i{ctx.node_index}", 0, ub(trips) - 1)
    return [For(i, trips, (one(sym.smin(sym.const(mt), m - i * mt), i * mt),))]


# --- SFU ------------------------------------------------------------------------------------------

@lowering("dev.rmsnorm")
def lower_rmsnorm(ctx, node):
    x, g = node.args
    c = int(x.type.shape[-1])
    rows = numel(x.type.shape[:-1])
    src, dst, ga = ctx.addr(x), ctx.addr(node), ctx.fp16_operand(g)
    return [ctx.emit("rmsnorm", reads=[(src, rows * c * 2), (ga, c * 2)], writes=[(dst, rows * c * 2)],
                     src=src, dst=dst, gamma=ga, rows=rows, cols=c, eps=float(node.attrs["eps"]))]


@lowering("dev.layernorm")
def lower_layernorm(ctx, node):
    x, g, b = node.args
    c = int(x.type.shape[-1])
    rows = numel(x.type.shape[:-1])
    src, dst, ga, ba = ctx.addr(x), ctx.addr(node), ctx.fp16_operand(g), ctx.fp16_operand(b)
    return [ctx.emit("layernorm", reads=[(src, rows * c * 2), (ga, c * 2), (ba, c * 2)],
                     writes=[(dst, rows * c * 2)], src=src, dst=dst, gamma=ga, beta=ba, rows=rows, cols=c,
                     eps=float(node.attrs["eps"]))]


@lowering("dev.eltwise")
def lower_eltwise(ctx, node):
    a, b = node.args
    count = numel(node.type.shape)
    aa, ba, dst = ctx.fp16_operand(a), ctx.fp16_operand(b), ctx.addr(node)
    return [ctx.emit("eltwise", reads=[(aa, count * 2), (ba, count * 2)], writes=[(dst, count * 2)],
                     fn=node.attrs["fn"], a=aa, b=ba, dst=dst, count=count)]


@lowering("dev.act")
def lower_act(ctx, node):
    t = pwl.table(node.attrs["fn"])
    ta = ctx.blob(f"pwl.{t.name}", lambda: np.frombuffer(t.to_bytes(), np.uint8), len(t.to_bytes()))
    count = numel(node.type.shape)
    src, dst = ctx.addr(node.args[0]), ctx.addr(node)
    return [ctx.emit("act", reads=[(src, count * 2), (ta, len(t.to_bytes()))], writes=[(dst, count * 2)],
                     src=src, dst=dst, table=ta, count=count, nseg=t.nseg, lo=t.lo_f32, inv_step=t.inv_step,
                     comment=t.name)]


@lowering("dev.softmax")
def lower_softmax(ctx, node):
    shape = node.type.shape
    cols = shape[-1]
    rows = numel(shape[:-1])
    m = shape[-2] if len(shape) >= 2 else sym.const(1)
    src, dst = ctx.addr(node.args[0]), ctx.addr(node)
    nb = rows * cols * 2
    return [ctx.emit("softmax", reads=[(src, nb)], writes=[(dst, nb)], in_fp32=False,
                     causal=bool(node.attrs["causal"]), src=src, dst=dst, rows=rows, cols=cols, m=m,
                     pos0=sym.as_expr(node.attrs["pos0"]))]


@lowering("dev.rope")
def lower_rope(ctx, node):
    x, table = node.args
    mtok, h, d = x.type.shape
    p, dd = (int(v) for v in table.type.shape)
    pos0 = sym.as_expr(node.attrs["pos0"])
    last = ub(pos0 + mtok)
    if last > min(p, ctx.target.max_seq_len):
        raise LoweringError(f"dev.rope: positions up to {last} exceed the table ({p}) or the target's "
                            f"max_seq_len ({ctx.target.max_seq_len}); lower the model's sequence bound")
    ta = ctx.blob(f"{table.name}.f32", lambda: _f32(ctx.param(table)), p * dd * 4)
    src, dst = ctx.addr(x), ctx.addr(node)
    nb = numel(x.type.shape) * 2
    return [ctx.emit("rope", reads=[(src, nb), (ta, p * dd * 4)], writes=[(dst, nb)],
                     interleaved=bool(node.attrs["interleaved"]), src=src, dst=dst, table=ta, m=mtok,
                     heads=int(h), d=int(d), pos0=pos0)]


def _f32(data):
    return None if data is None else np.asarray(data, np.float32)


# --- attention ------------------------------------------------------------------------------------

def _check_head_dim(d: int) -> None:
    if d % HEAD_DIM_MULTIPLE:
        raise LoweringError(f"dev.attention: head dim {d} must be a multiple of {HEAD_DIM_MULTIPLE} "
                            "(doc/isa.md section 8); the pad_heads pass pads attentions fed by q/k/v "
                            "projections, see attrs['pad_heads_declined'] for why this one was not")


@lowering("dev.attention")
def lower_attention(ctx, node):
    """kv_append K and V into a scratch cache, then mat_qk -> softmax (causal, pos0) -> mat_pv.

    The scratch cache has capacity ``upper_bound(L)`` positions per head, so
    one placement serves every length; scores are fp32 ``[H, M, L]``. The
    caches and score buffers are shared by every attention of the function.
    """
    if node.attrs["cache"] is not None:
        return _lower_cached_attention(ctx, node)
    q, k, v = node.args
    mq, h, d = q.type.shape
    lk, hkv, _ = k.type.shape
    h, hkv, d = int(h), int(hkv), int(d)
    cap = ub(lk)
    if cap > ctx.target.max_seq_len:
        raise LoweringError(f"dev.attention: key length bound {cap} exceeds the target's max_seq_len "
                            f"({ctx.target.max_seq_len})")
    _check_head_dim(d)
    stride = cap * d * 2
    kc = ctx.scratch("attn.kcache", hkv * stride)
    vc = ctx.scratch("attn.vcache", hkv * stride)
    scores = ctx.scratch("attn.scores", ub(h * mq * lk) * 4)
    probs = ctx.scratch("attn.probs", ub(h * mq * lk) * 2)
    qa, ka, va, out = ctx.addr(q), ctx.addr(k), ctx.addr(v), ctx.addr(node)
    pos0 = node.attrs["pos0"]
    pos0 = lk - mq if pos0 is None else sym.as_expr(pos0)
    kvn = lk * hkv * d * 2
    scale = node.attrs["scale"]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    kv = dict(m=lk, kv_heads=hkv, d=d, pos=0, head_stride=stride, capacity=cap)
    att = dict(m=mq, heads=h, kv_heads=hkv, l=lk, d=d)
    return [
        ctx.emit("kv_append", reads=[(ka, kvn)], writes=[(kc, hkv * stride)], src=ka, dst=kc, **kv),
        ctx.emit("kv_append", reads=[(va, kvn)], writes=[(vc, hkv * stride)], src=va, dst=vc, **kv),
        ctx.emit("mat_qk", reads=[(qa, mq * h * d * 2), (kc, hkv * stride)], writes=[(scores, h * mq * lk * 4)],
                 out_fp32=True, q=qa, kc=kc, out=scores, k_stride=stride, scale=scale, **att),
        ctx.emit("softmax", reads=[(scores, h * mq * lk * 4)], writes=[(probs, h * mq * lk * 2)], in_fp32=True,
                 causal=bool(node.attrs["causal"]), src=scores, dst=probs, rows=h * mq, cols=lk, m=mq, pos0=pos0),
        ctx.emit("mat_pv", reads=[(probs, h * mq * lk * 2), (vc, hkv * stride)], writes=[(out, mq * h * d * 2)],
                 p=probs, vc=vc, out=out, v_stride=stride, **att),
    ]


def _lower_cached_attention(ctx, node):
    """Attention over a persistent KV cache (doc/llm.md): kv_append the M new K/V rows at
    ``pos = kv_len - M`` into the layer's caches, then mat_qk / softmax / mat_pv over ``kv_len`` keys.

    The caches (``kv.<cache>.k`` / ``.v``, fp16 ``[HKV, capacity, D]``) are persistent buffers shared by
    every entry, so what prefill appends, decode reads.
    """
    q, k, v = node.args
    mq, h, d = q.type.shape
    _, hkv, _ = k.type.shape
    h, hkv, d = int(h), int(hkv), int(d)
    a = node.attrs
    cap, lk = int(a["capacity"]), sym.as_expr(a["kv_len"])
    if cap > ctx.target.max_seq_len:
        raise LoweringError(f"dev.attention: KV cache capacity {cap} exceeds the target's max_seq_len "
                            f"({ctx.target.max_seq_len}); lower the max context")
    if ub(lk) > cap:
        raise LoweringError(f"dev.attention: key length bound {ub(lk)} exceeds the cache capacity {cap}")
    _check_head_dim(d)
    stride = cap * d * 2
    kc = ctx.persistent(f"kv.{a['cache']}.k", hkv * stride)
    vc = ctx.persistent(f"kv.{a['cache']}.v", hkv * stride)
    scores = ctx.scratch("attn.scores", ub(h * mq * lk) * 4)
    probs = ctx.scratch("attn.probs", ub(h * mq * lk) * 2)
    qa, ka, va, out = ctx.addr(q), ctx.addr(k), ctx.addr(v), ctx.addr(node)
    pos = lk - mq
    kvn = mq * hkv * d * 2
    scale = a["scale"]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    kv = dict(m=mq, kv_heads=hkv, d=d, pos=pos, head_stride=stride, capacity=cap)
    att = dict(m=mq, heads=h, kv_heads=hkv, l=lk, d=d)
    append = [
        ctx.emit("kv_append", reads=[(ka, kvn)], writes=[(kc, hkv * stride)], src=ka, dst=kc, **kv),
        ctx.emit("kv_append", reads=[(va, kvn)], writes=[(vc, hkv * stride)], src=va, dst=vc, **kv),
    ]
    whole = [
        ctx.emit("mat_qk", reads=[(qa, mq * h * d * 2), (kc, hkv * stride)], writes=[(scores, h * mq * lk * 4)],
                 out_fp32=True, q=qa, kc=kc, out=scores, k_stride=stride, scale=scale, **att),
        ctx.emit("softmax", reads=[(scores, h * mq * lk * 4)], writes=[(probs, h * mq * lk * 2)], in_fp32=True,
                 causal=bool(a["causal"]), src=scores, dst=probs, rows=h * mq, cols=lk, m=mq, pos0=pos),
        ctx.emit("mat_pv", reads=[(probs, h * mq * lk * 2), (vc, hkv * stride)], writes=[(out, mq * h * d * 2)],
                 p=probs, vc=vc, out=out, v_stride=stride, **att),
    ]
    chunks = next((c for c in DECODE_HEAD_CHUNKS if hkv % c == 0 and c <= hkv), 1)
    if chunks == 1:
        return append + whole
    decode = _decode_attention_pipeline(ctx, chunks, qa, kc, vc, out, h, hkv, d, cap, lk, pos, stride, scale,
                                        bool(a["causal"]))
    if sym.bounds(sym.as_expr(mq))[0] > 1:
        return append + whole
    if ub(mq) == 1:
        return append + decode
    return append + [If(sym.eq(mq, 1), tuple(decode), tuple(whole))]


#: Head chunks of the one-token (decode) attention pipeline, first that divides the kv heads wins.
DECODE_HEAD_CHUNKS = (4, 2)


def _decode_attention_pipeline(ctx, chunks, qa, kc, vc, out, h, hkv, d, cap, lk, pos, stride, scale, causal):
    """One query token: the heads in ``chunks`` groups (whole GQA groups), issued as
    ``qk0 sm0 qk1 pv0 sm1 qk2 pv1 ... pv_last`` so that each group's softmax (SFU) runs while the
    mat unit computes the next group's scores. With one token, a group's queries and outputs are
    contiguous slices of ``[1, H, D]``; each group has its own score/probability buffers (fixed
    offsets), so the wait bits order only what depends. Same numerics as the whole-head form
    (heads are independent)."""
    hkc = hkv // chunks
    hc = hkc * (h // hkv)
    sbytes = -(-hc * cap * 4 // 64) * 64
    pbytes = -(-hc * cap * 2 // 64) * 64
    scores = ctx.scratch("attn.decode_scores", chunks * sbytes)
    probs = ctx.scratch("attn.decode_probs", chunks * pbytes)
    att = dict(m=1, heads=hc, kv_heads=hkc, l=lk, d=d)
    qk, sm, pv = [], [], []
    for c in range(chunks):
        q_c, o_c = qa + c * hc * d * 2, out + c * hc * d * 2
        k_c, v_c = kc + c * hkc * stride, vc + c * hkc * stride
        s_c, p_c = scores + c * sbytes, probs + c * pbytes
        qk.append(ctx.emit("mat_qk", reads=[(q_c, hc * d * 2), (k_c, hkc * stride)], writes=[(s_c, hc * lk * 4)],
                           out_fp32=True, q=q_c, kc=k_c, out=s_c, k_stride=stride, scale=scale, **att,
                           comment=f"heads {c * hc}..{(c + 1) * hc - 1}"))
        sm.append(ctx.emit("softmax", reads=[(s_c, hc * lk * 4)], writes=[(p_c, hc * lk * 2)], in_fp32=True,
                           causal=causal, src=s_c, dst=p_c, rows=hc, cols=lk, m=1, pos0=pos))
        pv.append(ctx.emit("mat_pv", reads=[(p_c, hc * lk * 2), (v_c, hkc * stride)], writes=[(o_c, hc * d * 2)],
                           p=p_c, vc=v_c, out=o_c, v_stride=stride, **att))
    order = [qk[0], sm[0]]
    for c in range(1, chunks):
        order += [qk[c], pv[c - 1], sm[c]]
    return order + [pv[-1]]


__all__ = ["lowering", "find_rule", "rule_table", "mvm_rows_per_tile"]
