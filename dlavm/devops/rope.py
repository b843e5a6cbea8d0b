"""``dev.rope``: rotary position embedding on the SFU (doc/isa.md 7.7).

x f16 [M, H, D] at positions pos0.. rotated by a table f32 [P, D] (D/2
cosines then D/2 sines per position) that legalization evaluates from the
model's own size-only cos/sin subgraphs at the sequence bound, after
checking that it is prefix-consistent and in the rotate_half layout.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .. import sym
from ..ir import Constant, IRTypeError, TensorType, attr, call
from ..ir.ops.common import tensor
from ..passes.fold import FoldError, evaluate, free_dims, is_size_only
from ..passes.patterns_match import Pat, Pattern, const_int, is_float, permute, reshape, to_device, to_host
from ..target.isa import ROPE_DIM_MULTIPLE
from ..task.lower import ub
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op


def type_rel(types, attrs):
    x, t = f16(types[0], "dev.rope"), tensor(types[1], "dev.rope", "table")
    if x.ndim != 3 or t.ndim != 2 or t.shape[1] != x.shape[2] or t.dtype != "float32":
        raise IRTypeError(f"op 'dev.rope': x {x} must be [M, H, D] and table {t} f32 [P, D]")
    return TensorType(x.shape, "float16")


# --- layout helpers shared with dev.attention ----------------------------------------------------

def token_major(x):
    """[1, H, S, D] (head-major, batch 1) -> device [S, H, D]."""
    _, h, s, d = x.type.shape
    return to_device(reshape(permute(x, (0, 2, 1, 3)), (s, h, d)))


def head_major(y, dtype):
    """Device [S, H, D] -> host [1, H, S, D] (the inverse of ``token_major``)."""
    s, h, d = y.type.shape
    return permute(reshape(to_host(y, dtype), (1, s, h, d)), (0, 2, 1, 3))


def batch1_4d(x) -> bool:
    """A [1, H, S, D] float tensor with constant H and D."""
    return is_float(x) and x.type.ndim == 4 and const_int(x.type.shape[0]) == 1 and all(
        const_int(d) is not None for d in (x.type.shape[1], x.type.shape[3]))


def dim_var(node):
    """(the one dynamic dim ``node`` depends on, its (lo, hi) bounds, "") or (None, None, reason)."""
    dims = free_dims(node)
    if len(dims) != 1:
        return None, None, f"depends on {len(dims)} dynamic dims (exactly one is supported)"
    v = dims[0]
    lo, hi = sym.bounds(v)
    if hi is None:
        return None, None, f"dim {v} has no upper bound"
    return v, (max(1, lo or 1), hi), ""


def probe_sizes(lo, hi):
    """The sizes a size-only subgraph is evaluated at: 1 (or lo), 2, a middle odd one, the bound."""
    return sorted({lo, min(hi, max(lo, 2)), max(lo, (lo + hi) // 2 | 1), hi})


# --- legalization ---------------------------------------------------------------------------------

def rope_table(ctx, cos, sin, seq):
    """f32 [P, D] table (D/2 cosines then D/2 sines per position) from the size-only cos/sin
    subgraphs, evaluated at the bound of ``seq``; checked to be prefix-consistent (row p does not
    depend on the size) and half-duplicated (HF's concat(freqs, freqs)). Returns (Constant, reason)."""
    static = const_int(seq)
    if static is not None and not free_dims(cos) and not free_dims(sin):
        # static sizes (torch.compile's first compilation): the table of those positions
        v, lo, hi, probes = None, static, static, ()
    else:
        v, rng, why = dim_var(cos)
        if v is None or sym.as_expr(seq) != v:
            return None, f"RoPE cos/sin table {why or 'is not indexed by the sequence dim'}"
        (lo, hi), probes = rng, probe_sizes(*rng)
    d = None
    try:
        full = [evaluate(t, ctx.params, {v: hi} if v is not None else {}) for t in (cos, sin)]
        d = full[0].shape[-1]
        full = [np.asarray(t, dtype=np.float32).reshape(-1, d) for t in full]
        if full[0].shape[0] != hi:
            return None, "RoPE cos/sin are not one row per position"
        for n in probes:
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


def _half_slice(first: bool):
    """x[..., D/2:] (``first``) or x[..., :D/2] of the captured x, along the last axis."""
    def ok(s):
        x = s.args[0]
        d = const_int(x.type.shape[3])
        want = (d // 2, d) if first else (0, d // 2)
        return (s.attrs["axis"] % 4 == 3 and s.attrs["step"] == 1
                and (const_int(s.attrs["start"]), const_int(s.attrs["end"])) == want)
    return Pat("slice", Pat.any("x"), where=ok)


#: concat(-x[..., D/2:], x[..., :D/2], -1)
_ROTATE_HALF = Pat("concat", Pat("neg", _half_slice(True)), _half_slice(False),
                   where=lambda r: r.attrs["axis"] % 4 == 3)
_X = Pat.any("x", where=lambda x: batch1_4d(x) and not is_size_only(x))
_SIZE_ONLY = is_size_only
#: x * cos + rotate_half(x) * sin
_ROPE = Pat("add", Pat("mul", _X, Pat.any("cos", where=_SIZE_ONLY), commutative=True),
            Pat("mul", _ROTATE_HALF, Pat.any("sin", where=_SIZE_ONLY), commutative=True), commutative=True)


def _rope(node, ctx, x, cos, sin):
    """x * cos + rotate_half(x) * sin on [1, H, S, D] -> dev.rope on [S, H, D]."""
    table, why = rope_table(ctx, cos, sin, x.type.shape[2])
    if table is None:
        return ctx.decline(node, why)
    return head_major(call("dev.rope", token_major(x), table, pos0=0), node.type.dtype)


PATTERNS = (
    Pattern("rope", _ROPE, _rope, "x*cos + rotate_half(x)*sin -> dev.rope", priority=10),
)


# --- reference kernel -----------------------------------------------------------------------------

def reference(args, attrs, ev):
    import torch
    x, table = args[0].float(), args[1].float()
    m, _, d = x.shape
    p0 = ev(attrs["pos0"])
    t = table[p0:p0 + m]
    half = d // 2
    c, s = t[:, None, :half], t[:, None, half:]
    if attrs["interleaved"]:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x[..., :half], x[..., half:]
    y1 = ((x1 * c) - (x2 * s)).to(torch.float16)
    y2 = ((x2 * c) + (x1 * s)).to(torch.float16)
    if attrs["interleaved"]:
        return torch.stack([y1, y2], -1).reshape(x.shape)
    return torch.cat([y1, y2], -1)


# --- lowering -------------------------------------------------------------------------------------

def check(node, target) -> None:
    """Positions against the table and ``max_seq_len``; the head dim against the RoPE row alignment."""
    x, table = node.args
    mtok, _, d = x.type.shape
    p = int(table.type.shape[0])
    last = ub(sym.as_expr(node.attrs["pos0"]) + mtok)
    if last > min(p, target.max_seq_len):
        raise ValueError(f"dev.rope: positions up to {last} exceed the table ({p}) or the max_seq_len "
                         f"({target.max_seq_len}) of target '{target.name}'; lower the model's sequence bound")
    for r, pos in enumerate(node.attrs["row_pos"] or ()):
        if ub(sym.as_expr(pos)) + 1 > min(p, target.max_seq_len):
            raise ValueError(f"dev.rope: row {r}'s position bound {ub(sym.as_expr(pos))} is past the table ({p}) "
                             f"or the max_seq_len ({target.max_seq_len}) of target '{target.name}'")
    if int(d) % ROPE_DIM_MULTIPLE:
        raise ValueError(f"dev.rope: head dim {int(d)} must be a multiple of {ROPE_DIM_MULTIPLE} "
                         "(doc/isa.md section 8)")


def _f32(data):
    return None if data is None else np.asarray(data, np.float32)


def lower_rope(ctx, node):
    """``dev.rope``'s lowering: one position per row (``row_pos``, batched decode) by
    :func:`_lower_rows`, consecutive positions from ``pos0`` by :func:`lower`."""
    if node.attrs["row_pos"] is not None:
        return _lower_rows(ctx, node)
    return lower(ctx, node)


def _lower_rows(ctx, node):
    """Row ``r`` of x (one token of the sequence in batched-decode slot ``r``) at position ``row_pos[r]``:
    one one-row ``rope`` each, guarded by ``rows > r`` (row 0 always runs); the same instruction the
    one-token decode of that sequence alone issues."""
    from ..task.ir import If
    x, table = node.args
    rows, h, d = x.type.shape
    p, dd = (int(v) for v in table.type.shape)
    ta = ctx.blob(f"{table.name}.f32", lambda: _f32(ctx.param(table)), p * dd * 4)
    src, dst = ctx.addr(x), ctx.addr(node)
    row_bytes = int(h) * int(d) * 2
    out = []
    for r in range(ub(rows)):
        insn = ctx.emit("rope", interleaved=bool(node.attrs["interleaved"]), src=src + r * row_bytes,
                        dst=dst + r * row_bytes, table=ta, m=1, heads=int(h), d=int(d),
                        pos0=sym.as_expr(node.attrs["row_pos"][r]), comment=f"row {r}")
        out.append(insn if r == 0 else If(sym.gt(rows, r), (insn,), ()))
    return out


def lower(ctx, node):
    x, table = node.args
    mtok, h, d = x.type.shape
    p, dd = (int(v) for v in table.type.shape)
    pos0 = sym.as_expr(node.attrs["pos0"])
    ta = ctx.blob(f"{table.name}.f32", lambda: _f32(ctx.param(table)), p * dd * 4)
    src, dst = ctx.addr(x), ctx.addr(node)
    return [ctx.emit("rope", interleaved=bool(node.attrs["interleaved"]), src=src, dst=dst, table=ta, m=mtok,
                     heads=int(h), d=int(d), pos0=pos0)]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    """[seq, 4 heads, 16] with a 64-position table (HF's rotate-half layout) and the interleaved form."""
    from .examples import host_input, one_op, seq_dim, weight
    d = 16
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    ang = np.arange(64)[:, None] * inv[None, :]
    table = np.concatenate([np.cos(ang), np.sin(ang)], axis=1)
    out = []
    for inter in (False, True):
        p = {}
        mod = one_op("dev.rope", [host_input("x", seq_dim(), 4, d), weight(p, "tab", table)], p, interleaved=inter)
        out.append(OpExample(f"interleaved={inter}", mod))
    return tuple(out)


SPEC = register_device_op(DeviceOpSpec(
    name="dev.rope",
    inputs=("x", "table"),
    attrs={"pos0": attr("sym", 0), "interleaved": attr("bool", False), "row_pos": attr("?syms", None)},
    type_rel=type_rel,
    doc="rotary embedding of x f16 [M, H, D] at positions pos0.. with table f32 [P, D] "
        "(D/2 cosines then D/2 sines per position); out f16. With ``row_pos`` (batched decode, "
        "doc/llm.md) row r is at position row_pos[r] instead",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower_rope),),
    emits=("rope",),
    check=check,
    param_format=lambda node, index: ("fp32", None),  # the table is read as fp32
))
