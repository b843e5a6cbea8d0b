"""The models the golden streams are made from (device graphs built by hand, deterministic).

Each :class:`GoldenCase` builds a device-level module (``dev.*`` ops, as the
device pipeline produces them) for a target and names the dim bindings its
goldens are specialised at. Weights carry Hugging-Face-style names
(``model.layers.N.mlp.up_proj.weight``) so the diff tool can name layers.
Goldens need no weight data (shape-only); pass ``rng`` to get real weights
(the trace-level check runs the model).

Sizes are chosen so the token tiling of ``mvm`` (``act_buffer_bytes // (2*K)``
rows per tile) has its edge inside the bounds: on ``tiny`` (64 KiB buffer)
K = 256 gives 128-row tiles, so ``seq = 129`` is one full tile plus one row;
``vcu128`` (1 MiB) needs K = 4096 for the same edge, so its Llama case has a
Llama-7B-wide layer (still a few dozen instructions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dlavm import sym
from dlavm.ir import Constant, Function, Module, TensorType, Var, call

from .listing import CompareError


def _c(*dims):
    return tuple(sym.const(d) if isinstance(d, int) else d for d in dims)


class _Weights:
    """Weight constants with optional data (``rng=None``: shape-only)."""

    def __init__(self, rng):
        self.rng, self.params = rng, {}

    def matrix(self, name, n, k):
        if self.rng is not None:
            self.params[name] = (self.rng.standard_normal((n, k)) / math.sqrt(k)).astype(np.float32)
        return Constant(name, TensorType(_c(n, k), "float32"))

    def vector(self, name, n, mean=0.0, std=0.1):
        if self.rng is not None:
            self.params[name] = (mean + std * self.rng.standard_normal(n)).astype(np.float32)
        return Constant(name, TensorType(_c(n), "float32"))

    def table(self, name, positions, d):
        if self.rng is not None:
            inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
            ang = np.arange(positions)[:, None] * inv[None, :]
            self.params[name] = np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
        return Constant(name, TensorType(_c(positions, d), "float32"))


def llama_block(max_seq: int, layers: int = 2, hidden: int = 256, heads: int = 4, kv_heads: int = 2,
                head_dim: int = 64, ffn: int = 512, vocab: int = 64, rng=None) -> Module:
    """Embedding (host) -> ``layers`` x [RMSNorm, GQA attention with RoPE, SwiGLU MLP] -> RMSNorm."""
    seq = sym.Var("seq", 1, max_seq)
    w = _Weights(rng)
    ids = Var("ids", TensorType(_c(seq), "int64"))
    emb = Constant("model.embed_tokens.weight", TensorType(_c(vocab, hidden), "float32"))
    if rng is not None:
        w.params[emb.name] = rng.standard_normal((vocab, hidden)).astype(np.float32)
    rope = w.table("model.rope.table", max_seq, head_dim)
    x = call("dev.to_device", call("embedding", emb, ids))
    for i in range(layers):
        p = f"model.layers.{i}."
        h = call("dev.rmsnorm", x, w.vector(p + "input_layernorm.weight", hidden, 1.0), eps=1e-5)
        q = call("reshape", call("dev.mvm", h, w.matrix(p + "self_attn.q_proj.weight", heads * head_dim, hidden)),
                 shape=_c(seq, heads, head_dim))
        k = call("reshape", call("dev.mvm", h, w.matrix(p + "self_attn.k_proj.weight", kv_heads * head_dim, hidden)),
                 shape=_c(seq, kv_heads, head_dim))
        v = call("reshape", call("dev.mvm", h, w.matrix(p + "self_attn.v_proj.weight", kv_heads * head_dim, hidden)),
                 shape=_c(seq, kv_heads, head_dim))
        q, k = call("dev.rope", q, rope), call("dev.rope", k, rope)
        o = call("dev.attention", q, k, v, causal=True, scale=1 / math.sqrt(head_dim))
        x = call("dev.mvm", call("reshape", o, shape=_c(seq, heads * head_dim)),
                 w.matrix(p + "self_attn.o_proj.weight", hidden, heads * head_dim), x, res="add")
        h = call("dev.rmsnorm", x, w.vector(p + "post_attention_layernorm.weight", hidden, 1.0), eps=1e-5)
        g = call("dev.act", call("dev.mvm", h, w.matrix(p + "mlp.gate_proj.weight", ffn, hidden)), fn="silu")
        u = call("dev.mvm", h, w.matrix(p + "mlp.up_proj.weight", ffn, hidden), g, res="mul")
        x = call("dev.mvm", u, w.matrix(p + "mlp.down_proj.weight", hidden, ffn), x, res="add")
    y = call("dev.rmsnorm", x, w.vector("model.norm.weight", hidden, 1.0), eps=1e-5)
    mod = Module({"forward": Function("forward", [ids], call("dev.to_host", y))}, w.params)
    mod.attrs["host_ops"] = [{"op": "embedding", "reason": "gather from a host table"}]
    return mod


def device_ops(max_seq: int, k: int, heads: int = 2, head_dim: int = 32, rng=None) -> Module:
    """Every device op once: rmsnorm, layernorm, mvm (bias+relu, tiled over tokens), rope,
    attention (kv_append, mat_qk, softmax, mat_pv), act, eltwise, softmax, mvm (residual)."""
    seq = sym.Var("seq", 1, max_seq)
    w = _Weights(rng)
    n = heads * head_dim
    x = Var("x", TensorType(_c(seq, k), "float32"))
    h = call("dev.rmsnorm", call("dev.to_device", x), w.vector("ops.rmsnorm.weight", k, 1.0), eps=1e-5)
    h = call("dev.layernorm", h, w.vector("ops.layernorm.weight", k, 1.0), w.vector("ops.layernorm.bias", k),
             eps=1e-5)
    q = call("dev.mvm", h, w.matrix("ops.qkv.weight", n, k), w.vector("ops.qkv.bias", n), bias=True, relu=True)
    q = call("dev.rope", call("reshape", q, shape=_c(seq, heads, head_dim)), w.table("ops.rope.table", max_seq,
                                                                                      head_dim))
    o = call("reshape", call("dev.attention", q, q, q, causal=True, scale=1 / math.sqrt(head_dim)), shape=_c(seq, n))
    a = call("dev.eltwise", call("dev.act", o, fn="silu"), o, fn="mul")
    s = call("dev.softmax", a)
    y = call("dev.mvm", s, w.matrix("ops.out.weight", k, n), h, res="add")
    return Module({"forward": Function("forward", [x], call("dev.to_host", y))}, w.params)


@dataclass(frozen=True)
class GoldenCase:
    """A model for one target and the dim bindings its goldens show (one golden file each)."""

    name: str
    target: str
    build: object                       # (rng) -> ir.Module
    config: str                         # the sizes, for the golden header
    at: tuple = field(default_factory=tuple)   # ({dim: value}, ...)

    @property
    def key(self) -> str:
        return f"{self.target}/{self.name}"


def _llama(target, **kw):
    cfg = " ".join(f"{k}={v}" for k, v in kw.items())
    return GoldenCase("llama_block", target, lambda rng=None: llama_block(rng=rng, **kw), cfg,
                      ({"seq": 1}, {"seq": 129}))


def _ops(target, max_seq, k):
    return GoldenCase("device_ops", target, lambda rng=None: device_ops(max_seq, k, rng=rng),
                      f"max_seq={max_seq} k={k} heads=2 head_dim=32", ({"seq": max_seq // 2},
                                                                        {"seq": max_seq // 2 + 1}))


#: Every golden case, in a stable order. ``device_ops`` is specialised at the mvm tile
#: (``seq = tile``: one full tile, the second guarded off) and one past it (``tile + 1``).
CASES: tuple = (
    _ops("tiny", 64, 1024),
    _ops("vcu128", 256, 4096),
    _llama("tiny", max_seq=256, layers=2, hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512),
    _llama("vcu128", max_seq=256, layers=2, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=11008),
)


def find_case(key: str) -> GoldenCase:
    """The case named ``target/name`` (or ``name`` when only one target has it)."""
    hits = [c for c in CASES if key in (c.key, c.name)]
    if len(hits) != 1:
        raise CompareError(f"no golden case {key!r}; cases are {[c.key for c in CASES]}")
    return hits[0]


__all__ = ["GoldenCase", "CASES", "find_case", "llama_block", "device_ops"]
