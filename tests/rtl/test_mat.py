"""RTL of the attention matrix unit (hw_models/rtl/units/mat_engine.sv): mat_qk and mat_pv against the
simulator, bit for bit (doc/isa.md 6, 7.1, 7.4, 9; bench: benches/cocotb_mat.py).

Cases are drawn by hypothesis (derandomized): GQA ratios 1, 2, 4 with 1..3 KV heads, M tokens 1..9, key
lengths L at the mat_tin / mat_tout / TREE_LANES edges (1, 7, 8, 9, 15, 16, 17, 31, 33, 127, 128, 129, 255,
256, ...), head dims D = 16..128, KV head strides larger than a head, scale values (1/sqrt(D), 1, -2, tiny,
huge), out_fp32 on/off, special values (+-0, subnormals, max finite, +-inf, NaN in a few), P rows that start
off a 32-byte boundary (L not a multiple of 16), every memory region, port stalls and read latencies; plus fixed shapes whose cycles
are compared with the compute-cycle formula (printed with pytest -s), and the illegal instructions of
section 8 that must end with err (and the documented err_code). Lint: tiny and vcu128.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import strategies as st

from dlavm.target import get_target
from hw_models.rtl.build import lint, rtl_sources, run_cocotb
from tests.rtl.conftest import BENCHES, EXAMPLES, draw_cases, write_cases

TGT = get_target("tiny")
TI, TO, T = TGT.mat_tin, TGT.mat_tout, TGT.tree_lanes
REGIONS = {r.name: r for r in TGT.figures.regions}
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
                     0x3C00, 0xBC00, 0x5A00, 0xDA00], np.uint16)
INFS = np.array([0x7C00, 0xFC00], np.uint16)
FILES = ["units/mat_engine.sv", "units/mat_packer.sv", "units/mat_fifo.sv", "units/mat_ram.sv"]


def sources():
    return rtl_sources("fp", *FILES)


def _place(region: str, off: int):
    r = REGIONS[region]
    nxt = [r.base + off * 32]

    def take(nbytes: int) -> int:
        a = nxt[0]
        nxt[0] += -(-nbytes // 32) * 32 + 64
        assert nxt[0] <= r.end, "case does not fit its region"
        return a
    return take


def _junk(rng, n: int) -> str:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes().hex()


def _f16(rng, n: int, scale: float, specials: bool, infs: bool, nan: bool, positive: bool = False) -> np.ndarray:
    x = rng.standard_normal(n) * scale
    if positive:
        x = np.abs(x)
    x = x.astype(np.float16).view(np.uint16)
    if specials and n:
        k = max(1, n // 10)
        x[rng.integers(0, n, k)] = SPECIALS[rng.integers(0, SPECIALS.size, k)]
    if infs and n:
        x[rng.integers(0, n, max(1, n // 64))] = INFS[rng.integers(0, 2, max(1, n // 64))]
    if nan and n:
        x[rng.integers(0, n)] = 0x7E00
    return x


# ------------------------------------------------------------------ strategies
L_EDGES = [1, 2, TO - 1, TO, TO + 1, TI - 1, TI, TI + 1, 31, 33, T - 1, T, T + 1, 2 * T - 1, 2 * T]
SCALES = [0x3E3504F3, 0x3F800000, 0xC0000000, 0x38D1B717, 0x461C4000, 0x3DB504F3]  # 1/sqrt(8), 1, -2, 1e-4, 1e4


@st.composite
def mat_case(draw):
    g = draw(st.sampled_from([1, 2, 4]))
    hkv = draw(st.sampled_from([1, 1, 2, 3]))
    l = draw(st.one_of(st.sampled_from(L_EDGES), st.integers(1, 200)))
    d = 16 * draw(st.one_of(st.sampled_from([1, 2, 4]), st.integers(1, 8)))
    m = draw(st.one_of(st.sampled_from([1, 1, 2, 3]), st.integers(1, 9)))
    while g * hkv * m * -(-l // TO) * -(-d // TI) > 6000:   # keep one case a few thousand cycles
        m = max(1, m // 2) if m > 1 else m
        if g * hkv * m * -(-l // TO) * -(-d // TI) > 6000:
            l = max(1, l // 2)
    return dict(op=draw(st.sampled_from(["mat_qk", "mat_pv"])), g=g, hkv=hkv, l=l, d=d, m=m,
                out_fp32=draw(st.booleans()), scale=draw(st.sampled_from(SCALES)),
                mag=draw(st.sampled_from([0.1, 1.0, 1.0, 30.0, 300.0])),
                spare_rows=draw(st.sampled_from([0, 0, 3, 40])),   # KV capacity beyond l (stride > l*d*2)
                region=draw(st.sampled_from(sorted(REGIONS))), off=draw(st.integers(0, 40)),
                seed=draw(st.integers(0, 2**31 - 1)), specials=draw(st.booleans()),
                infs=draw(st.sampled_from([False, False, False, True])),
                nan=draw(st.sampled_from([False, False, False, True])),
                stall=draw(st.sampled_from([0.0, 0.0, 0.3])), latency=draw(st.sampled_from([1, 3, 7])))


# ------------------------------------------------------------------ cases
def build(c: dict, name: str) -> dict:
    """The instruction, memory writes and compared ranges of one drawn case."""
    rng = np.random.default_rng(c["seed"])
    take = _place(c["region"], c["off"])
    g, hkv, l, d, m = c["g"], c["hkv"], c["l"], c["d"], c["m"]
    h = g * hkv
    cap = l + c["spare_rows"]
    stride = cap * d * 2
    writes = []
    kv = take(hkv * stride)
    writes.append((kv, _f16(rng, hkv * cap * d, 1.0, c["specials"], c["infs"], c["nan"]).tobytes().hex()))
    if c["op"] == "mat_qk":
        q = take(m * h * d * 2)
        writes.append((q, _f16(rng, m * h * d, c["mag"], c["specials"], c["infs"], c["nan"]).tobytes().hex()))
        esz = 4 if c["out_fp32"] else 2
        nout = h * m * l * esz
        out = take(nout + 64) + 32
        scale = float(np.array([c["scale"]], np.uint32).view(np.float32)[0])
        fields = dict(out_fp32=int(c["out_fp32"]), q=q, kc=kv, out=out, m=m, heads=h, kv_heads=hkv, l=l, d=d,
                      k_stride=stride, scale=scale)
    else:
        pb = take(h * m * l * 2 + 64)
        pdata = _f16(rng, h * m * l + 32, c["mag"] / 100, c["specials"], c["infs"], c["nan"], positive=True)
        writes.append((pb, pdata.tobytes().hex()))
        p = pb   # rows (h, m) start at p + (h*M + m)*L*2: off a 32-byte boundary unless 16 | L
        esz = 2
        nout = m * h * d * 2
        out = take(nout + 64) + 32
        fields = dict(p=p, vc=kv, out=out, m=m, heads=h, kv_heads=hkv, l=l, d=d, v_stride=stride)
    writes.append((out - 32, _junk(rng, nout + 64)))
    checks = [(out, nout, esz), (out - 32, 32, 2), (out + nout, 32, 2)]
    return dict(name=name, op=c["op"], fields=fields, writes=writes, checks=checks, stall=c["stall"],
                latency=c["latency"])


def perf_cases() -> list[dict]:
    """Fixed shapes (tiny Llama: 4 heads, 2 KV heads, D = 32) whose cycles are compared with the formula."""
    shapes = [  # (op, m, heads, kv_heads, l, d)
        ("mat_qk", 1, 4, 2, 128, 32), ("mat_pv", 1, 4, 2, 128, 32),
        ("mat_qk", 17, 4, 2, 17, 32), ("mat_pv", 17, 4, 2, 17, 32),
        ("mat_qk", 64, 4, 2, 64, 32), ("mat_pv", 64, 4, 2, 64, 32),
        ("mat_qk", 8, 4, 4, 256, 64), ("mat_pv", 8, 4, 4, 256, 64),
        ("mat_qk", 1, 8, 2, 256, 128), ("mat_pv", 1, 8, 2, 256, 128),
    ]
    out = []
    for i, (op, m, h, hkv, l, d) in enumerate(shapes):
        c = dict(op=op, g=h // hkv, hkv=hkv, l=l, d=d, m=m, out_fp32=True, scale=SCALES[0], mag=1.0,
                 spare_rows=0, region="hbm", off=0, seed=i, specials=False, infs=False, nan=False,
                 stall=0.0, latency=3)
        case = build(c, f"perf{i}:{op} m={m} h={h} hkv={hkv} l={l} d={d}")
        case["perf"] = True
        out.append(case)
    return out


def illegal_cases() -> list[dict]:
    """Instructions doc/isa.md section 8 refuses: the RTL must end them with err and the documented code."""
    s, hbm = REGIONS["sram"].base, REGIONS["hbm"].base
    qk = dict(out_fp32=0, q=s, kc=s + 8192, out=s + 65536, m=2, heads=4, kv_heads=2, l=16, d=32,
              k_stride=2048, scale=1.0)
    pv = dict(p=s, vc=s + 8192, out=s + 65536, m=2, heads=4, kv_heads=2, l=16, d=32, v_stride=2048)
    raw = [
        ("mat_qk", dict(qk, m=0), 1), ("mat_pv", dict(pv, l=0), 1), ("mat_qk", dict(qk, kv_heads=0), 1),
        ("mat_qk", dict(qk, heads=6, kv_heads=4), 2), ("mat_pv", dict(pv, heads=3), 2),
        ("mat_qk", dict(qk, d=24), 3), ("mat_pv", dict(pv, d=40, v_stride=4096), 3),
        ("mat_qk", dict(qk, k_stride=2048 + 16), 4), ("mat_pv", dict(pv, kv_heads=1, heads=2, v_stride=100), 4),
        ("mat_qk", dict(qk, k_stride=512), 5), ("mat_pv", dict(pv, v_stride=992), 5),
        ("mat_qk", dict(qk, kc=REGIONS["sram"].end - 2048), 6),
        ("mat_pv", dict(pv, out=REGIONS["hbm"].end - 64), 6),
        ("mat_qk", dict(qk, q=hbm + REGIONS["hbm"].size - 32, m=1), 6),
    ]
    return [dict(name=f"illegal{i}_{op}", op=op, fields=f, writes=[], checks=[], stall=0.0, latency=3,
                 err_code=code) for i, (op, f, code) in enumerate(raw)]


def all_cases() -> list[dict]:
    cases = [build(c, f"mat{i}:{json.dumps(c, sort_keys=True)}") for i, c in enumerate(draw_cases(mat_case(),
                                                                                                   2 * EXAMPLES))]
    return cases + perf_cases() + illegal_cases()


def test_mat(tmp_path):
    cases = all_cases()
    env = write_cases(tmp_path, cases, "cases_mat.json")
    cyc = tmp_path / "cycles_mat.json"
    env["DLAVM_RTL_CYCLES"] = str(cyc)
    run_cocotb("mat_engine", sources(), "cocotb_mat", test_dir=BENCHES, name="mat_engine", extra_env=env)
    report = json.loads(cyc.read_text())
    pb = 64   # tiny's PORT_BYTES: the bench memory returns one beat per cycle
    print(f"\n{'case':44s} {'cycles':>7s} {'formula':>7s} {'rd_beats':>8s} {'bound':>6s} {'cyc/formula':>11s} "
          f"{'cyc/bound':>9s} {'reqs':>5s}")
    for r in report:   # cycles vs the compute-cycle formula and vs max(formula, read beats) (shown with -s)
        if r["perf"]:
            beats = -(-r["read_bytes"] // pb)
            bound = max(r["formula"], beats)
            print(f"{r['name'][:44]:44s} {r['cycles']:7d} {r['formula']:7d} {beats:8d} {bound:6d} "
                  f"{r['cycles'] / r['formula']:11.2f} {r['cycles'] / bound:9.2f} {r['read_requests']:5d}")
    assert len(report) + len(illegal_cases()) == len(cases)


@pytest.mark.parametrize("target", ["tiny", "vcu128"])
def test_mat_lint(target):
    lint("mat_engine", sources(), target=target)
