"""RTL tests of the IEEE building blocks hw_models/rtl/fp/*.sv (doc/isa.md sections 1 and 7).

One Verilator build of hw_models/rtl/tb/fp_tb.sv (every combinational block side by side on shared
operands, plus four tree_sum_seq instances) runs the bench tests/rtl/benches/cocotb_fp.py, which compares
each output with numpy's IEEE float32/float16 arithmetic and hw_models.numerics (tree_sum, pwl_eval).
Operands: hypothesis (derandomized, conftest.EXAMPLES per strategy) mixing random bit patterns, special
values, values near rounding ties and near overflow/underflow, plus every pair of the special values.
"""
from __future__ import annotations

import numpy as np
import pytest

from dlavm.target import get_target
from hw_models.rtl import build
from tests.rtl.conftest import BENCHES, EXAMPLES, FULL, draw_cases, st, write_cases

FP_MODULES = ["fp16_to_fp32", "fp32_to_fp16", "fp32_add", "fp32_mul", "fp32_tree", "fp32_lt", "fx_to_fp32",
              "fp16_to_fx", "tree_sum_seq", "pwl_index", "pwl_apply", "fp32_div", "fp32_sqrt", "fp32_round"]

#: fp32 special values: +-0, +-min subnormal, +-max subnormal, +-min normal, +-max finite, +-inf, NaNs
#: (quiet, negative, signalling), +-1 and neighbours, fp16 boundaries (65504, the 65520 tie, 2^-24, 2^-25,
#: 2^-14).
SPECIALS = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000,
            0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x3F800000,
            0xBF800000, 0x3F800001, 0x00400000, 0x477FE000, 0x477FF000, 0x33800000, 0x33000000, 0x38800000]
F16_SPECIALS = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01,
                0xFE01, 0x3C00, 0xBC00]


def _bits(s: int, e: int, m: int) -> int:
    return (s << 31) | ((e & 0xFF) << 23) | (m & 0x7FFFFF)


_mant = st.one_of(st.integers(0, 0x7FFFFF), st.sampled_from([0, 1, 0x7FFFFF, 0x400000, 0x3FFFFF, 0x400001]))
#: fp32 bit patterns: random, special, and with exponents at the edges (subnormal/normal, overflow, fp16 range)
f32_bits = st.one_of(
    st.integers(0, 2 ** 32 - 1),
    st.sampled_from(SPECIALS),
    st.builds(_bits, st.integers(0, 1), st.sampled_from([0, 1, 2, 23, 24, 25, 100, 101, 102, 103, 112, 113, 126,
                                                         127, 128, 142, 143, 150, 151, 253, 254]), _mant),
    st.builds(_bits, st.integers(0, 1), st.integers(110, 145), st.integers(0, 0x7FFFFF)),
)


@st.composite
def near_pair(draw):
    """(a, b) whose sum, product or quotient lands near a rounding tie, a cancellation, the subnormal range
    or overflow: b's exponent is a's shifted by a small amount (add) or mirrored (mul, div)."""
    a = draw(f32_bits)
    ea = (a >> 23) & 0xFF
    kind = draw(st.sampled_from(["add", "cancel", "mul", "div"]))
    m = draw(_mant)
    if kind == "add":
        eb = ea - draw(st.integers(0, 28))
    elif kind == "cancel":
        eb, m = ea - draw(st.integers(0, 1)), (a + draw(st.integers(-3, 3))) & 0x7FFFFF
    elif kind == "mul":
        eb = draw(st.sampled_from([254 + 127, 127 - 24, 127 - 126, 127 - 149, 127, 128, 126])) - ea
    else:
        eb = ea - draw(st.sampled_from([-127, 127, 126, 149, 150, 0, 1]))
    eb = min(max(eb, 0), 254)
    s = draw(st.integers(0, 1))
    return a, _bits(s, eb, m)


@st.composite
def f16_tie(draw):
    """fp32 values at, just below or just above a half-way point between fp16 neighbours (normal and
    subnormal fp16 ranges, and at the overflow threshold)."""
    e = draw(st.integers(100, 143))
    pos = 13 + max(0, 113 - e)                     # the rounding point (fp16 lsb) in the fp32 fraction
    pos = min(pos, 23)
    hi = draw(st.integers(0, (1 << 23) - 1)) >> pos << pos
    low = draw(st.sampled_from(["tie", "below", "above"]))
    half = 1 << (pos - 1)
    frac = {"tie": half, "below": half - 1, "above": half + 1}[low]
    return _bits(draw(st.integers(0, 1)), e, hi | frac)


@st.composite
def pwl_case(draw):
    """x around a realistic table (silu/gelu/sigmoid/exp ranges): near breakpoints, outside, inf, NaN."""
    lo, hi, nseg = draw(st.sampled_from([(-16.0, 16.0, 512), (-6.0, 6.0, 192), (-12.0, 12.0, 384),
                                         (-16.0, 0.0, 512), (-1.0, 1.0, 3), (0.0, 1.0, 1)]))
    inv = np.float32(nseg / (hi - lo))
    kind = draw(st.sampled_from(["uniform", "break", "special"]))
    if kind == "uniform":
        x = np.float32(draw(st.floats(lo - 2, hi + 2, width=32)))
    elif kind == "break":
        k = draw(st.integers(0, nseg))
        x = np.float32(lo + k * (hi - lo) / nseg)
        for _ in range(draw(st.integers(-2, 2)) % 5):
            x = np.nextafter(x, np.float32(draw(st.sampled_from([-np.inf, np.inf]))))
    else:
        x = np.float32(draw(st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30])))
    return int(x.view(np.uint32)), int(np.float32(lo).view(np.uint32)), int(inv.view(np.uint32)), nseg


fx_val = st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1),
                   st.integers(0, 63).flatmap(lambda k: st.integers(-(2 ** k), 2 ** k)),
                   st.sampled_from([0, 1, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 24 + 1, 2 ** 25 + 3, (2 ** 24 + 1) << 30]))
lanes8 = st.lists(st.one_of(f32_bits, st.sampled_from([0, 0x80000000])), min_size=8, max_size=8)


@st.composite
def comb_case(draw):
    kind = draw(st.sampled_from(["random", "near", "f16tie", "pwl"]))
    a, b = draw(f32_bits), draw(f32_bits)
    c = draw(f32_bits)
    nseg = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 192, 384, 512]), st.integers(0, 4096)))
    if kind == "near":
        a, b = draw(near_pair())
    elif kind == "f16tie":
        a = draw(f16_tie())
    elif kind == "pwl":
        a, b, c, nseg = draw(pwl_case())
    return {"a": a, "b": b, "c": c, "nseg": nseg,
            "h": draw(st.one_of(st.integers(0, 0xFFFF), st.sampled_from(F16_SPECIALS))),
            "v": draw(fx_val), "f": draw(st.one_of(st.integers(0, 255), st.integers(0, 70))),
            "lanes": draw(lanes8)}


def special_cases() -> list[dict]:
    """Every ordered pair of SPECIALS (a, b), with c, h, lanes cycling through the specials too."""
    out = []
    n = len(SPECIALS)
    for i, a in enumerate(SPECIALS):
        for j, b in enumerate(SPECIALS):
            k = i * n + j
            out.append({"a": a, "b": b, "c": SPECIALS[(i + j) % n], "nseg": [1, 3, 512][k % 3],
                        "h": F16_SPECIALS[k % len(F16_SPECIALS)], "v": [0, 1, -1, 2 ** 63 - 1, -2 ** 63][k % 5],
                        "f": k % 256, "lanes": [SPECIALS[(k + 7 * q) % n] for q in range(8)]})
    return out


#: terms of reductions: moderate magnitudes (to exercise rounding in the adds), signed zeros, specials
_term = st.one_of(st.builds(_bits, st.integers(0, 1), st.integers(118, 136), st.integers(0, 0x7FFFFF)),
                  st.sampled_from([0, 0x80000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FFFFF,
                                   0x00000001, 0x80000001]),
                  st.integers(0, 2 ** 32 - 1))
#: terms without NaN/inf (most reductions, so that rounding differences are visible)
_finite = st.builds(_bits, st.integers(0, 1), st.integers(100, 140), st.integers(0, 0x7FFFFF))


def seq_cases(tree_lanes: int) -> list[dict]:
    cfg = [(8, tree_lanes), (2, 8), (4, 4), (1, 4)]
    out = []
    for inst, (ln, t) in enumerate(cfg):
        edges = sorted({1, max(1, ln - 1), ln, ln + 1, t - 1, t, t + 1, 2 * t, 2 * t + 1, 3 * t - 1})

        @st.composite
        def red(draw, inst=inst, edges=edges, t=t):
            k = draw(st.one_of(st.sampled_from(edges), st.integers(1, 3 * t + 1)))
            terms = draw(st.lists(st.one_of(_finite, _finite, _term), min_size=k, max_size=k))
            return {"inst": inst, "terms": terms}

        out += draw_cases(red())
        # signed-zero and special-value patterns at the edges
        for k in edges:
            for pat in ([0x80000000], [0x80000000, 0], [0x7F800000, 0xFF800000], [0x80000000, 0x7FC00000],
                        [0x80000000] * 3 + [0xBF800000]):
                out.append({"inst": inst, "terms": [pat[i % len(pat)] for i in range(k)]})
    return out


def test_fp_lint():
    """verilator --lint-only -Wall is clean for every fp module (tiny and vcu128) and the test top."""
    srcs = build.rtl_sources("fp")
    for target in ("tiny", "vcu128"):
        for top in FP_MODULES:
            build.lint(top, srcs, target=target)
        build.lint("fp_tb", srcs + build.rtl_sources("tb/fp_tb.sv"), target=target)


def _run(tmp_path, comb, seq):
    tree_lanes = get_target("tiny").tree_lanes
    env = write_cases(tmp_path, {"comb": comb, "seq": seq})
    env["DLAVM_FP_TREE_LANES"] = str(tree_lanes)
    res = build.run_cocotb("fp_tb", build.rtl_sources("fp", "tb/fp_tb.sv"), "cocotb_fp", test_dir=BENCHES,
                           name="fp_tb", extra_env=env)
    assert res.tests == 2 and res.failed == 0


def test_fp_blocks(tmp_path):
    """Hypothesis operand records (EXAMPLES of them) + every pair of special values through every block;
    reductions (EXAMPLES per tree_sum_seq instance + signed-zero/inf/NaN patterns at the tile edges)."""
    comb = draw_cases(comb_case()) + special_cases()
    _run(tmp_path, comb, seq_cases(get_target("tiny").tree_lanes))


@pytest.mark.rtl_full
def test_fp_exhaustive_fp16_and_bulk(tmp_path):
    """Every fp16 bit pattern through fp16_to_fp32 / fp16_to_fx (and its fp32 value with bit 12 flipped, the
    fp16 half-way point for fp16 normals, through fp32_to_fp16), plus BULK seeded random operand records
    (uniform bit patterns and random exponents near the edges) through every block."""
    comb = []
    for h in range(1 << 16):
        a = int(np.uint16(h).view(np.float16).astype(np.float32).view(np.uint32))
        comb.append({"a": a ^ (0x1000 if (a >> 23) & 0xFF not in (0, 255) else 0), "b": a, "c": a, "nseg": 1,
                     "h": h, "v": h, "f": h & 0xFF, "lanes": [a] * 8})
    rng = np.random.default_rng(12)
    n = BULK
    bits = rng.integers(0, 2 ** 32, size=(n, 11), dtype=np.uint64)
    # half of the operands: exponent redrawn from the edges (subnormal, near 1, near overflow, fp16 range)
    edge_exp = rng.choice([0, 1, 2, 25, 102, 103, 112, 113, 126, 127, 128, 142, 143, 253, 254], size=(n, 11))
    use = rng.random((n, 11)) < 0.5
    bits = np.where(use, (bits & np.uint64(0x807FFFFF)) | (edge_exp.astype(np.uint64) << np.uint64(23)), bits)
    for i in range(n):
        r = [int(x) for x in bits[i]]
        comb.append({"a": r[0], "b": r[1], "c": r[2], "nseg": int(r[3] % 600), "h": r[3] >> 16,
                     "v": int(rng.integers(-2 ** 63, 2 ** 63 - 1)) >> int(rng.integers(0, 64)),
                     "f": int(rng.integers(0, 256)), "lanes": r[3:11]})
    _run(tmp_path, comb, [])


#: seeded random records of the full run
BULK = 30000
