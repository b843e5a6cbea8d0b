"""RTL of the MVM unit (hw_models/rtl/units/mvm_engine.sv) against the simulator, bit for bit (doc/isa.md
6, 7.2, 7.3, section 9 ``mvm``; bench: benches/cocotb_mvm.py).

Cases are drawn by hypothesis (derandomized): every wfmt, affine on/off, res none/add/mul, relu, argmax (the
records and the res_idx/res_val outputs), out_fp32; M, K, N at the edges of tin, tout, int4_group and
int8_block (one less, equal, one more, odd) and across a k-segment; operands in every region at 32-byte
offsets; random values with special values in x (+-0, subnormals, max finite, +-inf, NaN) and in fp16
weights; port stalls; illegal instructions (section 8) that must end with err. Expected = hw_models.Simulator
("tiny") executing the same instruction on the same memory.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import strategies as st

from dlavm.target import get_target
from hw_models.rtl.build import lint, rtl_sources, run_cocotb
from tests.rtl.conftest import BENCHES, EXAMPLES, draw_cases, write_cases

TGT = get_target("tiny")
TIN, TOUT, G, B = TGT.tin, TGT.tout, TGT.int4_group, TGT.int8_block
REGIONS = {r.name: r for r in TGT.figures.regions}
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
                     0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x3C00, 0xBC00], np.uint16)
FINITE_SPECIALS = SPECIALS[(SPECIALS & 0x7C00) != 0x7C00]
SOURCES = ["units/mat_ram.sv", "units/mvm_lane.sv", "units/mvm_lring.sv", "units/mvm_engine.sv"]
# modules not inlined and -O0: the ~400 fp units then share their code, which keeps the C++ small enough to
# compile in about a minute (inlined and -Os, it took over 20 minutes on a loaded 2-core machine)
BUILD_ARGS = ["-fno-inline", "-CFLAGS", "-O0"]

KS = [1, 2, TIN - 1, TIN, TIN + 1, 2 * TIN + 3, B - 1, B, B + 1, G - 1, G, G + 1, 2 * G + 5, 33, 77, 300]
NS = [1, 2, TOUT - 1, TOUT, TOUT + 1, 2 * TOUT + 3, 17, 33, 40]
MS = [1, 2, 3, 5, 17]


def _f16(rng, shape, specials: str, scale: float = 1.0) -> np.ndarray:
    x = (rng.standard_normal(shape) * scale).astype(np.float16).view(np.uint16)
    n = x.size
    if specials != "none" and n:
        pool = SPECIALS if specials == "all" else FINITE_SPECIALS
        k = max(1, n // 8)
        x.flat[rng.integers(0, n, k)] = pool[rng.integers(0, pool.size, k)]
    return x


class _Place:
    def __init__(self, region: str, off: int):
        self.r = REGIONS[region]
        self.next = self.r.base + off * 32

    def take(self, nbytes: int) -> int:
        a = self.next
        self.next += -(-nbytes // 32) * 32 + 32 * 3
        assert self.next <= self.r.end, "operands do not fit the region"
        return a


@st.composite
def mvm_case(draw, wfmt: str):
    # derandomized draws depend only on the draw sequence: a few leading draws per format give each
    # format's property its own shapes
    for _ in range(3 * ["int4", "int8", "fp16"].index(wfmt)):
        draw(st.integers(0, 255))
    m = draw(st.one_of(st.sampled_from(MS), st.integers(1, 24)))
    k = draw(st.one_of(st.sampled_from(KS), st.integers(1, 400)))
    n = draw(st.one_of(st.sampled_from(NS), st.integers(1, 50)))
    argmax = draw(st.booleans())
    return dict(wfmt=wfmt, m=m, k=k, n=n, affine=draw(st.booleans()),
                res=draw(st.sampled_from(["none", "add", "mul"])), relu=draw(st.booleans()), argmax=argmax,
                out_fp32=(not argmax) and draw(st.booleans()),
                xspec=draw(st.sampled_from(["none", "finite", "all"])),
                wspec=draw(st.sampled_from(["none", "none", "all"])),
                regions=[draw(st.sampled_from(sorted(REGIONS))) for _ in range(3)],
                off=draw(st.integers(0, 20)), seed=draw(st.integers(0, 2**31 - 1)),
                stall=draw(st.sampled_from([0.0, 0.0, 0.3])), latency=draw(st.sampled_from([1, 3, 9])),
                inplace=draw(st.sampled_from([False, False, True])))


def build_case(c: dict, name: str) -> dict:
    """Fields (byte addresses), memory writes and the ranges to compare for a drawn case."""
    rng = np.random.default_rng(c["seed"])
    m, k, n, wfmt = c["m"], c["k"], c["n"], c["wfmt"]
    places = {r: _Place(r, c["off"] + 1) for r in set(c["regions"])}   # one allocator per region
    pw, pa, po = (places[r] for r in c["regions"])
    writes = []

    def put(place, data: bytes) -> int:
        a = place.take(len(data))
        writes.append((a, data.hex()))
        return a

    x = _f16(rng, (m, k), c["xspec"], 2.0)
    if wfmt == "int4":
        kp = -(-k // G) * G
        q = rng.integers(-8, 8, (n, kp))
        q[:, k:] = 0
        nib = (q & 0xF).astype(np.uint8)
        w = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8).tobytes()
        ws = _f16(rng, (n, kp // G), "none", 0.05).tobytes()
    elif wfmt == "int8":
        w = rng.integers(-128, 128, (n, k)).astype(np.int8).tobytes()
        ws = _f16(rng, (n,), "none", 0.01).tobytes()
    else:
        w = _f16(rng, (n, k), c["wspec"], 0.5).tobytes()
        ws = b""
    f = dict(wfmt=wfmt, affine=int(c["affine"]), res=c["res"], relu=int(c["relu"]), argmax=int(c["argmax"]),
             out_fp32=int(c["out_fp32"]), m=m, k=k, n=n)
    f["x"] = put(pa, x.tobytes())
    f["w"] = put(pw, w)
    f["wscale"] = put(pw, ws) if ws else 0
    f["aff"] = put(pa, _f16(rng, (2, n), "finite", 1.0).tobytes()) if c["affine"] else 0
    f["resid"] = put(pa, _f16(rng, (m, n), "finite", 1.0).tobytes()) if c["res"] != "none" else 0
    out_bytes = m * 8 if c["argmax"] else m * n * (4 if c["out_fp32"] else 2)
    if c.get("inplace") and c["res"] != "none" and not c["argmax"] and not c["out_fp32"]:
        # out = resid (an in-place residual, as a compiler may emit): the pad around it is resid's own
        f["out"] = f["resid"]
        kind = "f16"
        return dict(name=name, fields=f, writes=writes, checks=[(f["out"], out_bytes, kind)],
                    stall=c["stall"], latency=c["latency"])
    # the output range and 64 bytes either side, pre-filled with junk: nothing outside it may change
    a = po.take(out_bytes + 128) + 64
    writes.append((a - 64, rng.integers(0, 256, out_bytes + 128, dtype=np.uint8).tobytes().hex()))
    f["out"] = a
    kind = "rec" if c["argmax"] else ("f32" if c["out_fp32"] else "f16")
    return dict(name=name, fields=f, writes=writes, checks=[(a - 64, 64, "raw"), (a, out_bytes, kind),
                                                           (a + out_bytes, 64, "raw")],
                stall=c["stall"], latency=c["latency"])


BAD = [  # (name, field overrides) the simulator refuses (doc/isa.md section 8)
    ("k0", dict(k=0)), ("m0", dict(m=0)), ("n0", dict(n=0)),
    ("act_buffer", dict(m=2, k=TGT.act_buffer_bytes // 2)),
    ("argmax_fp32", dict(argmax=1, out_fp32=1)),
    ("w_outside", dict(w=REGIONS["hbm"].end - 64)),
    ("out_past_end", dict(out=REGIONS["sram"].end - 32)),
]


def bad_cases() -> list[dict]:
    out = []
    base = build_case(dict(wfmt="int8", m=2, k=40, n=9, affine=False, res="none", relu=False, argmax=False,
                           out_fp32=False, xspec="none", wspec="none", regions=["hbm", "ddr", "sram"], off=0,
                           seed=5, stall=0.0, latency=3), "bad")
    for name, over in BAD:
        c = json.loads(json.dumps(base))
        c["name"] = f"illegal_{name}"
        c["fields"].update(over)
        c["checks"] = []
        out.append(c)
    return out


def edge_cases() -> list[dict]:
    """Fixed cases at the k-segment edge and the cycle-table shapes (not drawn: they are large)."""
    fixed = []
    for i, (wf, m, k, n) in enumerate([("fp16", 1, 1025, 9), ("int4", 2, 2176, 8), ("int8", 3, 1100, 17)]):
        fixed.append(dict(wfmt=wf, m=m, k=k, n=n, affine=True, res="add", relu=False, argmax=False,
                          out_fp32=bool(i % 2), xspec="finite", wspec="none", regions=["hbm", "ddr", "sram"],
                          off=i, seed=100 + i, stall=0.0, latency=3))
    fixed.append(dict(wfmt="int4", m=1, k=256, n=100, affine=False, res="none", relu=False, argmax=True,
                      out_fp32=False, xspec="all", wspec="none", regions=["hbm", "ddr", "ddr"], off=3, seed=7,
                      stall=0.2, latency=3))
    # more rows than one m-block (64): the weights are streamed again per block; argmax state per row
    fixed.append(dict(wfmt="fp16", m=70, k=20, n=19, affine=True, res="none", relu=True, argmax=True,
                      out_fp32=False, xspec="finite", wspec="none", regions=["hbm", "ddr", "sram"], off=1, seed=8,
                      stall=0.0, latency=3))
    fixed.append(dict(wfmt="int8", m=131, k=33, n=12, affine=False, res="add", relu=False, argmax=False,
                      out_fp32=False, xspec="all", wspec="none", regions=["ddr", "ddr", "ddr"], off=2, seed=9,
                      stall=0.1, latency=3))
    return [build_case(c, f"edge{i}_{c['wfmt']}_m{c['m']}_k{c['k']}_n{c['n']}") for i, c in enumerate(fixed)]


def cycle_cases() -> list[dict]:
    out = []
    for wf in ("int4", "int8", "fp16"):
        for m, k, n in ((1, 512, 64), (17, 512, 64), (1, 2048, 32), (17, 256, 40)):
            c = dict(wfmt=wf, m=m, k=k, n=n, affine=False, res="none", relu=False, argmax=False, out_fp32=False,
                     xspec="none", wspec="none", regions=["hbm", "ddr", "sram"], off=0, seed=1, stall=0.0,
                     latency=3)
            out.append(build_case(c, f"cycles_{wf}_m{m}_k{k}_n{n}"))
    return out


def _run(tmp_path, cases, name="cases.json", cycles=None):
    env = write_cases(tmp_path, cases, name)
    if cycles:
        env["DLAVM_RTL_CYCLES"] = str(cycles)
    return run_cocotb("mvm_engine", rtl_sources("fp", *SOURCES), "cocotb_mvm", test_dir=BENCHES, name="mvm",
                      extra_env=env, build_args=BUILD_ARGS)


def test_mvm_cases(tmp_path):
    # one property per weight format, EXAMPLES cases each, all checked in one simulation
    drawn = [build_case(c, f"case{i}_{c['wfmt']}_m{c['m']}_k{c['k']}_n{c['n']}")
             for i, c in enumerate(c for wf in ("int4", "int8", "fp16") for c in draw_cases(mvm_case(wf)))]
    _run(tmp_path, drawn + edge_cases() + bad_cases())


def test_mvm_cycles(tmp_path):
    """Cycles of decode (M=1) and M=17 shapes against M*ceil(K/tin)*ceil(N/tout) (stall 0, latency 3)."""
    out = tmp_path / "cycles.json"
    _run(tmp_path, cycle_cases(), "cycles_cases.json", out)
    rows = json.loads(out.read_text())
    keep = os.environ.get("DLAVM_RTL_MVM_CYCLES")
    if keep:
        with open(keep, "w") as f:
            json.dump(rows, f, indent=1)
    for r in rows:
        # compute-bound shapes stay within a small overhead of the formula; memory-bound ones are bound by
        # the bytes read over the port's width
        bound = max(r["formula"], r["read_bytes"] // r["port_bytes"])
        assert r["cycles"] <= 2 * bound + 200, r


def test_mvm_lint_tiny():
    lint("mvm_engine", rtl_sources("fp", *SOURCES), target="tiny")


@pytest.mark.rtl_full
def test_mvm_lint_vcu128():
    """vcu128 (TIN=128, TOUT=32, 1024-byte port): 4096 multipliers per cycle make this lint long (minutes,
    several GB); ``-fno-inline`` keeps Verilator from flattening the fp units."""
    lint("mvm_engine", rtl_sources("fp", *SOURCES), target="vcu128", extra=["-fno-inline"])
