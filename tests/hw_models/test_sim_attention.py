"""fp16 attention path (mat_qk, mat_pv), KV append and a full causal attention
chain against torch's scaled_dot_product_attention."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isa_reference as ref
from sim_device import Device
from dlavm.target import isa

F16, F32 = np.float16, np.float32


def _cache(dev, rng, hkv, cap, d, length):
    """A KV cache [hkv, cap, d] in HBM whose first ``length`` positions are filled."""
    c = np.zeros((hkv, cap, d), dtype=F16)
    c[:, :length] = rng.standard_normal((hkv, length, d)).astype(F16)
    return c, dev.put(c, "hbm")


@pytest.mark.parametrize("l", [1, 7, 8, 9, 130, 256])          # 256 = tiny's max_seq_len
@pytest.mark.parametrize("heads,kv_heads", [(1, 1), (4, 2), (4, 1)])
@pytest.mark.parametrize("out_fp32", [False, True])
def test_mat_qk_bit_exact(dev, rng, l, heads, kv_heads, out_fp32):
    m, d, cap = 2, 32, 256
    q = rng.standard_normal((m, heads, d)).astype(F16)
    kc, ka = _cache(dev, rng, kv_heads, cap, d, l)
    out = dev.alloc(heads * m * l * 4)
    scale = float(1 / np.sqrt(d))
    dev.run(isa.make("mat_qk", q=dev.put(q), kc=ka, out=out, m=m, heads=heads, kv_heads=kv_heads, l=l, d=d,
                     k_stride=cap * d * 2, scale=scale, out_fp32=out_fp32))
    k = np.repeat(kc[:, :l], heads // kv_heads, axis=0)
    s = (ref.dot_f16(q.transpose(1, 0, 2), k) * F32(scale)).astype(F32)
    got = dev.get(out, F32 if out_fp32 else F16, (heads, m, l))
    np.testing.assert_array_equal(got, s if out_fp32 else s.astype(F16))


@pytest.mark.parametrize("l", [1, 15, 16, 17, 129, 256])
def test_mat_pv_bit_exact(dev, rng, l):
    m, heads, kv_heads, d, cap = 3, 2, 1, 16, 256
    p = rng.random((heads, m, l)).astype(F16)
    vc, va = _cache(dev, rng, kv_heads, cap, d, l)
    out = dev.alloc(m * heads * d * 2)
    dev.run(isa.make("mat_pv", p=dev.put(p), vc=va, out=out, m=m, heads=heads, kv_heads=kv_heads, l=l, d=d,
                     v_stride=cap * d * 2))
    v = np.repeat(vc[:, :l], heads // kv_heads, axis=0)
    o = ref.dot_f16(p, v.transpose(0, 2, 1)).transpose(1, 0, 2).astype(F16)
    np.testing.assert_array_equal(dev.get(out, F16, (m, heads, d)), o)


@pytest.mark.parametrize("pos,m", [(0, 1), (0, 5), (7, 1), (250, 6), (255, 1)])
def test_kv_append(dev, rng, pos, m):
    hkv, d, cap = 2, 16, 256
    before, ca = _cache(dev, rng, hkv, cap, d, cap)
    new = rng.standard_normal((m, hkv, d)).astype(F16)
    dev.run(isa.make("kv_append", src=dev.put(new), dst=ca, m=m, kv_heads=hkv, d=d, pos=pos,
                     head_stride=cap * d * 2, capacity=cap))
    after = dev.get(ca, F16, (hkv, cap, d))
    expect = before.copy()
    expect[:, pos:pos + m] = new.transpose(1, 0, 2)
    np.testing.assert_array_equal(after, expect)


def test_causal_attention_chain_matches_torch(dev, rng):
    """Prefill of M tokens after P cached ones: append, QK, masked softmax, PV."""
    torch = pytest.importorskip("torch")
    heads, kv_heads, d, cap, past, m = 4, 2, 32, 64, 5, 6
    l = past + m
    kc, ka = _cache(dev, rng, kv_heads, cap, d, past)
    vc, va = _cache(dev, rng, kv_heads, cap, d, past)
    q = rng.standard_normal((m, heads, d)).astype(F16)
    k_new = rng.standard_normal((m, kv_heads, d)).astype(F16)
    v_new = rng.standard_normal((m, kv_heads, d)).astype(F16)
    s_a, p_a, o_a = dev.alloc(heads * m * l * 4), dev.alloc(heads * m * l * 2), dev.alloc(m * heads * d * 2)
    common = dict(m=m, heads=heads, kv_heads=kv_heads, l=l, d=d)
    dev.run(
        isa.make("kv_append", src=dev.put(k_new), dst=ka, m=m, kv_heads=kv_heads, d=d, pos=past,
                 head_stride=cap * d * 2, capacity=cap),
        isa.make("kv_append", src=dev.put(v_new), dst=va, m=m, kv_heads=kv_heads, d=d, pos=past,
                 head_stride=cap * d * 2, capacity=cap),
        isa.make("mat_qk", q=dev.put(q), kc=ka, out=s_a, k_stride=cap * d * 2, scale=float(d ** -0.5),
                 out_fp32=True, wait=["sfu"], **common),
        isa.make("softmax", src=s_a, dst=p_a, rows=heads * m, cols=l, m=m, pos0=past, causal=True,
                 in_fp32=True, wait=["mat"]),
        isa.make("mat_pv", p=p_a, vc=va, out=o_a, v_stride=cap * d * 2, wait=["sfu"], **common),
    )
    got = dev.get(o_a, F16, (m, heads, d)).astype(F32)
    kf = np.concatenate([kc[:, :past], k_new.transpose(1, 0, 2)], axis=1)
    vf = np.concatenate([vc[:, :past], v_new.transpose(1, 0, 2)], axis=1)
    tq = torch.from_numpy(q.transpose(1, 0, 2)).float()[None]
    tk = torch.from_numpy(np.repeat(kf, heads // kv_heads, 0)).float()[None]
    tv = torch.from_numpy(np.repeat(vf, heads // kv_heads, 0)).float()[None]
    mask = torch.ones(m, l, dtype=torch.bool).tril(diagonal=past)
    expect = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)[0]
    np.testing.assert_allclose(got, expect.numpy().transpose(1, 0, 2), rtol=1e-2, atol=5e-3)



@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 4), group=st.integers(1, 3), kv_heads=st.integers(1, 2), l=st.integers(1, 140),
       d=st.sampled_from([16, 32, 48]), seed=st.integers(0, 2**16))
def test_attention_matmuls_bit_exact_on_random_shapes(m, group, kv_heads, l, d, seed):
    rng = np.random.default_rng(seed)
    dev = Device("tiny")
    heads, cap = group * kv_heads, 160
    q = rng.standard_normal((m, heads, d)).astype(F16)
    kc, ka = _cache(dev, rng, kv_heads, cap, d, l)
    vc, va = _cache(dev, rng, kv_heads, cap, d, l)
    p = rng.random((heads, m, l)).astype(F16)
    s_a, o_a = dev.alloc(heads * m * l * 4), dev.alloc(m * heads * d * 2)
    common = dict(m=m, heads=heads, kv_heads=kv_heads, l=l, d=d)
    dev.run(isa.make("mat_qk", q=dev.put(q), kc=ka, out=s_a, k_stride=cap * d * 2, scale=0.125, out_fp32=True,
                     **common),
            isa.make("mat_pv", p=dev.put(p), vc=va, out=o_a, v_stride=cap * d * 2, **common))
    k = np.repeat(kc[:, :l], group, axis=0)
    v = np.repeat(vc[:, :l], group, axis=0)
    np.testing.assert_array_equal(dev.get(s_a, F32, (heads, m, l)),
                                  (ref.dot_f16(q.transpose(1, 0, 2), k) * F32(0.125)).astype(F32))
    np.testing.assert_array_equal(dev.get(o_a, F16, (m, heads, d)),
                                  ref.dot_f16(p, v.transpose(0, 2, 1)).transpose(1, 0, 2).astype(F16))
