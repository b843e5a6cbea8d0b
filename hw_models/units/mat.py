"""fp16 matrix path for attention: ``mat_qk`` (scores) and ``mat_pv`` (context).

doc/isa.md, ``mat_qk`` / ``mat_pv``. Grouped-query attention: query head h
reads key/value head h // (H / HKV).
"""
from __future__ import annotations

import numpy as np

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.numerics import F16, F32, dot_f16
from hw_models.units import UnitOp, register, require, require_aligned, require_positive


def _check_heads(i: Instruction, stride_field: str, t: Target) -> None:
    require_positive(i, "m", "heads", "kv_heads", "l", "d")
    require(i["heads"] % i["kv_heads"] == 0, i,
            f"heads={i['heads']} is not a multiple of kv_heads={i['kv_heads']}")
    require(i["d"] % 16 == 0, i, f"head dim d={i['d']} must be a multiple of 16 (32-byte rows)")
    require_aligned(i, t, **{stride_field: i[stride_field]})
    if i["kv_heads"] > 1:
        require(i[stride_field] >= i["l"] * i["d"] * 2, i,
                f"{stride_field}={i[stride_field]} is smaller than one head's l*d*2 bytes; heads would overlap")


def _read_kv(i: Instruction, mem, addr: int, stride_field: str, what: str) -> np.ndarray:
    """fp16 [H, L, D]: the KV head of every query head (GQA broadcast)."""
    hkv, l, d = i["kv_heads"], i["l"], i["d"]
    rows = mem.read_rows(addr, l * d * 2, hkv, i[stride_field], what)
    kv = rows.view(F16).reshape(hkv, l, d)
    return np.repeat(kv, i["heads"] // hkv, axis=0)


def _qk_execute(i: Instruction, mem, t: Target) -> None:
    m, h, d = i["m"], i["heads"], i["d"]
    q = mem.read_array(i["q"], F16, (m, h, d), "mat_qk.q").transpose(1, 0, 2)   # [H, M, D]
    k = _read_kv(i, mem, i["kc"], "k_stride", "mat_qk.kc")                        # [H, L, D]
    s = dot_f16(q, k, t.tree_lanes) * F32(i["scale"])                            # [H, M, L]
    mem.write_array(i["out"], s if i["out_fp32"] else s.astype(F16), "mat_qk.out")


def _pv_execute(i: Instruction, mem, t: Target) -> None:
    m, h, l = i["m"], i["heads"], i["l"]
    p = mem.read_array(i["p"], F16, (h, m, l), "mat_pv.p")
    v = _read_kv(i, mem, i["vc"], "v_stride", "mat_pv.vc")                        # [H, L, D]
    o = dot_f16(p, v.transpose(0, 2, 1), t.tree_lanes)                           # [H, M, D]
    mem.write_array(i["out"], o.transpose(1, 0, 2).astype(F16), "mat_pv.out")


register(UnitOp("mat_qk", lambda i, t: _check_heads(i, "k_stride", t), _qk_execute))
register(UnitOp("mat_pv", lambda i, t: _check_heads(i, "v_stride", t), _pv_execute))
