"""A whole Llama-style decoder layer (GQA, RoPE, KV cache, SwiGLU) as one AUX
stream on the tiny target, against the same layer in torch."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim_device import Device
from dlavm.target import isa, layout, pwl

torch = pytest.importorskip("torch")
F16, F32 = np.float16, np.float32


@pytest.mark.parametrize("past,m", [(0, 1), (4, 3), (9, 1)])
def test_decoder_layer_matches_torch(rng, past, m):
    D, H, HKV, HD, I, CAP, EPS = 64, 4, 2, 16, 96, 32, 1e-5
    dev = Device("tiny")
    g = dev.t.int4_group
    dense, lin = {}, {}
    for name, (n, k) in {"wq": (H * HD, D), "wk": (HKV * HD, D), "wv": (HKV * HD, D), "wo": (D, D),
                         "wg": (I, D), "wu": (I, D), "wd": (D, I)}.items():
        q, s = layout.quantize_int4(rng.standard_normal((n, k)).astype(F32) / math.sqrt(k), g)
        lin[name] = (dev.put(layout.pack_int4(q, g), "hbm"), dev.put(s, "hbm"), n, k)
        dense[name] = q.astype(F32) * np.repeat(s.astype(F32), g, axis=1)[:, :k]
    kc = np.zeros((HKV, CAP, HD), F16)
    vc = np.zeros((HKV, CAP, HD), F16)
    kc[:, :past] = rng.standard_normal((HKV, past, HD))
    vc[:, :past] = rng.standard_normal((HKV, past, HD))
    ka, va = dev.put(kc, "hbm"), dev.put(vc, "hbm")
    ln1, ln2 = (1 + 0.1 * rng.standard_normal((2, D))).astype(F16)
    inv = 1.0 / 10000.0 ** (np.arange(0, HD, 2) / HD)
    ang = np.arange(dev.t.max_seq_len)[:, None] * inv[None, :]
    rope = np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(F32)
    silu = pwl.table("silu")
    x = rng.standard_normal((m, D)).astype(F16)
    L = past + m
    a = {n: dev.put(v) for n, v in (("x", x), ("ln1", ln1), ("ln2", ln2))}
    a["rope"], a["silu"] = dev.put(rope, "ddr"), dev.put(np.frombuffer(silu.to_bytes(), np.uint8))
    for n, size in (("h", m * D * 2), ("q", m * H * HD * 2), ("k", m * HKV * HD * 2), ("v", m * HKV * HD * 2),
                    ("s", H * m * L * 4), ("p", H * m * L * 2), ("o", m * D * 2), ("x2", m * D * 2),
                    ("g", m * I * 2), ("gs", m * I * 2), ("u", m * I * 2), ("y", m * D * 2)):
        a[n] = dev.alloc(size)

    def mvm(w, src, dst, wait, **kw):
        wa, sa, n, k = lin[w]
        return isa.make("mvm", wfmt="int4", x=a[src], w=wa, wscale=sa, out=a[dst], m=m, k=k, n=n, wait=wait, **kw)

    kv = dict(m=m, kv_heads=HKV, d=HD, pos=past, head_stride=CAP * HD * 2, capacity=CAP)
    att = dict(m=m, heads=H, kv_heads=HKV, l=L, d=HD)
    dev.run(
        isa.make("rmsnorm", src=a["x"], dst=a["h"], gamma=a["ln1"], rows=m, cols=D, eps=EPS),
        mvm("wq", "h", "q", ["sfu"]), mvm("wk", "h", "k", []), mvm("wv", "h", "v", []),
        isa.make("rope", src=a["q"], dst=a["q"], table=a["rope"], m=m, heads=H, d=HD, pos0=past, wait=["mvm"]),
        isa.make("rope", src=a["k"], dst=a["k"], table=a["rope"], m=m, heads=HKV, d=HD, pos0=past),
        isa.make("kv_append", src=a["k"], dst=ka, wait=["sfu"], **kv),
        isa.make("kv_append", src=a["v"], dst=va, **kv),
        isa.make("mat_qk", q=a["q"], kc=ka, out=a["s"], k_stride=CAP * HD * 2, scale=1 / math.sqrt(HD),
                 out_fp32=True, wait=["sfu"], **att),
        isa.make("softmax", src=a["s"], dst=a["p"], rows=H * m, cols=L, m=m, pos0=past, causal=True,
                 in_fp32=True, wait=["mat"]),
        isa.make("mat_pv", p=a["p"], vc=va, out=a["o"], v_stride=CAP * HD * 2, wait=["sfu"], **att),
        mvm("wo", "o", "x2", ["mat"], res="add", resid=a["x"]),
        isa.make("rmsnorm", src=a["x2"], dst=a["h"], gamma=a["ln2"], rows=m, cols=D, eps=EPS, wait=["mvm"]),
        mvm("wg", "h", "g", ["sfu"]),
        isa.make("act", src=a["g"], dst=a["gs"], table=a["silu"], count=m * I, nseg=silu.nseg,
                 lo=silu.lo_f32, inv_step=silu.inv_step, wait=["mvm"]),
        mvm("wu", "h", "u", ["sfu"], res="mul", resid=a["gs"]),
        mvm("wd", "u", "y", ["mvm"], res="add", resid=a["x2"]),
    )
    y = dev.get(a["y"], F16, (m, D)).astype(F32)

    F = torch.nn.functional
    W = {k: torch.from_numpy(v) for k, v in dense.items()}
    cos = torch.from_numpy(np.concatenate([rope[past:L, : HD // 2]] * 2, axis=1))[:, None]
    sin = torch.from_numpy(np.concatenate([rope[past:L, HD // 2:]] * 2, axis=1))[:, None]

    def rot(t):
        return t * cos + torch.cat([-t[..., HD // 2:], t[..., : HD // 2]], dim=-1) * sin

    xt = torch.from_numpy(x.astype(F32))
    h = F.rms_norm(xt, (D,), torch.from_numpy(ln1.astype(F32)), EPS)
    q = rot(F.linear(h, W["wq"]).view(m, H, HD))
    k = rot(F.linear(h, W["wk"]).view(m, HKV, HD))
    v = F.linear(h, W["wv"]).view(m, HKV, HD)
    K = torch.cat([torch.from_numpy(kc[:, :past].astype(F32)), k.transpose(0, 1)], dim=1)
    V = torch.cat([torch.from_numpy(vc[:, :past].astype(F32)), v.transpose(0, 1)], dim=1)
    mask = torch.ones(m, L, dtype=torch.bool).tril(diagonal=past)
    o = F.scaled_dot_product_attention(q.transpose(0, 1), K.repeat_interleave(H // HKV, 0),
                                       V.repeat_interleave(H // HKV, 0), attn_mask=mask)
    x2 = xt + F.linear(o.transpose(0, 1).reshape(m, D), W["wo"])
    h2 = F.rms_norm(x2, (D,), torch.from_numpy(ln2.astype(F32)), EPS)
    expect = x2 + F.linear(F.silu(F.linear(h2, W["wg"])) * F.linear(h2, W["wu"]), W["wd"])
    np.testing.assert_allclose(y, expect.numpy(), rtol=1e-2, atol=1e-2)
    # The KV cache now holds the new (rotated) keys and values at positions past..L-1.
    cache_k = dev.get(ka, F16, (HKV, CAP, HD))[:, past:L].astype(F32)
    np.testing.assert_allclose(cache_k, k.transpose(0, 1).numpy(), rtol=1e-2, atol=1e-2)
