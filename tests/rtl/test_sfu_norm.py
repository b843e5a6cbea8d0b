"""RTL of the SFU's rmsnorm / layernorm (units/sfu_norm.sv) and softmax (units/sfu_softmax.sv), through the
``sfu`` wrapper (units/sfu.sv), against the simulator, bit for bit (doc/isa.md 7.1, 7.5, 7.6; bench:
benches/cocotb_sfu_norm.py).

Cases are drawn by hypothesis (derandomized): rows and cols at the lane and tree edges (1, lanes-1, lanes,
lanes+1, TREE_LANES-1, TREE_LANES, TREE_LANES+1, larger), eps values, softmax causal on/off with m / pos0
variants (all columns valid, some masked, only column 0 valid), in_fp32 on/off, special values (+-0,
subnormals, +-inf, large, -inf scores, NaN in a few), in-place outputs, port stalls and latencies, and the
illegal instructions of section 8 that must end with err. The toplevel is the ``sfu`` wrapper when every
sub-block source exists, else sfu_norm / sfu_softmax directly. Cycle counts vs the compute-cycle formula are
printed (pytest -s).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import strategies as st

from dlavm.target import get_target
from hw_models.rtl.build import RTL_DIR, lint, rtl_sources, run_cocotb
from tests.rtl.conftest import BENCHES, EXAMPLES, draw_cases, write_cases

TGT = get_target("tiny")
L = TGT.sfu_lanes
T = TGT.tree_lanes
REGIONS = {r.name: r for r in TGT.figures.regions}
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
                     0x7C00, 0xFC00, 0x3C00, 0xBC00, 0x5A00, 0xDA00], np.uint16)
HELPERS = ["units/sfu_row_reader.sv", "units/sfu_row_writer.sv"]
SUB_FILES = {"sfu_norm": ["units/sfu_norm.sv", *HELPERS], "sfu_softmax": ["units/sfu_softmax.sv", *HELPERS]}
WRAPPER_FILES = ["units/sfu.sv", "units/sfu_norm.sv", "units/sfu_softmax.sv", "units/sfu_elt.sv",
                 "units/sfu_rope.sv", "units/sfu_kv.sv", *HELPERS]
OP_BLOCK = {"rmsnorm": "sfu_norm", "layernorm": "sfu_norm", "softmax": "sfu_softmax"}


def _place(region: str, off: int):
    r = REGIONS[region]
    nxt = [r.base + off * 32]

    def take(nbytes: int) -> int:
        a = nxt[0]
        nxt[0] += -(-nbytes // 32) * 32 + 64
        assert nxt[0] <= r.end
        return a
    return take


def _junk(rng, n: int) -> str:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes().hex()


def _f16(rng, n: int, specials: bool, scale: float, nan: bool) -> np.ndarray:
    x = (rng.standard_normal(n) * scale).astype(np.float16).view(np.uint16)
    if specials and n:
        k = max(1, n // 8)
        x[rng.integers(0, n, k)] = SPECIALS[rng.integers(0, SPECIALS.size, k)]
    if nan and n:
        x[rng.integers(0, n)] = 0x7E00
    return x


# ------------------------------------------------------------------ strategies
COLS = st.one_of(st.sampled_from([1, 2, L - 1, L, L + 1, 2 * L + 3, T - 1, T, T + 1, 2 * T - 1, 2 * T + L + 1,
                                  33, 100, 1000]), st.integers(1, 700))
ROWS = st.one_of(st.sampled_from([1, 2, 3, 5]), st.integers(1, 9))
COMMON = dict(region=st.sampled_from(sorted(REGIONS)), off=st.integers(0, 40), seed=st.integers(0, 2**31 - 1),
              specials=st.booleans(), nan=st.sampled_from([False, False, False, True]),
              stall=st.sampled_from([0.0, 0.0, 0.3]), latency=st.sampled_from([1, 3, 7]),
              inplace=st.sampled_from([False, False, True]))
EPS = st.sampled_from([0x3727C5AC, 0x358637BD, 0x00000000, 0x00000001, 0x3F800000, 0x2EDBE6FF])   # 1e-5, 1e-6, ...


@st.composite
def norm_case(draw, kind: str):
    return dict(kind=kind, rows=draw(ROWS), cols=draw(COLS),
                eps=draw(EPS), scale=draw(st.sampled_from([0.01, 1.0, 30.0, 3000.0])),
                **{k: draw(v) for k, v in COMMON.items()})


@st.composite
def softmax_case(draw):
    rows, cols = draw(ROWS), draw(COLS)
    m = draw(st.one_of(st.just(rows), st.just(1), st.integers(1, rows + 2)))
    pos0 = draw(st.one_of(st.just(0), st.just(max(0, cols - m)), st.just(cols), st.integers(0, cols + 3)))
    return dict(kind="softmax", rows=rows, cols=cols, m=m, pos0=pos0, causal=draw(st.booleans()),
                in_fp32=draw(st.booleans()), scale=draw(st.sampled_from([0.5, 4.0, 40.0])),
                neginf=draw(st.booleans()), **{k: draw(v) for k, v in COMMON.items()})


# ------------------------------------------------------------------ cases
def build(c: dict, name: str) -> dict:
    """The instruction, memory writes and compared ranges of one drawn case."""
    rng = np.random.default_rng(c["seed"])
    take = _place(c["region"], c["off"])
    r, n = c["rows"], c["cols"]
    writes = []
    if c["kind"] in ("rmsnorm", "layernorm"):
        src = take(r * n * 2)
        gam = take(n * 2)
        bet = take(n * 2)
        dst = src if c["inplace"] else take(r * n * 2)
        if not c["inplace"]:
            writes.append((dst, _junk(rng, r * n * 2 + 64)))
        writes += [(src, _f16(rng, r * n, c["specials"], c["scale"], c["nan"]).tobytes().hex()),
                   (gam, _f16(rng, n, c["specials"], 1.0, False).tobytes().hex()),
                   (bet, _f16(rng, n, c["specials"], 1.0, False).tobytes().hex())]
        eps = float(np.array([c["eps"]], np.uint32).view(np.float32)[0])
        fields = dict(src=src, dst=dst, gamma=gam, rows=r, cols=n, eps=eps)
        if c["kind"] == "layernorm":
            fields["beta"] = bet
    else:
        esz = 4 if c["in_fp32"] else 2
        src = take(r * n * esz)
        dst = src if (c["inplace"] and not c["in_fp32"]) else take(r * n * 2)
        if dst != src:
            writes.append((dst, _junk(rng, r * n * 2 + 64)))
        if c["in_fp32"]:
            x = (rng.standard_normal(r * n) * c["scale"]).astype(np.float32)
            if c["specials"]:
                k = max(1, r * n // 8)
                x[rng.integers(0, r * n, k)] = np.array([0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38, 1e-3, 100.0],
                                                        np.float32)[rng.integers(0, 8, k)]
            if c["nan"]:
                x[rng.integers(0, r * n)] = np.nan
            if c["neginf"]:
                x[rng.integers(0, r * n, max(1, r * n // 4))] = -np.inf
            data = x.tobytes()
        else:
            x = _f16(rng, r * n, c["specials"], c["scale"], c["nan"])
            if c["neginf"]:
                x[rng.integers(0, r * n, max(1, r * n // 4))] = 0xFC00
            data = x.tobytes()
        writes.append((src, data.hex()))
        fields = dict(in_fp32=c["in_fp32"], causal=c["causal"], src=src, dst=dst, rows=r, cols=n, m=c["m"],
                      pos0=c["pos0"])
    checks = [(dst, r * n * 2 + (0 if dst == src else 64))]
    return dict(name=name, op=c["kind"], fields=fields, writes=writes, checks=checks, stall=c["stall"],
                latency=c["latency"])


def illegal_cases() -> list[dict]:
    """Instructions doc/isa.md section 8 refuses (a size field 0): the RTL must end them with err."""
    s = REGIONS["sram"].base
    raw = [
        ("rmsnorm", dict(src=s, dst=s + 4096, gamma=s + 8192, rows=0, cols=16, eps=1e-5)),
        ("rmsnorm", dict(src=s, dst=s + 4096, gamma=s + 8192, rows=2, cols=0, eps=1e-5)),
        ("layernorm", dict(src=s, dst=s + 4096, gamma=s + 8192, beta=s + 8192, rows=0, cols=3, eps=1e-5)),
        ("layernorm", dict(src=s, dst=s + 4096, gamma=s + 8192, beta=s + 8192, rows=1, cols=0, eps=1e-5)),
        ("softmax", dict(src=s, dst=s + 4096, rows=0, cols=8, m=1, pos0=0)),
        ("softmax", dict(src=s, dst=s + 4096, rows=1, cols=0, m=1, pos0=0)),
        ("softmax", dict(src=s, dst=s + 4096, rows=1, cols=8, m=0, pos0=0, causal=1)),
    ]
    return [dict(name=f"illegal{i}_{op}", op=op, fields=f, writes=[], checks=[], stall=0.0, latency=3)
            for i, (op, f) in enumerate(raw)]


ROWCAP = 8192   # sfu_norm / sfu_softmax parameter: longer rows end with err_code 2 (documented deviation)


def limit_cases() -> list[dict]:
    """Legal instructions beyond the implementation's row buffer: the RTL must end them with err code 2."""
    s = REGIONS["hbm"].base
    raw = [
        ("rmsnorm", dict(src=s, dst=s + 65536, gamma=s + 131072, rows=1, cols=ROWCAP + 1, eps=1e-5)),
        ("softmax", dict(src=s, dst=s + 65536, rows=1, cols=ROWCAP + 1, m=1, pos0=0)),
    ]
    out = [dict(name=f"limit{i}_{op}", op=op, fields=f, writes=[], checks=[], stall=0.0, latency=3, rtl_err=2)
           for i, (op, f) in enumerate(raw)]
    # not an SFU opcode (the front end never sends one): the wrapper ends it with err code 0xFF
    return out + [dict(name="wrapper_not_sfu", op="dma", fields=dict(src=s, dst=s + 4096, row_bytes=32, rows=1),
                       writes=[], checks=[], stall=0.0, latency=3, rtl_err=0xFF)]


def all_cases() -> list[dict]:
    out = []
    for strat, tag in ((norm_case("rmsnorm"), "rms"), (norm_case("layernorm"), "ln"), (softmax_case(), "softmax")):
        for i, c in enumerate(draw_cases(strat, (2 if tag == "softmax" else 1) * EXAMPLES)):
            out.append(build(c, f"{tag}{i}:{json.dumps(c, sort_keys=True)}"))
    return out + illegal_cases() + limit_cases()


def _wrapper_present() -> bool:
    return all((RTL_DIR / f).is_file() for f in WRAPPER_FILES)


def test_sfu_norm_softmax(tmp_path):
    cases = all_cases()
    runs = [("sfu", WRAPPER_FILES, cases)] if _wrapper_present() else \
        [(blk, SUB_FILES[blk], [c for c in cases if OP_BLOCK.get(c["op"]) == blk]) for blk in SUB_FILES]
    report = []
    for top, files, cs in runs:
        env = write_cases(tmp_path, cs, f"cases_{top}.json")
        cyc = tmp_path / f"cycles_{top}.json"
        env["DLAVM_RTL_CYCLES"] = str(cyc)
        run_cocotb(top, rtl_sources("fp", *files), "cocotb_sfu_norm", test_dir=BENCHES, name=f"{top}_norm",
                   extra_env=env)
        report += json.loads(cyc.read_text())
    by_op: dict[str, list] = {}
    for r in report:
        by_op.setdefault(r["op"], []).append(r)
    for op, rs in sorted(by_op.items()):   # cycles vs the compute-cycle formula (shown with -s)
        nost = [r for r in rs if not r["stall"]]
        big = [r for r in nost if r["formula"] >= 64]
        ratio = [r["cycles"] / r["formula"] for r in big]
        print(f"{op}: {len(rs)} cases; no-stall cycles/formula for formula>=64: "
              f"{min(ratio, default=0):.2f}..{max(ratio, default=0):.2f} over {len(big)}")
    if _wrapper_present():
        assert len(report) + len(illegal_cases()) + len(limit_cases()) == len(cases)


@pytest.mark.parametrize("target", ["tiny", "vcu128"])
@pytest.mark.parametrize("top", sorted(SUB_FILES) + ["sfu"])
def test_sfu_norm_lint(top, target):
    files = WRAPPER_FILES if top == "sfu" else SUB_FILES[top]
    if top == "sfu" and not _wrapper_present():
        pytest.skip("the sfu wrapper's sub-blocks are not all present yet")
    lint(top, rtl_sources("fp", *files), target=target)
