"""Special-function unit: norms, softmax, eltwise, PWL activations, RoPE, KV append.

Every formula below is the one doc/isa.md specifies, with the same fp32
rounding points (numpy float32 ops round each result once, RNE).
"""
from __future__ import annotations

import numpy as np

from dlavm.target import Target
from dlavm.target.isa import Instruction
from dlavm.target.pwl import SOFTMAX_EXP_TABLE, table
from hw_models.numerics import F16, F32, pwl_eval, tree_sum
from hw_models.units import UnitOp, register, require, require_aligned, require_positive


# ---------------------------------------------------------------- norms
def _norm_check(i: Instruction, t: Target) -> None:
    require_positive(i, "rows", "cols")


def _rmsnorm(i: Instruction, mem, t: Target) -> None:
    r, c = i["rows"], i["cols"]
    x = mem.read_array(i["src"], F16, (r, c), "rmsnorm.src").astype(F32)
    g = mem.read_array(i["gamma"], F16, (c,), "rmsnorm.gamma").astype(F32)
    mean = tree_sum(x * x, t.tree_lanes) / F32(c)
    inv = F32(1) / np.sqrt(mean + F32(i["eps"]))
    mem.write_array(i["dst"], ((x * inv[:, None]) * g[None, :]).astype(F16), "rmsnorm.dst")


def _layernorm(i: Instruction, mem, t: Target) -> None:
    r, c = i["rows"], i["cols"]
    x = mem.read_array(i["src"], F16, (r, c), "layernorm.src").astype(F32)
    g = mem.read_array(i["gamma"], F16, (c,), "layernorm.gamma").astype(F32)
    b = mem.read_array(i["beta"], F16, (c,), "layernorm.beta").astype(F32)
    mean = tree_sum(x, t.tree_lanes) / F32(c)
    dlt = x - mean[:, None]
    var = tree_sum(dlt * dlt, t.tree_lanes) / F32(c)
    inv = F32(1) / np.sqrt(var + F32(i["eps"]))
    mem.write_array(i["dst"], (((dlt * inv[:, None]) * g[None, :]) + b[None, :]).astype(F16), "layernorm.dst")


# ---------------------------------------------------------------- softmax
def _softmax_check(i: Instruction, t: Target) -> None:
    require_positive(i, "rows", "cols", "m")


def _softmax(i: Instruction, mem, t: Target) -> None:
    r, c = i["rows"], i["cols"]
    x = mem.read_array(i["src"], F32 if i["in_fp32"] else F16, (r, c), "softmax.src").astype(F32)
    if i["causal"]:
        qpos = i["pos0"] + np.arange(r, dtype=np.int64) % i["m"]
        valid = np.arange(c, dtype=np.int64)[None, :] <= qpos[:, None]
    else:
        valid = np.ones((r, c), dtype=bool)
    mx = np.where(valid, x, F32(-np.inf)).max(axis=1)
    tab = table(SOFTMAX_EXP_TABLE)
    with np.errstate(invalid="ignore"):   # a row of only -inf is NaN (-inf - -inf), as IEEE says
        e = pwl_eval(x - mx[:, None], tab.entries, tab.nseg, tab.lo_f32, tab.inv_step)
    e = np.where(valid, e, F32(0))
    s = tree_sum(e, t.tree_lanes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mem.write_array(i["dst"], (e / s[:, None]).astype(F16), "softmax.dst")


# ---------------------------------------------------------------- eltwise / act
def _elt_check(i: Instruction, t: Target) -> None:
    require_positive(i, "count")
    require(i["period"] == 0 or i["count"] % i["period"] == 0, i,
            f"field period {i['period']} must divide count {i['count']}")


def _eltwise(i: Instruction, mem, t: Target) -> None:
    n, p = i["count"], i["period"] or i["count"]
    a = mem.read_array(i["a"], F16, (n,), "eltwise.a").astype(F32)
    b = np.tile(mem.read_array(i["b"], F16, (p,), "eltwise.b").astype(F32), n // p)
    y = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[i["fn"]](a, b)
    mem.write_array(i["dst"], y.astype(F16), "eltwise.dst")


def _act_check(i: Instruction, t: Target) -> None:
    require_positive(i, "count", "nseg")


def _act(i: Instruction, mem, t: Target) -> None:
    n, nseg = i["count"], i["nseg"]
    x = mem.read_array(i["src"], F16, (n,), "act.src").astype(F32)
    entries = mem.read_array(i["table"], F32, (nseg + 2, 2), "act.table")
    mem.write_array(i["dst"], pwl_eval(x, entries, nseg, i["lo"], i["inv_step"]).astype(F16), "act.dst")


# ---------------------------------------------------------------- rope
def _rope_check(i: Instruction, t: Target) -> None:
    require_positive(i, "m", "heads", "d")
    require(i["d"] % 8 == 0, i, f"head dim d={i['d']} must be a multiple of 8 (32-byte table rows)")
    require(i["pos0"] + i["m"] <= t.max_seq_len, i,
            f"positions {i['pos0']}..{i['pos0'] + i['m'] - 1} exceed max_seq_len={t.max_seq_len}")


def _rope(i: Instruction, mem, t: Target) -> None:
    m, h, d = i["m"], i["heads"], i["d"]
    x = mem.read_array(i["src"], F16, (m, h, d), "rope.src").astype(F32)
    tab = mem.read_array(i["table"] + i["pos0"] * d * 4, F32, (m, d), "rope.table")
    cos, sin = tab[:, None, : d // 2], tab[:, None, d // 2:]
    if i["interleaved"]:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
    y1 = (x1 * cos) - (x2 * sin)
    y2 = (x2 * cos) + (x1 * sin)
    y = np.empty_like(x)
    if i["interleaved"]:
        y[..., 0::2], y[..., 1::2] = y1, y2
    else:
        y[..., : d // 2], y[..., d // 2:] = y1, y2
    mem.write_array(i["dst"], y.astype(F16), "rope.dst")


# ---------------------------------------------------------------- kv append
def _kv_check(i: Instruction, t: Target) -> None:
    require_positive(i, "m", "kv_heads", "d", "capacity")
    m, hkv, d, pos, cap = i["m"], i["kv_heads"], i["d"], i["pos"], i["capacity"]
    require(d % 16 == 0, i, f"head dim d={d} must be a multiple of 16 (32-byte rows)")
    require(cap <= t.max_seq_len, i, f"capacity={cap} exceeds max_seq_len={t.max_seq_len}")
    require(pos + m <= cap, i, f"appending {m} tokens at pos={pos} overflows capacity={cap}")
    require_aligned(i, t, head_stride=i["head_stride"])
    if hkv > 1:
        require(i["head_stride"] >= cap * d * 2, i,
                f"head_stride={i['head_stride']} is smaller than capacity*d*2={cap * d * 2}; heads would overlap")


def _kv_append(i: Instruction, mem, t: Target) -> None:
    m, hkv, d = i["m"], i["kv_heads"], i["d"]
    x = mem.read_array(i["src"], F16, (m, hkv, d), "kv_append.src").transpose(1, 0, 2)
    block = np.ascontiguousarray(x).reshape(hkv, m * d).view(np.uint8)
    mem.write_rows(i["dst"] + i["pos"] * d * 2, block, i["head_stride"], "kv_append.dst")


register(UnitOp("rmsnorm", _norm_check, _rmsnorm))
register(UnitOp("layernorm", _norm_check, _layernorm))
register(UnitOp("softmax", _softmax_check, _softmax))
register(UnitOp("eltwise", _elt_check, _eltwise))
register(UnitOp("act", _act_check, _act))
register(UnitOp("rope", _rope_check, _rope))
register(UnitOp("kv_append", _kv_check, _kv_append))
