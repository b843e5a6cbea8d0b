"""cocotb bench of the fp building blocks (hw_models/rtl/fp/*.sv) through hw_models/rtl/tb/fp_tb.sv.

Cases come from $DLAVM_RTL_CASES (written by tests/rtl/test_fp.py): ``comb`` — operand records
{a, b, c, h, v, f, nseg, lanes} applied to every combinational block at once; ``seq`` — reductions
{inst, terms} streamed through the four tree_sum_seq instances of fp_tb. Expected values: numpy's IEEE
float32/float16 arithmetic (errstate ignore) and hw_models.numerics (tree_sum, pwl_eval). A NaN result only
has to be a NaN (payloads are unspecified, doc/isa.md section 1), except fp32_to_fp16, whose contract is
the quiet NaN 0x7E00 | sign.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from hw_models import numerics

F16, F32, F64 = np.float16, np.float32, np.float64
#: (L, T) of fp_tb's tree_sum_seq instances u_seq0..3; T of u_seq0 is the target's tree_lanes.
SEQ_CFG = [(8, None), (2, 8), (4, 4), (1, 4)]


def load():
    with open(os.environ["DLAVM_RTL_CASES"]) as fh:
        return json.load(fh)


def f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint64).astype(np.uint32).view(F32)


def bits32(x) -> int:
    return int(np.asarray(x, dtype=F32).view(np.uint32))


def is_nan32(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x7FFFFF) != 0


def fx_ref(v: int, f: int) -> int:
    """fp32(v * 2^-f), RNE: round to odd at 53 bits (float64), then numpy's float64 -> float32 rounding.
    Round-to-odd with >= 2 extra bits makes the second rounding equal to one direct rounding."""
    if v == 0:
        return 0
    s, m = (v < 0), abs(v)
    sh = max(0, m.bit_length() - 53)
    t = m >> sh
    if sh and (m & ((1 << sh) - 1)):
        t |= 1
    x = np.ldexp(F64(t), sh - f)           # exact: t < 2^53, |exponent| small enough for a normal float64
    y = F64(-x if s else x).astype(F32)
    return bits32(y)


class Checker:
    def __init__(self, log):
        self.log, self.fails, self.n = log, [], 0

    def eq(self, case, what, got: int, want: int, nan_ok: bool = False, width: int = 8):
        self.n += 1
        if nan_ok and is_nan32(want):
            ok = is_nan32(got)
        else:
            ok = got == want
        if not ok:
            self.fails.append(f"case {case}: {what}: got 0x{got:0{width}X}, want 0x{want:0{width}X}")

    def done(self, what):
        by: dict[str, int] = {}
        for f in self.fails:
            k = f.split(": ")[1]
            by[k] = by.get(k, 0) + 1
        self.log.info("%s: %d checks, %d failed %s", what, self.n, len(self.fails), by)
        assert not self.fails, f"{len(self.fails)} mismatches; first: " + "; ".join(self.fails[:8])


def tree_only(lanes: np.ndarray) -> np.ndarray:
    """The bare 7.1 tree (fp32_tree) of each row: numerics.tree_sum over one block is +0 ⊕ tree, which
    differs from the tree only when the tree gives -0, i.e. (RNE) exactly when every lane is -0."""
    out = numerics.tree_sum(lanes, lanes.shape[-1]).view(np.uint32).copy()
    out[np.all(lanes.view(np.uint32) == 0x80000000, axis=-1)] = 0x80000000
    return out


def comb_expected(cs: list[dict]) -> dict[str, list[int]]:
    A = f32([c["a"] for c in cs])
    B = f32([c["b"] for c in cs])
    H = np.asarray([c["h"] for c in cs], dtype=np.uint16).view(F16)
    L8 = f32([c["lanes"] for c in cs]).reshape(len(cs), 8)
    with np.errstate(all="ignore"):
        exp = {
            "add_y": (A + B).view(np.uint32), "sub_y": (A - B).view(np.uint32),
            "mul_y": (A * B).view(np.uint32), "div_y": (A / B).view(np.uint32),
            "sqrt_y": np.sqrt(A).view(np.uint32), "lt_y": (A < B).astype(np.uint32),
            "f2h_y": A.astype(F16).view(np.uint16), "h2f_y": H.astype(F32).view(np.uint32),
            "tree8_y": tree_only(L8),
            "tree2_y": tree_only(L8[:, :2]),
        }
    out = {k: [int(x) for x in v] for k, v in exp.items()}
    # fp16 with a NaN input -> quiet NaN 0x7E00 | sign (fp32_to_fp16's contract)
    out["f2h_y"] = [(0x7E00 | ((c["a"] >> 16) & 0x8000)) if is_nan32(c["a"]) else w
                    for c, w in zip(cs, out["f2h_y"])]
    out["fx64_y"] = [fx_ref(c["v"], c["f"]) for c in cs]
    out["fx20_y"] = [fx_ref(((c["v"] & 0xFFFFF) ^ 0x80000) - 0x80000, c["f"]) for c in cs]
    hx, hs = [], []
    for h in H:
        fin = bool(np.isfinite(h))
        hs.append(int(not fin))
        hx.append(int(F64(h) * 2 ** 24) if fin else 0)
    out["h2fx_v"], out["h2fx_special"] = hx, hs
    ent, pwl = [], []
    with np.errstate(all="ignore"):
        for c in cs:
            x = f32([c["a"]])
            nseg = c["nseg"]
            if is_nan32(c["a"]):
                ent.append(nseg + 1)           # 7.6: t is NaN -> entry nseg + 1
            else:
                # slope 0, intercept = the entry's index: pwl_eval returns the selected index exactly.
                tab = np.zeros((nseg + 2, 2), dtype=F32)
                tab[:, 1] = np.arange(nseg + 2, dtype=F32)
                y = numerics.pwl_eval(x, tab, nseg, f32(c["b"]), f32(c["c"]))
                ent.append(int(y[0]))
            row = np.array([[f32(c["b"]), f32(c["c"])]] * 2, dtype=F32)
            pwl.append(bits32(numerics.pwl_eval(x, row, 0, F32(0), F32(1))[0]))
    out["pwl_entry"], out["pwl_y"] = ent, pwl
    return out


@cocotb.test()
async def comb_blocks(dut):
    """Every combinational block on every operand record."""
    cs = load()["comb"]
    exp = comb_expected(cs)
    chk = Checker(dut._log)
    for n in ("clk", "rst_n", "s_valid", "s_first", "s_last"):
        getattr(dut, n).value = 0
    for i, c in enumerate(cs):
        dut.a.value, dut.b.value, dut.c.value, dut.h.value = c["a"], c["b"], c["c"], c["h"]
        dut.fxv.value = c["v"] & ((1 << 64) - 1)
        dut.fxf.value = c["f"]
        dut.nseg.value = c["nseg"]
        dut.lanes.value = sum(x << (32 * j) for j, x in enumerate(c["lanes"]))
        await Timer(1, "ns")
        tag = (f"{i} (a=0x{c['a']:08X} b=0x{c['b']:08X} c=0x{c['c']:08X} h=0x{c['h']:04X} v={c['v']} "
               f"f={c['f']} nseg={c['nseg']} lanes={[hex(x) for x in c['lanes']]})")
        for k in ("add_y", "sub_y", "mul_y", "div_y", "sqrt_y", "tree8_y", "tree2_y", "h2f_y", "fx64_y",
                  "fx20_y", "pwl_y"):
            chk.eq(tag, k, int(getattr(dut, k).value), exp[k][i], nan_ok=True)
        for k in ("lt_y", "pwl_entry", "h2fx_special"):
            chk.eq(tag, k, int(getattr(dut, k).value), exp[k][i])
        chk.eq(tag, "f2h_y", int(dut.f2h_y.value), exp["f2h_y"][i], width=4)
        if not exp["h2fx_special"][i]:
            chk.eq(tag, "h2fx_v", int(dut.h2fx_v.value.to_signed()), exp["h2fx_v"][i], width=11)
    chk.done(f"comb: {len(cs)} cases")


@cocotb.test()
async def tree_sum_seq(dut):
    """Reductions streamed through the tree_sum_seq instances, back to back and with idle gaps; checks
    the sum (vs hw_models.numerics.tree_sum) and the latency log2(T/L) + 2 from the in_last cycle."""
    seq = load()["seq"]
    tree_lanes = int(os.environ.get("DLAVM_FP_TREE_LANES", "128"))
    rng = random.Random(12)
    chk = Checker(dut._log)
    cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
    for n in ("s_valid", "s_first", "s_last", "lanes"):
        getattr(dut, n).value = 0
    dut.rst_n.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst_n.value = 1
    for inst, (lanes, t) in enumerate(SEQ_CFG):
        t = t or tree_lanes
        lat = (t // lanes).bit_length() - 1 + 2
        reds = [r["terms"] for r in seq if r["inst"] == inst]
        # beats: (first, last, lane words, reduction index) with random idle cycles in between
        beats = []
        for ri, terms in enumerate(reds):
            nb = max(1, -(-len(terms) // lanes))
            padded = terms + [0] * (nb * lanes - len(terms))
            for j in range(nb):
                while rng.random() < 0.15:
                    beats.append(None)
                beats.append((j == 0, j == nb - 1, padded[j * lanes:(j + 1) * lanes], ri))
        want = [bits32(numerics.tree_sum(f32(terms), t)) for terms in reds]
        got, last_cycle = [], {}
        cyc = 0
        for item in beats + [None] * (lat + 2):
            await FallingEdge(dut.clk)
            if (int(dut.s_out_valid.value) >> inst) & 1:
                got.append((cyc, (int(dut.s_out_sum.value) >> (32 * inst)) & 0xFFFFFFFF))
            if item is None:
                dut.s_valid.value = 0
            else:
                first, last, words, ri = item
                dut.s_valid.value = 1 << inst
                dut.s_first.value = int(first) << inst
                dut.s_last.value = int(last) << inst
                dut.lanes.value = sum(x << (32 * j) for j, x in enumerate(words))
                if last:
                    last_cycle[ri] = cyc
            cyc += 1
        dut.s_valid.value = 0
        chk.eq(f"inst {inst} (L={lanes}, T={t})", "number of results", len(got), len(reds))
        for ri, (terms, w) in enumerate(zip(reds, want)):
            if ri >= len(got):
                break
            c, g = got[ri]
            tag = f"inst {inst} (L={lanes}, T={t}) reduction {ri} (K={len(terms)}, terms={[hex(x) for x in terms[:16]]}...)"
            chk.eq(tag, "sum", g, w, nan_ok=True)
            chk.eq(tag, "latency", c - last_cycle[ri], lat, width=1)
    chk.done(f"seq: {len(seq)} reductions")
