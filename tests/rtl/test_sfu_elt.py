"""RTL of the SFU's eltwise / act (units/sfu_elt.sv), rope (units/sfu_rope.sv) and kv_append (units/sfu_kv.sv)
against the simulator, bit for bit (doc/isa.md 7.5, 7.6; bench: benches/cocotb_sfu_elt.py).

Cases are drawn by hypothesis (derandomized): sizes at the lane edges (1, lanes-1, lanes, lanes+1, odd,
large), eltwise periods (0, count, divisors), every fn, act with the built-in PWL tables, rope halves and
interleaved at pos0 edges, kv_append at pos/capacity edges, operands in every region, in-place outputs,
special values (+-0, subnormals, +-inf, NaN, max finite), port stalls, and illegal instructions (section 8)
that must end with err. The toplevel is the ``sfu`` wrapper when its sources are all present (that also
tests its port muxing), else each sub-block directly.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import strategies as st

from dlavm.target import get_target, pwl
from hw_models.rtl.build import RTL_DIR, lint, rtl_sources, run_cocotb
from tests.rtl.conftest import BENCHES, EXAMPLES, draw_cases, write_cases

TGT = get_target("tiny")
L = TGT.sfu_lanes
REGIONS = {r.name: r for r in TGT.figures.regions}
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
                     0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x3C00, 0xBC00], np.uint16)
SUB_FILES = {"sfu_elt": ["units/sfu_elt.sv"], "sfu_rope": ["units/sfu_rope.sv"], "sfu_kv": ["units/sfu_kv.sv"]}
WRAPPER_MAIN = ["units/sfu.sv", "units/sfu_norm.sv", "units/sfu_softmax.sv",
                "units/sfu_elt.sv", "units/sfu_rope.sv", "units/sfu_kv.sv"]
OP_BLOCK = {"eltwise": "sfu_elt", "act": "sfu_elt", "rope": "sfu_rope", "kv_append": "sfu_kv"}


# ------------------------------------------------------------------ data
def _f16(rng, n: int, specials: bool, scale: float = 4.0) -> np.ndarray:
    x = (rng.standard_normal(n) * scale).astype(np.float16).view(np.uint16)
    if specials and n:
        k = max(1, n // 6)
        x[rng.integers(0, n, k)] = SPECIALS[rng.integers(0, SPECIALS.size, k)]
    return x


class _Place:
    """Allocates 32-byte aligned operands in one region."""

    def __init__(self, region: str, off: int):
        self.r = REGIONS[region]
        self.next = self.r.base + off * 32

    def take(self, nbytes: int) -> int:
        a = self.next
        self.next += -(-nbytes // 32) * 32 + 64
        assert self.next <= self.r.end
        return a


def _junk(rng, n: int) -> str:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes().hex()


# ------------------------------------------------------------------ strategies
SIZES = st.one_of(st.sampled_from([1, L - 1, L, L + 1, 2 * L - 1, 2 * L + 1, 15, 16, 17, 31, 32, 33, 63, 65,
                                   127, 129, 257, 1001]), st.integers(1, 3000))
COMMON = dict(region=st.sampled_from(sorted(REGIONS)), off=st.integers(0, 40), seed=st.integers(0, 2**31 - 1),
              specials=st.booleans(), stall=st.sampled_from([0.0, 0.0, 0.3]))


@st.composite
def eltwise_case(draw):
    count = draw(SIZES)
    divs = [p for p in range(1, min(count, 400) + 1) if count % p == 0]
    period = draw(st.one_of(st.just(0), st.just(count), st.sampled_from(divs)))
    return dict(kind="eltwise", count=count, period=period, fn=draw(st.sampled_from(["add", "sub", "mul"])),
                inplace=draw(st.sampled_from(["", "", "a", "b"])), **{k: draw(v) for k, v in COMMON.items()})


@st.composite
def act_case(draw):
    return dict(kind="act", count=draw(SIZES), table=draw(st.sampled_from(["silu", "gelu", "sigmoid", "exp"])),
                inplace=draw(st.booleans()), **{k: draw(v) for k, v in COMMON.items()})


@st.composite
def rope_case(draw):
    m = draw(st.sampled_from([1, 1, 2, 3, 5, 8]))
    return dict(kind="rope", m=m, heads=draw(st.sampled_from([1, 2, 3, 4])),
                d=draw(st.sampled_from([8, 16, 24, 32, 40, 64, 72, 128])),
                pos0=draw(st.one_of(st.just(0), st.just(TGT.max_seq_len - m), st.integers(0, TGT.max_seq_len - m))),
                interleaved=draw(st.booleans()), inplace=draw(st.booleans()),
                **{k: draw(v) for k, v in COMMON.items()})


@st.composite
def kv_case(draw):
    m = draw(st.sampled_from([1, 1, 2, 3, 7]))
    cap = draw(st.sampled_from([m, m + 1, 16, TGT.max_seq_len]))
    cap = max(cap, m)
    d = draw(st.sampled_from([16, 32, 48, 64, 128]))
    return dict(kind="kv_append", m=m, kv_heads=draw(st.sampled_from([1, 2, 3, 4])), d=d, capacity=cap,
                pos=draw(st.one_of(st.just(0), st.just(cap - m), st.integers(0, cap - m))),
                pad=draw(st.sampled_from([0, 0, 1, 3])), **{k: draw(v) for k, v in COMMON.items()})


# ------------------------------------------------------------------ cases
def build(c: dict, name: str) -> dict:
    """The instruction, memory writes and compared ranges of one drawn case."""
    rng = np.random.default_rng(c["seed"])
    pl = _Place(c["region"], c["off"])
    writes, checks = [], []
    k = c["kind"]
    if k == "eltwise":
        n, p = c["count"], c["period"]
        a = pl.take(n * 2)
        b = pl.take((p or n) * 2)
        dst = {"a": a, "b": b}.get(c["inplace"], 0) if (c["inplace"] != "b" or p in (0, n)) else 0
        dst = dst or pl.take(n * 2)
        writes += [(dst, _junk(rng, n * 2 + 64))]
        writes += [(a, _f16(rng, n, c["specials"]).tobytes().hex()), (b, _f16(rng, p or n, c["specials"]).tobytes().hex())]
        fields = dict(fn=c["fn"], a=a, b=b, dst=dst, count=n, period=p)
        checks = [(dst, n * 2 + 64, "f16")]
    elif k == "act":
        n = c["count"]
        tab = pwl.table(c["table"])
        src = pl.take(n * 2)
        t = pl.take(len(tab.to_bytes()))
        dst = src if c["inplace"] else pl.take(n * 2)
        lo, hi = tab.lo, tab.hi
        x = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), n).astype(np.float16).view(np.uint16)
        if c["specials"]:
            x[rng.integers(0, n, max(1, n // 6))] = SPECIALS[rng.integers(0, SPECIALS.size, max(1, n // 6))]
        if not c["inplace"]:
            writes.append((dst, _junk(rng, n * 2 + 64)))
        writes += [(src, x.tobytes().hex()), (t, tab.to_bytes().hex())]
        fields = dict(src=src, dst=dst, table=t, count=n, nseg=tab.nseg, lo=tab.lo_f32, inv_step=tab.inv_step)
        checks = [(dst, n * 2 + (0 if c["inplace"] else 64), "f16")]
    elif k == "rope":
        m, h, d, p0 = c["m"], c["heads"], c["d"], c["pos0"]
        n = m * h * d
        src = pl.take(n * 2)
        table = pl.take((p0 + m) * d * 4)
        dst = src if c["inplace"] else pl.take(n * 2)
        if not c["inplace"]:
            writes.append((dst, _junk(rng, n * 2 + 64)))
        ang = rng.uniform(-7, 7, (m, d // 2))
        tab = np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
        writes += [(src, _f16(rng, n, c["specials"], 2.0).tobytes().hex()), (table + p0 * d * 4, tab.tobytes().hex())]
        fields = dict(interleaved=c["interleaved"], src=src, dst=dst, table=table, m=m, heads=h, d=d, pos0=p0)
        checks = [(dst, n * 2 + (0 if c["inplace"] else 64), "f16")]
    else:
        m, hkv, d, cap, pos = c["m"], c["kv_heads"], c["d"], c["capacity"], c["pos"]
        hs = cap * d * 2 + c["pad"] * 32
        src = pl.take(m * hkv * d * 2)
        dst = pl.take(hkv * hs)
        writes += [(dst, _junk(rng, hkv * hs)), (src, _f16(rng, m * hkv * d, True).tobytes().hex())]
        fields = dict(src=src, dst=dst, m=m, kv_heads=hkv, d=d, pos=pos, head_stride=hs, capacity=cap)
        checks = [(dst, hkv * hs, "bytes")]
    return dict(name=name, op=k, fields=fields, writes=writes, checks=checks, stall=c["stall"])


def illegal_cases() -> list[dict]:
    """Instructions doc/isa.md section 8 refuses: the RTL must end them with err (and touch nothing)."""
    s = REGIONS["sram"].base
    hbm_end = REGIONS["hbm"].end
    raw = [
        ("eltwise", dict(fn="add", a=s, b=s + 256, dst=s + 512, count=0)),
        ("eltwise", dict(fn="add", a=s, b=s + 256, dst=s + 512, count=10, period=3)),
        ("eltwise", dict(fn="mul", a=hbm_end - 64, b=s, dst=s + 512, count=64)),
        ("act", dict(src=s, dst=s + 256, table=s + 512, count=4, nseg=0, lo=-1.0, inv_step=1.0)),
        ("act", dict(src=s, dst=s + 256, table=s + 512, count=0, nseg=4, lo=-1.0, inv_step=1.0)),
        ("rope", dict(src=s, dst=s, table=s + 4096, m=1, heads=1, d=12, pos0=0)),
        ("rope", dict(src=s, dst=s, table=s + 4096, m=2, heads=1, d=8, pos0=TGT.max_seq_len - 1)),
        ("rope", dict(src=s, dst=s, table=s + 4096, m=0, heads=1, d=8, pos0=0)),
        ("kv_append", dict(src=s, dst=s + 4096, m=2, kv_heads=1, d=16, pos=15, head_stride=512, capacity=16)),
        ("kv_append", dict(src=s, dst=s + 4096, m=1, kv_heads=2, d=16, pos=0, head_stride=480, capacity=16)),
        ("kv_append", dict(src=s, dst=s + 4096, m=1, kv_heads=1, d=24, pos=0, head_stride=1536, capacity=16)),
        ("kv_append", dict(src=s, dst=s + 4096, m=1, kv_heads=1, d=16, pos=0, head_stride=48, capacity=1)),
        ("kv_append", dict(src=s, dst=hbm_end - 512, m=1, kv_heads=2, d=16, pos=0, head_stride=512, capacity=16)),
    ]
    return [dict(name=f"illegal{i}_{op}", op=op, fields=f, writes=[], checks=[], stall=0.0)
            for i, (op, f) in enumerate(raw)]


def all_cases() -> list[dict]:
    out = []
    for strat, tag in ((eltwise_case(), "elt"), (act_case(), "act"), (rope_case(), "rope"), (kv_case(), "kv")):
        for i, c in enumerate(draw_cases(strat)):
            out.append(build(c, f"{tag}{i}:{json.dumps(c, sort_keys=True)}"))
    return out + illegal_cases()


def _wrapper_present() -> bool:
    return all((RTL_DIR / f).is_file() for f in WRAPPER_MAIN)


def _wrapper_files() -> list[str]:
    """The wrapper, every sub-block and the sub-blocks' private helpers (units/sfu*.sv)."""
    return sorted(f"units/{p.name}" for p in (RTL_DIR / "units").glob("sfu*.sv"))


def test_sfu_elt_rope_kv(tmp_path):
    cases = all_cases()
    runs = [("sfu", _wrapper_files(), cases)] if _wrapper_present() else \
        [(blk, SUB_FILES[blk], [c for c in cases if OP_BLOCK[c["op"]] == blk]) for blk in SUB_FILES]
    report = []
    for top, files, cs in runs:
        env = write_cases(tmp_path, cs, f"cases_{top}.json")
        cyc = tmp_path / f"cycles_{top}.json"
        env["DLAVM_RTL_CYCLES"] = str(cyc)
        run_cocotb(top, rtl_sources("fp", *files), "cocotb_sfu_elt", test_dir=BENCHES, name=f"{top}_elt",
                   extra_env=env)
        report += json.loads(cyc.read_text())
    by_op: dict[str, list] = {}
    for r in report:
        by_op.setdefault(r["op"], []).append(r)
    for op, rs in sorted(by_op.items()):   # cycles vs the compute-cycle formula (shown with -s)
        nost = [r for r in rs if not r["stall"]]
        ratio = [r["cycles"] / max(1, r["formula"]) for r in nost if r["formula"] >= 32]
        print(f"{op}: {len(rs)} cases; no-stall cycles/formula for formula>=32: "
              f"{min(ratio, default=0):.2f}..{max(ratio, default=0):.2f}")
    assert len(report) + len(illegal_cases()) == len(cases)
    assert EXAMPLES >= 1


@pytest.mark.parametrize("target", ["tiny", "vcu128"])
@pytest.mark.parametrize("top", sorted(SUB_FILES))
def test_sfu_elt_lint(top, target):
    lint(top, rtl_sources("fp", *SUB_FILES[top]), target=target)
