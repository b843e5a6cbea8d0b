"""MVM engine: fp16 activations x int4/int8/fp16 weights, fp32 accumulation,
fused epilogue (affine, residual add/mul, ReLU, argmax). doc/isa.md, ``mvm``."""
from __future__ import annotations

import numpy as np

from dlavm.target import Target
from dlavm.target.isa import Instruction
from hw_models.numerics import F16, F32, INT8_MAX, dot_f16, group_int4_weights, group_weights, grouped_dot_split
from hw_models.units import UnitOp, register, require, require_positive


def _check(i: Instruction, t: Target) -> None:
    require_positive(i, "m", "k", "n")
    require(i["wfmt"] in t.weight_formats, i,
            f"weight format {i['wfmt']} is not supported by target {t.name} ({list(t.weight_formats)})")
    m, k = i["m"], i["k"]
    require(m * k * 2 <= t.act_buffer_bytes, i,
            f"activation operand m*k*2 = {m * k * 2} bytes exceeds act_buffer_bytes={t.act_buffer_bytes}")
    require(not (i["argmax"] and i["out_fp32"]), i, "argmax and out_fp32 are exclusive")


def _padded(k: int, block: int) -> int:
    return -(-k // block) * block


def accumulate(i: Instruction, mem, t: Target) -> np.ndarray:
    """fp32 [M, N] accumulator of the MVM before its epilogue."""
    m, k, n = i["m"], i["k"], i["n"]
    x = mem.read_array(i["x"], F16, (m, k), "mvm.x")
    # The integer weights are laid out for grouped_dot_split once and kept by the memory until a
    # write touches their bytes (DeviceMemory.derived): a decode step re-reads every weight.
    if i["wfmt"] == "int4":
        g = t.int4_group
        kp = _padded(k, g)
        w = mem.derived(i["w"], n * kp // 2, ("mvm.int4", n, kp, g),
                        lambda raw: group_int4_weights(raw.reshape(n, kp // 2), kp, g), "mvm.w")
        scales = mem.read_array(i["wscale"], F16, (n, kp // g), "mvm.wscale")
        xp = np.zeros((m, kp), dtype=F16)
        xp[:, :k] = x
        return grouped_dot_split(xp, w, scales)
    if i["wfmt"] == "int8":
        blk = t.int8_block
        kp = _padded(k, blk)

        def lay_out(raw: np.ndarray):
            qp = np.zeros((n, kp), dtype=np.int8)
            qp[:, :k] = raw.view(np.int8).reshape(n, k)
            return group_weights(qp, blk, INT8_MAX)

        w = mem.derived(i["w"], n * k, ("mvm.int8", n, k, blk), lay_out, "mvm.w")
        scales = mem.read_array(i["wscale"], F16, (n,), "mvm.wscale")
        xp = np.zeros((m, kp), dtype=F16)
        xp[:, :k] = x
        acc = grouped_dot_split(xp, w, None)
        return acc * scales.astype(F32)[None, :]
    w = mem.read_array(i["w"], F16, (n, k), "mvm.w")
    return dot_f16(x, w, t.tree_lanes)


def _execute(i: Instruction, mem, t: Target) -> dict | None:
    m, n = i["m"], i["n"]
    y = accumulate(i, mem, t)
    if i["affine"]:
        aff = mem.read_array(i["aff"], F16, (2, n), "mvm.aff").astype(F32)
        y = (y * aff[0][None, :]) + aff[1][None, :]
    if i["res"] != "none":
        r = mem.read_array(i["resid"], F16, (m, n), "mvm.resid").astype(F32)
        y = y + r if i["res"] == "add" else y * r
    if i["relu"]:
        y = np.where(y < 0, F32(0), y)
    if i["argmax"]:
        idx = np.argmax(y, axis=1).astype(np.int32)
        val = y[np.arange(m), idx].astype(F32)
        rec = np.empty((m, 2), dtype=np.uint32)
        rec[:, 0] = idx.view(np.uint32)
        rec[:, 1] = val.view(np.uint32)
        mem.write_array(i["out"], rec, "mvm.out")
        return {"argmax_index": int(idx[-1]), "argmax_value_bits": int(rec[-1, 1])}
    mem.write_array(i["out"], y.astype(F32) if i["out_fp32"] else y.astype(F16), "mvm.out")
    return None


register(UnitOp("mvm", _check, _execute))
