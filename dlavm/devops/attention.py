"""``dev.attention``: softmax(q k^T * scale) v on the mat unit and the SFU (doc/isa.md 7.5, 7.8).

q f16 [M, H, D], k/v f16 [L, HKV, D] (grouped-query: HKV divides H). The
lowering appends K and V to a KV cache (a scratch one, or with ``cache`` the
persistent cache of doc/llm.md), then ``mat_qk`` with fp32 scores, the
causal ``softmax`` on fp32 input, and ``mat_pv``; the reference kernel is
that composition. Legalization recognises HF's GQA attention (with
``repeat_kv``) and classifies its mask by evaluating it at several sizes.
"""
from __future__ import annotations

import math

import numpy as np

from .. import sym
from ..ir import IRTypeError, Literal, TensorType, attr, call
from ..passes.fold import FoldError, evaluate, free_dims, is_size_only
from ..passes.patterns_match import Pat, Pattern, const_int, is_op, permute
from ..target.isa import HEAD_DIM_MULTIPLE
from ..task.ir import For, If
from ..task.lower import ub
from .rope import batch1_4d, dim_var, head_major, probe_sizes, token_major
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    q, k, v = (f16(t, "dev.attention", n) for t, n in zip(types, "qkv"))
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise IRTypeError(f"op 'dev.attention': q, k, v must be [tokens, heads, dim], got {q}, {k}, {v}")
    if k.shape != v.shape or q.shape[2] != k.shape[2]:
        raise IRTypeError(f"op 'dev.attention': k {k} and v {v} must match, and q {q} must share the head dim")
    h, hkv = q.shape[1], k.shape[1]
    if attrs["cache"] is not None and (attrs["kv_len"] is None or attrs["capacity"] < 1):
        raise IRTypeError("op 'dev.attention': a cached attention needs kv_len and a positive capacity")
    if not (h.is_const and hkv.is_const and h.value % hkv.value == 0):
        raise IRTypeError(f"op 'dev.attention': q heads {h} must be a multiple of kv heads {hkv}")
    return TensorType(q.shape, "float16")


# --- legalization ---------------------------------------------------------------------------------

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
    if not free_dims(mask):
        envs = [{}]   # static sizes (torch.compile's first compilation): the one mask there is
    else:
        v, rng, why = dim_var(mask)
        if v is None:
            return None, f"attention mask {why}"
        envs = [{v: n} for n in probe_sizes(*rng)]
    kinds = set()
    for env in envs:
        where = ", ".join(f"{k}={n}" for k, n in env.items()) or "its static size"
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
        if tril.all() and keep.all():
            continue  # a size where the causal mask keeps every key (one query): both kinds agree here
        if all(np.array_equal(k, tril) for k in keep):
            kinds.add("causal")
        elif keep.all():
            kinds.add("full")
        else:
            return None, f"attention mask is neither causal nor full at {where}"
    if len(kinds) > 1:
        return None, "attention mask changes kind with the sequence length"
    return (kinds.pop() if kinds else "full"), ""  # none: causal and full agree at every size


def _attention(node, ctx):
    q, k, v = node.args[:3]
    mask = node.args[3] if len(node.args) > 3 else None
    k, v = _strip_repeat_kv(k), _strip_repeat_kv(v)
    if not all(batch1_4d(t) for t in (q, k, v)):
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


def _neg_inf(x) -> bool:
    return isinstance(x, Literal) and isinstance(x.value, float) and math.isinf(x.value) and x.value < 0


def _host_side(x, ctx):
    """``x`` with a legalized single-use ``dev.to_host(dev.op(dev.to_device(h)))`` seen as the op on ``h``:
    (op name, the op's call or its device call, its host input), or (None, None, None)."""
    if is_op(x, "dev.to_host") and ctx.single_use(x) and is_op(x.args[0], "dev.softmax") \
            and ctx.single_use(x.args[0]) and is_op(x.args[0].args[0], "dev.to_device"):
        return "softmax", x.args[0], x.args[0].args[0].args[0]
    if is_op(x, "softmax") and ctx.single_use(x):
        return "softmax", x, x.args[0]
    return None, None, None


def _scores(s, ctx):
    """``(q, k, scale)`` of ``s = q @ k.transpose(-2, -1)`` times a scale (``* c``, ``c *`` or ``/ c``), or None."""
    scale = 1.0
    if is_op(s, "mul") and ctx.single_use(s):
        a, b = s.args
        mm, lit = (a, b) if isinstance(b, Literal) else (b, a)
        if not isinstance(lit, Literal) or isinstance(lit.value, bool):
            return None
        s, scale = mm, float(lit.value)
    elif is_op(s, "div") and ctx.single_use(s) and s.attrs["rounding_mode"] is None and \
            isinstance(s.args[1], Literal) and not isinstance(s.args[1].value, bool) and s.args[1].value != 0:
        s, scale = s.args[0], 1.0 / float(s.args[1].value)
    if not (is_op(s, "matmul") and ctx.single_use(s)):
        return None
    q, kt = s.args
    if kt.type.ndim != 4:
        return None
    return q, permute(kt, (0, 1, 3, 2)), scale  # k = (k^T)^T: composes with the permute that made k^T


def _written_attention(node, ctx, p, v):
    """``softmax(masked_fill(q @ k^T * scale, drop, -inf)) @ v`` -> dev.attention, when the dropped
    positions are a size-only mask proven causal (or there is no mask: full attention)."""
    kind, sm, s = _host_side(p, ctx)
    if kind is None:
        return None
    sm_axis = sm.attrs["axis"] if sm.op.name == "softmax" else -1
    if sm_axis % s.type.ndim != s.type.ndim - 1:
        return None
    keep = None
    if is_op(s, "where") and ctx.single_use(s) and _neg_inf(s.args[1]) and s.args[0].type.dtype == "bool":
        keep = call("logical_not", s.args[0])   # masked_fill(drop, -inf): the kept positions are ~drop
        s = s.args[2]
    qks = _scores(s, ctx)
    if qks is None:
        return None
    q, k, scale = qks
    if not (q.type.ndim == k.type.ndim == v.type.ndim == 4):
        return None
    causal = False
    if keep is not None:
        key = ("mask", keep.args[0], q.type.shape[2], k.type.shape[2], False)
        if key not in ctx.memo:
            ctx.memo[key] = mask_kind(ctx, keep, q.type.shape[2], k.type.shape[2], False)
        mkind, why = ctx.memo[key]
        if mkind is None:
            return ctx.decline(node, f"hand-written attention left on the host: {why}")
        causal = mkind == "causal"
    att = call("attention", q, k, v, causal=causal, scale=scale, span=node.span)
    if att.type != node.type:
        return None
    return _attention(att, ctx)


PATTERNS = (
    Pattern("attention", Pat("attention"), _attention, "GQA attention (+causal mask) -> dev.attention",
            priority=30),
    Pattern("attention-written", Pat("matmul", Pat.any("p"), Pat.any("v")), _written_attention,
            "softmax(masked_fill(q @ k^T * scale, ~tril, -inf)) @ v -> dev.attention (mask proven causal)",
            priority=10),
)


# --- reference kernel -----------------------------------------------------------------------------

def reference(args, attrs, ev):
    import torch

    from ..reference.device_numerics import numerics, softmax_rows, tree_sum
    if attrs.get("cache") is not None:
        raise NotImplementedError(f"dev.attention with the persistent KV cache {attrs['cache']!r} keeps state "
                                  "between calls: run it on the runtime (dlavm.runtime.generate), not the "
                                  "stateless reference executor")
    lanes = numerics(attrs, "tree_lanes", "dev.attention")
    q, k, v = args
    m, h, d = q.shape
    lk, hkv, _ = k.shape
    g = h // hkv
    qh = q.float().permute(1, 0, 2)                                  # [H, M, D]
    kh = k.float().permute(1, 0, 2).repeat_interleave(g, 0)          # [H, L, D]
    vh = v.float().permute(1, 0, 2).repeat_interleave(g, 0)
    scale = np.float32(attrs["scale"])
    s = torch.stack([tree_sum(qh[i][:, None, :] * kh[i][None, :, :], lanes) for i in range(h)]) * scale
    pos0 = lk - m if attrs["pos0"] is None else ev(attrs["pos0"])
    p = softmax_rows(s, attrs["causal"], pos0, lanes).float()              # [H, M, L]
    o = torch.stack([tree_sum(p[i][:, None, :] * vh[i].T[None, :, :], lanes) for i in range(h)])  # [H, M, D]
    return o.permute(1, 0, 2).to(torch.float16).contiguous()


# --- lowering -------------------------------------------------------------------------------------

def check(node, target) -> None:
    """Key length / cache capacity against ``max_seq_len``; the head dim against the mat unit's rows."""
    q, k, _ = node.args
    d = int(q.type.shape[2])
    a = node.attrs
    if a["cache"] is not None:
        cap, lk = int(a["capacity"]), ub(sym.as_expr(a["kv_len"]))
        if cap > target.max_seq_len:
            raise ValueError(f"dev.attention: KV cache capacity {cap} exceeds the max_seq_len "
                             f"({target.max_seq_len}) of target '{target.name}'; lower the max context")
        if lk > cap:
            raise ValueError(f"dev.attention: key length bound {lk} exceeds the cache capacity {cap}")
    elif ub(k.type.shape[0]) > target.max_seq_len:
        raise ValueError(f"dev.attention: key length bound {ub(k.type.shape[0])} exceeds the max_seq_len "
                         f"({target.max_seq_len}) of target '{target.name}'")
    if d % HEAD_DIM_MULTIPLE:
        raise ValueError(f"dev.attention: head dim {d} must be a multiple of {HEAD_DIM_MULTIPLE} "
                         "(doc/isa.md section 8); the pad_heads pass pads attentions fed by q/k/v "
                         "projections, see attrs['pad_heads_declined'] for why this one was not")



#: Bytes the fp32 scores and fp16 probabilities of one query-row tile may take (every head, the whole
#: key bound): the row tile of :func:`row_tile`. 64 MiB keeps the Llama-2-7B shape's attention scratch
#: O(ctx) (64 rows at 4096 positions) while smaller models keep one tile, i.e. one instruction triple.
ATTENTION_SCRATCH_BYTES = 64 << 20


def row_tile(heads: int, keys: int, rows: int) -> int:
    """Query rows per ``mat_qk -> softmax -> mat_pv`` triple: ``rows`` (the bound of M) when all of
    them fit :data:`ATTENTION_SCRATCH_BYTES` with ``keys`` (the bound of L) scores each, else the largest
    power of two that fits (at least 1). Scratch is then ``heads * tile * keys * 6`` bytes: linear in
    the context, not quadratic (doc/memory.md)."""
    per_row = heads * keys * 6
    if rows * per_row <= ATTENTION_SCRATCH_BYTES:
        return max(rows, 1)
    t = 1
    while 2 * t * per_row <= ATTENTION_SCRATCH_BYTES:
        t *= 2
    return t


def _row_tiles(ctx, qa, out, kc, vc, mq, h, hkv, d, lk, pos0, stride, scale, causal) -> list:
    """``mat_qk -> softmax -> mat_pv`` over the ``mq`` query rows in tiles of :func:`row_tile` rows:
    one triple when the bound fits, else a loop whose tile ``i`` takes rows ``[i*T, min((i+1)*T, mq))``
    (query and output rows are contiguous ``[M, H, D]`` slices) at positions from ``pos0 + i*T``.
    Rows are independent (each softmax row sees its own keys), so the result is the untiled one bit
    for bit; each tile reads every key (``l = lk``) as the untiled form does."""
    cap_rows = ub(mq)
    t = row_tile(h, ub(lk), cap_rows)
    scores = ctx.scratch("attn.scores", ub(h * sym.smin(sym.const(t), mq) * lk) * 4)
    probs = ctx.scratch("attn.probs", ub(h * sym.smin(sym.const(t), mq) * lk) * 2)
    row = h * d * 2

    def triple(m, r0, p0):
        att = dict(m=m, heads=h, kv_heads=hkv, l=lk, d=d)
        return (
            ctx.emit("mat_qk", out_fp32=True, q=qa + r0 * row, kc=kc, out=scores, k_stride=stride, scale=scale,
                     **att),
            ctx.emit("softmax", in_fp32=True, causal=causal, src=scores, dst=probs, rows=h * m, cols=lk, m=m,
                     pos0=p0),
            ctx.emit("mat_pv", p=probs, vc=vc, out=out + r0 * row, v_stride=stride, **att),
        )

    if cap_rows <= t:
        return list(triple(mq, 0, pos0))
    trips = sym.ceildiv(mq, t)
    i = sym.Var(f"r{ctx.node_index}", 0, ub(trips) - 1)
    return [For(i, trips, triple(sym.smin(sym.const(t), mq - i * t), i * t, pos0 + i * t))]


def lower(ctx, node):
    """kv_append K and V into a scratch cache, then mat_qk -> softmax (causal, pos0) -> mat_pv over
    query-row tiles (:func:`_row_tiles`).

    The scratch cache has capacity ``upper_bound(L)`` positions per head, so
    one placement serves every length; scores are fp32 ``[H, T, L]`` for a
    tile of T query rows. The caches and score buffers are scratch shared by
    every attention of every entry (doc/memory.md).
    """
    if node.attrs["cache"] is not None:
        return _lower_cached_attention(ctx, node)
    q, k, v = node.args
    mq, h, d = q.type.shape
    lk, hkv, _ = k.type.shape
    h, hkv, d = int(h), int(hkv), int(d)
    cap = ub(lk)
    stride = cap * d * 2
    kc = ctx.scratch("attn.kcache", hkv * stride)
    vc = ctx.scratch("attn.vcache", hkv * stride)
    qa, ka, va, out = ctx.addr(q), ctx.addr(k), ctx.addr(v), ctx.addr(node)
    pos0 = node.attrs["pos0"]
    pos0 = lk - mq if pos0 is None else sym.as_expr(pos0)
    scale = node.attrs["scale"]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    kv = dict(m=lk, kv_heads=hkv, d=d, pos=0, head_stride=stride, capacity=cap)
    return [
        ctx.emit("kv_append", src=ka, dst=kc, **kv),
        ctx.emit("kv_append", src=va, dst=vc, **kv),
        *_row_tiles(ctx, qa, out, kc, vc, mq, h, hkv, d, lk, pos0, stride, scale, bool(node.attrs["causal"])),
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
    stride = cap * d * 2
    kc, vc = (_cache_slot(ctx, a, kind, hkv * stride) for kind in "kv")
    qa, ka, va, out = ctx.addr(q), ctx.addr(k), ctx.addr(v), ctx.addr(node)
    pos = lk - mq
    scale = a["scale"]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    kv = dict(m=mq, kv_heads=hkv, d=d, pos=pos, head_stride=stride, capacity=cap)
    append = [
        ctx.emit("kv_append", src=ka, dst=kc, **kv),
        ctx.emit("kv_append", src=va, dst=vc, **kv),
    ]
    whole = _row_tiles(ctx, qa, out, kc, vc, mq, h, hkv, d, lk, pos, stride, scale, bool(a["causal"]))
    if _HeadGroups(h, hkv, cap).chunks == 1:
        return append + whole
    decode = _decode_attention_pipeline(ctx, qa, kc, vc, out, h, hkv, d, cap, lk, pos, stride, scale,
                                        bool(a["causal"]))
    if sym.bounds(sym.as_expr(mq))[0] > 1:
        return append + whole
    if ub(mq) == 1:
        return append + decode
    return append + [If(sym.eq(mq, 1), tuple(decode), tuple(whole))]


def _cache_base(ctx, a, kind: str, slot_bytes: int):
    """Address of the K (``kind`` "k") or V cache: the persistent buffer ``kv.<cache>.<kind>`` of ``slots``
    slots of ``slot_bytes`` (batched decode, doc/llm.md)."""
    return ctx.persistent(f"kv.{a['cache']}.{kind}", a["slots"] * slot_bytes)


def _cache_slot(ctx, a, kind: str, slot_bytes: int):
    """Address of the K or V cache slot of the entry's sequence (:func:`_cache_base`): ``slot`` (a state
    dim) picks one, slot 0 without it."""
    base = _cache_base(ctx, a, kind, slot_bytes)
    return base if a["slot"] is None else base + sym.as_expr(a["slot"]) * slot_bytes


def lower_attention(ctx, node):
    """``dev.attention``'s lowering: one token of each of several sequences (``row_ctx``, batched decode)
    by :func:`_lower_batched_attention`, anything else by :func:`lower`."""
    if node.attrs["row_ctx"] is not None:
        return _lower_batched_attention(ctx, node)
    return lower(ctx, node)


def _lower_batched_attention(ctx, node):
    """Batched decode (doc/llm.md): row ``r`` of q/k/v is one new token of the sequence in cache slot ``r``,
    with ``row_ctx[r]`` keys after the call. Per row, guarded by ``batch > r`` (row 0 always runs):
    kv_append its K/V at ``row_ctx[r] - 1`` into slot ``r``, then per group of heads (the decode
    pipeline's chunks) mat_qk / softmax / mat_pv over the slot's ``row_ctx[r]`` keys. The (row, head
    group) units are issued as one pipeline ``qk0 sm0 qk1 pv0 sm1 ...`` with a score/probability buffer
    each, so the SFU's softmax of one unit runs while the mat unit streams the next unit's keys. Each
    row computes exactly what the one-token decode of its sequence alone computes (same instructions
    on the same operands: rows and heads are independent)."""
    q, k, v = node.args
    rows, h, d = q.type.shape
    _, hkv, _ = k.type.shape
    h, hkv, d = int(h), int(hkv), int(d)
    a = node.attrs
    cap = int(a["capacity"])
    stride = cap * d * 2
    slot_bytes = hkv * stride
    row_ctx = tuple(sym.as_expr(c) for c in a["row_ctx"])
    if ub(rows) > len(row_ctx) or len(row_ctx) > a["slots"]:
        raise ValueError(f"dev.attention: {ub(rows)} rows need a kv length each ({len(row_ctx)} given) and "
                         f"a cache slot each ({a['slots']} slots)")
    kc, vc = (_cache_base(ctx, a, kind, slot_bytes) for kind in "kv")
    qa, ka, va, out = ctx.addr(q), ctx.addr(k), ctx.addr(v), ctx.addr(node)
    scale = a["scale"]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    g = _HeadGroups(h, hkv, cap)
    nrows = ub(rows)
    scores = ctx.scratch("attn.batch_scores", nrows * g.chunks * g.sbytes)
    probs = ctx.scratch("attn.batch_probs", nrows * g.chunks * g.pbytes)

    def guard(r, insn):
        return insn if r == 0 else If(sym.gt(rows, r), (insn,), ())

    append, units = [], []
    for r in range(nrows):
        lk = row_ctx[r]
        kv = dict(m=1, kv_heads=hkv, d=d, pos=lk - 1, head_stride=stride, capacity=cap)
        append += [guard(r, ctx.emit("kv_append", src=ka + r * hkv * d * 2, dst=kc + r * slot_bytes, **kv,
                                     comment=f"row {r}")),
                   guard(r, ctx.emit("kv_append", src=va + r * hkv * d * 2, dst=vc + r * slot_bytes, **kv))]
        units += [tuple(guard(r, insn) for insn in unit) for unit in g.units(
            ctx, qa + r * h * d * 2, kc + r * slot_bytes, vc + r * slot_bytes, out + r * h * d * 2, d, lk, lk - 1,
            stride, scale, bool(a["causal"]), scores + r * g.chunks * g.sbytes, probs + r * g.chunks * g.pbytes,
            f"row {r} ")]
    return append + _pipelined(units)


#: Head chunks of the one-token (decode) attention pipeline, first that divides the kv heads wins.
DECODE_HEAD_CHUNKS = (4, 2)


class _HeadGroups:
    """The one-token attention's head groups: ``chunks`` groups of ``hkc`` kv heads (``hc`` query heads,
    whole GQA groups), each with its own fp32 score and fp16 probability buffer of ``sbytes`` / ``pbytes``
    (64-byte aligned) for ``cap`` keys."""

    def __init__(self, h: int, hkv: int, cap: int):
        self.chunks = next((c for c in DECODE_HEAD_CHUNKS if hkv % c == 0 and c <= hkv), 1)
        self.hkc = hkv // self.chunks
        self.hc = self.hkc * (h // hkv)
        self.sbytes = -(-self.hc * cap * 4 // 64) * 64
        self.pbytes = -(-self.hc * cap * 2 // 64) * 64

    def units(self, ctx, qa, kc, vc, out, d, lk, pos, stride, scale, causal, scores, probs, label="") -> list:
        """``[(mat_qk, softmax, mat_pv)]`` per group, for one query token at ``qa`` (``[H, D]``, output at
        ``out``) over ``lk`` keys of the caches at ``kc`` / ``vc``; group c uses ``scores + c * sbytes``."""
        att = dict(m=1, heads=self.hc, kv_heads=self.hkc, l=lk, d=d)
        out_units = []
        for c in range(self.chunks):
            q_c, o_c = qa + c * self.hc * d * 2, out + c * self.hc * d * 2
            k_c, v_c = kc + c * self.hkc * stride, vc + c * self.hkc * stride
            s_c, p_c = scores + c * self.sbytes, probs + c * self.pbytes
            out_units.append((
                ctx.emit("mat_qk", out_fp32=True, q=q_c, kc=k_c, out=s_c, k_stride=stride, scale=scale, **att,
                         comment=f"{label}heads {c * self.hc}..{(c + 1) * self.hc - 1}"),
                ctx.emit("softmax", in_fp32=True, causal=causal, src=s_c, dst=p_c, rows=self.hc, cols=lk, m=1,
                         pos0=pos),
                ctx.emit("mat_pv", p=p_c, vc=v_c, out=o_c, v_stride=stride, **att)))
        return out_units


def _pipelined(units: list) -> list:
    """``(qk, sm, pv)`` units issued as ``qk0 sm0 qk1 pv0 sm1 qk2 pv1 ... pv_last``: each unit's softmax
    (SFU) runs while the mat unit computes the next unit's scores."""
    order = [units[0][0], units[0][1]]
    for u in range(1, len(units)):
        order += [units[u][0], units[u - 1][2], units[u][1]]
    return order + [units[-1][2]]


def _decode_attention_pipeline(ctx, qa, kc, vc, out, h, hkv, d, cap, lk, pos, stride, scale, causal):
    """One query token: the heads in groups (:class:`_HeadGroups`), :func:`_pipelined`. With one token, a
    group's queries and outputs are contiguous slices of ``[1, H, D]``; each group has its own
    score/probability buffers (fixed offsets), so the wait bits order only what depends. Same numerics
    as the whole-head form (heads are independent)."""
    g = _HeadGroups(h, hkv, cap)
    scores = ctx.scratch("attn.decode_scores", g.chunks * g.sbytes)
    probs = ctx.scratch("attn.decode_probs", g.chunks * g.pbytes)
    return _pipelined(g.units(ctx, qa, kc, vc, out, d, lk, pos, stride, scale, causal, scores, probs))


# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    """Grouped-query attention (4 query heads over 2 KV heads, head dim 16), causal and full."""
    from .examples import host_input, one_op, seq_dim
    seq, d = seq_dim(), 16
    qkv = [host_input("q", seq, 4, d), host_input("k", seq, 2, d), host_input("v", seq, 2, d)]
    return tuple(OpExample(f"gqa-causal={c}", one_op("dev.attention", qkv, {}, causal=c, scale=1 / math.sqrt(d)))
                 for c in (True, False))


SPEC = register_device_op(DeviceOpSpec(
    name="dev.attention",
    inputs=("q", "k", "v"),
    attrs={"causal": attr("bool", True), "scale": attr("float"), "pos0": attr("?sym", None),
           "cache": attr("?str", None), "kv_len": attr("?sym", None), "capacity": attr("int", 0),
           "slot": attr("?sym", None), "slots": attr("int", 1), "row_ctx": attr("?syms", None)},
    type_rel=type_rel,
    doc="q f16 [M, H, D], k/v f16 [L, HKV, D] (HKV divides H); softmax(q k^T * scale) v with "
        "query i at position pos0 + i (default L - M) seeing keys <= its position when causal; "
        "out f16 [M, H, D]. With ``cache`` (a persistent KV cache of ``capacity`` positions, "
        "doc/llm.md): k/v are the M new tokens, appended at kv_len - M, and the queries attend "
        "to the cache's keys [0, kv_len). The cache has ``slots`` slots; ``slot`` picks the sequence's "
        "(batched decode, doc/llm.md); with ``row_ctx`` (one kv length per row) row r is one new token of "
        "the sequence in slot r, appended at row_ctx[r] - 1 and attending to its slot's [0, row_ctx[r])",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower_attention),),
    emits=("kv_append", "mat_qk", "softmax", "mat_pv"),
    numerics=("tree_lanes",),
    check=check,
))
