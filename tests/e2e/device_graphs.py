"""Device-level graphs (dev.* ops, as the device pipeline produces them) built by hand,
with numpy references that use the same fake-quantised weights.

The reference follows the device's rounding points: fp16 at to_device and at
every dev op output, fp32/fp64 inside. Each builder returns
``(module, reference(inputs) -> output, fp32_reference(inputs) -> output)``;
the second reference uses the float master weights (no quantisation).
"""
from __future__ import annotations

import math

import numpy as np

from dlavm import sym
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from dlavm.target import layout

F16, F32 = np.float16, np.float32


def _c(*dims):
    return tuple(sym.const(d) if isinstance(d, int) else d for d in dims)


class Builder:
    """Weights registry + fake-quantisation for one model."""

    def __init__(self, rng, group: int, wfmt: str = "int4"):
        self.rng, self.group, self.wfmt = rng, group, wfmt
        self.params, self.deq = {}, {}

    def weight(self, name, n, k, scale=None):
        w = (self.rng.standard_normal((n, k)) / math.sqrt(k)).astype(F32)
        self.params[name] = w
        if self.wfmt == "int4":
            q, s = layout.quantize_int4(w, self.group)
            self.deq[name] = q.astype(F32) * np.repeat(s.astype(F32), self.group, axis=1)[:, :k]
        elif self.wfmt == "int8":
            q, s = layout.quantize_int8(w)
            self.deq[name] = q.astype(F32) * s.astype(F32)[:, None]
        else:
            self.deq[name] = w.astype(F16).astype(F32)
        return Constant(name, TensorType(_c(n, k), "float32"))

    def vector(self, name, n, mean=0.0, std=0.1):
        v = (mean + std * self.rng.standard_normal(n)).astype(F32)
        self.params[name] = v
        self.deq[name] = v.astype(F16).astype(F32)
        return Constant(name, TensorType(_c(n), "float32"))

    def table(self, name, data):
        self.params[name] = data.astype(F32)
        self.deq[name] = data.astype(F32)
        return Constant(name, TensorType(_c(*data.shape), "float32"))


def h16(x):
    return np.asarray(x, np.float64).astype(F16).astype(np.float64)


def rope_table(positions, d):
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    ang = np.arange(positions)[:, None] * inv[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(F32)


# --- numpy kernels (device rounding points) ----------------------------------------------------

def r_rms(x, g, eps):
    return h16(x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g)


def r_ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    v = ((x - mu) ** 2).mean(-1, keepdims=True)
    return h16((x - mu) / np.sqrt(v + eps) * g + b)


def r_rope(x, tab, pos0):
    m, _, d = x.shape
    c = tab[pos0:pos0 + m, : d // 2][:, None].astype(np.float64)
    s = tab[pos0:pos0 + m, d // 2:][:, None].astype(np.float64)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return h16(np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1))


def r_attn(q, k, v, pos0=None):
    m, h, d = q.shape
    L, hkv, _ = k.shape
    pos0 = L - m if pos0 is None else pos0
    g = h // hkv
    kk, vv = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("mhd,lhd->hml", q, kk) / math.sqrt(d)
    mask = np.arange(L)[None, :] <= (pos0 + np.arange(m))[:, None]
    s = np.where(mask[None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = h16(p / p.sum(-1, keepdims=True))
    return h16(np.einsum("hml,lhd->mhd", p, vv))


def silu(x):
    return x / (1 + np.exp(-x))


def gelu(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


# --- models ---------------------------------------------------------------------------------

def mlp(rng, seq, group, D=32, I=48, wfmt="int4"):
    """x -> relu(x W1^T + b1) W2^T + x."""
    b = Builder(rng, group, wfmt)
    x = Var("x", TensorType(_c(seq, D), "float32"))
    w1, b1, w2 = b.weight("w1", I, D), b.vector("b1", I), b.weight("w2", D, I)
    h = call("dev.to_device", x)
    y = call("dev.mvm", h, w1, b1, wfmt=wfmt, bias=True, relu=True)
    z = call("dev.mvm", y, w2, h, wfmt=wfmt, res="add")
    mod = Module({"forward": Function("forward", [x], call("dev.to_host", z))}, b.params)

    def ref(W, x):
        h = h16(x)
        y = h16(np.maximum(h @ W["w1"].T.astype(np.float64) + W["b1"], 0))
        return h16(y @ W["w2"].T.astype(np.float64) + h)
    return mod, lambda x: ref(b.deq, x), lambda x: ref(b.params, x)


def llama_block(rng, seq, group, vocab=50, D=64, H=4, HKV=2, HD=16, I=96, eps=1e-5, positions=256):
    """Embedding (host) -> RMSNorm -> GQA attention with RoPE (causal) -> SwiGLU MLP; residuals."""
    b = Builder(rng, group)
    ids = Var("ids", TensorType(_c(seq), "int64"))
    emb = Constant("emb", TensorType(_c(vocab, D), "float32"))
    b.params["emb"] = rng.standard_normal((vocab, D)).astype(F32)
    ln1, ln2 = b.vector("ln1", D, 1.0), b.vector("ln2", D, 1.0)
    wq, wk, wv, wo = b.weight("wq", H * HD, D), b.weight("wk", HKV * HD, D), b.weight("wv", HKV * HD, D), \
        b.weight("wo", D, H * HD)
    wg, wu, wd = b.weight("wg", I, D), b.weight("wu", I, D), b.weight("wd", D, I)
    tab = b.table("rope", rope_table(positions, HD))
    x = call("dev.to_device", call("embedding", emb, ids))
    h = call("dev.rmsnorm", x, ln1, eps=eps)
    q = call("reshape", call("dev.mvm", h, wq), shape=_c(seq, H, HD))
    k = call("reshape", call("dev.mvm", h, wk), shape=_c(seq, HKV, HD))
    v = call("reshape", call("dev.mvm", h, wv), shape=_c(seq, HKV, HD))
    q, k = call("dev.rope", q, tab), call("dev.rope", k, tab)
    o = call("dev.attention", q, k, v, causal=True, scale=1 / math.sqrt(HD))
    x2 = call("dev.mvm", call("reshape", o, shape=_c(seq, H * HD)), wo, x, res="add")
    h2 = call("dev.rmsnorm", x2, ln2, eps=eps)
    gs = call("dev.act", call("dev.mvm", h2, wg), fn="silu")
    u = call("dev.mvm", h2, wu, gs, res="mul")
    y = call("dev.mvm", u, wd, x2, res="add")
    mod = Module({"forward": Function("forward", [ids], call("dev.to_host", y))}, b.params)
    mod.attrs["host_ops"] = [{"op": "embedding", "reason": "gather from a host table"}]

    def ref(W, ids):
        m = len(ids)
        x = h16(b.params["emb"][ids])
        lin = lambda a, n: a @ W[n].T.astype(np.float64)  # noqa: E731
        h = r_rms(x, W["ln1"], eps)
        q = r_rope(h16(lin(h, "wq")).reshape(m, H, HD), W["rope"], 0)
        k = r_rope(h16(lin(h, "wk")).reshape(m, HKV, HD), W["rope"], 0)
        v = h16(lin(h, "wv")).reshape(m, HKV, HD)
        o = r_attn(q, k, v).reshape(m, H * HD)
        x2 = h16(lin(o, "wo") + x)
        h2 = r_rms(x2, W["ln2"], eps)
        gs = h16(silu(h16(lin(h2, "wg"))))
        u = h16(lin(h2, "wu") * gs)
        return h16(lin(u, "wd") + x2)
    return mod, lambda ids: ref(b.deq, ids), lambda ids: ref(b.params, ids)


def gpt2_block(rng, seq, group, D=64, H=4, HD=16, I=128, eps=1e-5):
    """LayerNorm -> MHA (biases, causal) -> LayerNorm -> GELU MLP; residuals."""
    b = Builder(rng, group)
    xin = Var("x", TensorType(_c(seq, D), "float32"))
    g1, be1, g2, be2 = b.vector("g1", D, 1.0), b.vector("be1", D), b.vector("g2", D, 1.0), b.vector("be2", D)
    ws = {n: b.weight(n, o, i) for n, o, i in (("wq", D, D), ("wk", D, D), ("wv", D, D), ("wo", D, D),
                                               ("fc", I, D), ("proj", D, I))}
    bs = {n: b.vector("b" + n, ws[n].type.shape[0].value, std=0.05) for n in ws}
    x = call("dev.to_device", xin)
    h = call("dev.layernorm", x, g1, be1, eps=eps)
    qkv = [call("reshape", call("dev.mvm", h, ws[n], bs[n], bias=True), shape=_c(seq, H, HD))
           for n in ("wq", "wk", "wv")]
    o = call("dev.attention", *qkv, causal=True, scale=1 / math.sqrt(HD))
    x2 = call("dev.mvm", call("reshape", o, shape=_c(seq, D)), ws["wo"], bs["wo"], x, bias=True, res="add")
    h2 = call("dev.layernorm", x2, g2, be2, eps=eps)
    a = call("dev.act", call("dev.mvm", h2, ws["fc"], bs["fc"], bias=True), fn="gelu")
    y = call("dev.mvm", a, ws["proj"], bs["proj"], x2, bias=True, res="add")
    mod = Module({"forward": Function("forward", [xin], call("dev.to_host", y))}, b.params)

    def ref(W, x):
        m = len(x)
        x = h16(x)
        lin = lambda a, n: a @ W[n].T.astype(np.float64) + W["b" + n]  # noqa: E731
        h = r_ln(x, W["g1"], W["be1"], eps)
        q, k, v = (h16(lin(h, n)).reshape(m, H, HD) for n in ("wq", "wk", "wv"))
        o = r_attn(q, k, v).reshape(m, D)
        x2 = h16(lin(o, "wo") + x)
        h2 = r_ln(x2, W["g2"], W["be2"], eps)
        a = h16(gelu(h16(lin(h2, "fc"))))
        return h16(lin(a, "proj") + x2)
    return mod, lambda x: ref(b.deq, x), lambda x: ref(b.params, x)
