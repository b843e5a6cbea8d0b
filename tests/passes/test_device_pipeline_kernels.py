"""The dev.* reference kernels follow doc/isa.md's rounding points: bit-exact against the
independent formulas of tests/hw_models/isa_reference.py (and the doc's SFU formulas written
out in numpy below) wherever the ISA defines an exact result."""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from dlavm.ir.op import device_spec
from dlavm.reference import device_numerics as dk
from dlavm.target import get_target, layout, pwl

_spec = importlib.util.spec_from_file_location(
    "isa_reference", pathlib.Path(__file__).parents[1] / "hw_models" / "isa_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

F16, F32 = np.float16, np.float32
VCU128 = get_target("vcu128")


def kernel(op):
    return device_spec(op).reference

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("fmt", ["int4", "int8", "fp16"])
@pytest.mark.parametrize("k", [96, 256, 300])
def test_mvm_accumulator_is_bit_exact_against_the_isa_formula(fmt, k):
    x = (RNG.standard_normal((3, k)) * 2).astype(np.float16)
    w = RNG.standard_normal((40, k)).astype(np.float32)
    got = dk.mvm_accumulate(torch.from_numpy(x), w, fmt, VCU128.int4_group, VCU128.int8_block, VCU128.tree_lanes).numpy()
    if fmt == "int4":
        q, s = layout.quantize_int4(w, VCU128.int4_group)
    elif fmt == "int8":
        q, s = layout.quantize_int8(w)
    else:
        q, s = w.astype(np.float16), None
    want = ref.mvm_acc(fmt, x, q, s, VCU128.int4_group)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("lanes", [32, 128])
def test_tree_sum_and_pwl_are_bit_exact(lanes):
    p = RNG.standard_normal((5, 300)).astype(np.float32)
    assert np.array_equal(dk.tree_sum(torch.from_numpy(p), lanes).numpy(), ref.tree_sum(p, lanes))
    x = np.concatenate([np.linspace(-20, 20, 2001), [np.nan, -np.inf, np.inf]]).astype(np.float32)
    for name in pwl.TABLE_NAMES:
        t = pwl.table(name)
        with np.errstate(invalid="ignore"):
            want = ref.pwl(x, t.entries, t.nseg, t.lo, t.inv_step)
        got = dk.pwl_eval(torch.from_numpy(x), name).numpy()
        assert np.array_equal(got, want, equal_nan=True), name


def test_attention_kernel_follows_the_isa_composition():
    m, h, hkv, d = 5, 4, 2, 16
    q, k, v = (torch.from_numpy((RNG.standard_normal((m, n, d))).astype(np.float16)) for n in (h, hkv, hkv))
    got = kernel("dev.attention")([q, k, v], {"causal": True, "scale": 0.25, "pos0": None, "tree_lanes": VCU128.tree_lanes}, int)
    # torch in float64 with the same causal mask: within ~2 fp16 ulps of the output
    qq, kk, vv = (t.double().permute(1, 0, 2) for t in (q, k, v))
    kk, vv = kk.repeat_interleave(2, 0), vv.repeat_interleave(2, 0)
    s = (qq @ kk.transpose(1, 2)) * 0.25
    s = s.masked_fill(~torch.ones(m, m, dtype=torch.bool).tril(), -float("inf"))
    want = (torch.softmax(s, -1) @ vv).permute(1, 0, 2)
    assert (got.double() - want).abs().max() <= 4e-3


@pytest.mark.parametrize("c", [96, 128, 200, 352])
def test_norms_are_bit_exact_against_the_isa_formula(c):
    x = (RNG.standard_normal((64, c)) * 3).astype(F16)
    g, b = (RNG.standard_normal(c).astype(F16) for _ in range(2))
    xf, gf, bf = x.astype(F32), g.astype(F32), b.astype(F32)
    inv = F32(1) / np.sqrt(ref.tree_sum(xf * xf) / F32(c) + F32(1e-5))
    want = ((xf * inv[:, None]) * gf).astype(F16)
    got = kernel("dev.rmsnorm")([torch.from_numpy(x), torch.from_numpy(gf)], {"eps": 1e-5, "tree_lanes": VCU128.tree_lanes}, int).numpy()
    assert np.array_equal(got, want)
    d = xf - (ref.tree_sum(xf) / F32(c))[:, None]
    inv = F32(1) / np.sqrt(ref.tree_sum(d * d) / F32(c) + F32(1e-5))
    want = (((d * inv[:, None]) * gf) + bf).astype(F16)
    got = kernel("dev.layernorm")([torch.from_numpy(x), torch.from_numpy(gf), torch.from_numpy(bf)], {"eps": 1e-5, "tree_lanes": VCU128.tree_lanes},
                           int).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_is_bit_exact_against_the_isa_formula(causal):
    m, n, pos0 = 5, 9, 4
    x = (RNG.standard_normal((2, m, n)) * 4).astype(F32)
    valid = np.ones((m, n), bool) if not causal else np.arange(n)[None, :] <= (pos0 + np.arange(m))[:, None]
    mx = np.where(valid, x, -np.inf).max(-1, keepdims=True)
    t = pwl.table("exp")
    e = np.where(valid, ref.pwl(x - mx, t.entries, t.nseg, t.lo, t.inv_step), F32(0)).astype(F32)
    want = (e / ref.tree_sum(e)[..., None]).astype(F16)
    got = dk.softmax_rows(torch.from_numpy(x), causal, pos0, VCU128.tree_lanes).numpy()
    assert np.array_equal(got, want)


def test_rope_is_bit_exact_against_the_isa_formula():
    m, h, d, pos0 = 6, 3, 16, 2
    x = RNG.standard_normal((m, h, d)).astype(F16)
    table = RNG.standard_normal((12, d)).astype(F32)
    got = kernel("dev.rope")([torch.from_numpy(x), torch.from_numpy(table)], {"pos0": pos0, "interleaved": False},
                      int).numpy()
    xf, c, s = x.astype(F32), table[pos0:pos0 + m, None, :d // 2], table[pos0:pos0 + m, None, d // 2:]
    x1, x2 = xf[..., :d // 2], xf[..., d // 2:]
    want = np.concatenate([((x1 * c) - (x2 * s)).astype(F16), ((x2 * c) + (x1 * s)).astype(F16)], -1)
    assert np.array_equal(got, want)
