"""Reference kernels of the ``dev.*`` ops: doc/isa.md numerics at tensor level.

Every kernel follows the ISA's rounding points (doc/isa.md section 7):
fp16 activations in and out, weights fake-quantised exactly as
``dlavm.target.layout`` quantises them (int4 group-128 symmetric with fp16
scales, int8 per output channel, fp16), exact per-group dot products rounded
once to fp32 and accumulated in fp32 in group order, fp32 epilogues, the
``tree_sum`` reduction order for fp16 x fp16 products and SFU row sums, and
the piecewise-linear tables of ``dlavm.target.pwl`` for activations and the
softmax exponent.

They are not the bit-exact oracle (the simulator's own tests are); they
follow the same operation order so results agree with the simulator to
within about one fp16 ulp, and they let a legalized graph be checked
against torch before any hardware is involved.

``dev.attention`` is the composition the lowering emits: ``mat_qk`` with
fp32 scores (``out_fp32=1``), ``softmax`` on fp32 input, ``mat_pv``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..target import layout, pwl
from .kernels import DTYPE, KERNELS

#: The int4 group size of doc/isa.md section 7.2 (the reference target's ``int4_group``).
INT4_GROUP = 128
#: Block length of the exact int8 partial sums (doc/isa.md section 7.2).
INT8_BLOCK = 64
_TREE_LANES = 128


def tree_sum(p: torch.Tensor) -> torch.Tensor:
    """doc/isa.md 7.1: 128-lane pairwise fp32 trees, blocks accumulated in order."""
    p = p.to(torch.float32)
    k = p.shape[-1]
    nb = max(1, -(-k // _TREE_LANES))
    if nb * _TREE_LANES != k:
        p = torch.nn.functional.pad(p, (0, nb * _TREE_LANES - k))
    b = p.reshape(p.shape[:-1] + (nb, _TREE_LANES))
    while b.shape[-1] > 1:
        b = b[..., 0::2] + b[..., 1::2]
    b = b[..., 0]
    acc = torch.zeros(p.shape[:-1], dtype=torch.float32, device=p.device)
    for i in range(nb):
        acc = acc + b[..., i]
    return acc


def mvm_accumulate(x: torch.Tensor, w: np.ndarray, fmt: str, group: int = INT4_GROUP) -> torch.Tensor:
    """fp32 [M, N] accumulator of doc/isa.md 7.2 for fp16 x [M, K] and master weight w [N, K]."""
    x = x.to(torch.float16)
    dev = x.device
    m, k = x.shape
    if fmt == "fp16":
        w16 = torch.from_numpy(np.asarray(w, dtype=np.float32).astype(np.float16)).to(dev).float()
        n = w16.shape[0]
        rows = max(1, (1 << 22) // max(1, n * k))
        parts = [tree_sum(x[i:i + rows].float()[:, None, :] * w16[None, :, :]) for i in range(0, m, rows)]
        return torch.cat(parts, 0) if parts else torch.zeros((0, n), dtype=torch.float32, device=dev)
    if fmt == "int4":
        q, s = layout.quantize_int4(np.asarray(w, dtype=np.float32), group)
        blk = group
    elif fmt == "int8":
        q, s = layout.quantize_int8(np.asarray(w, dtype=np.float32))
        blk = INT8_BLOCK
    else:
        raise ValueError(f"unknown weight format {fmt!r}")
    q64 = torch.from_numpy(q.astype(np.float64)).to(dev)
    s32 = torch.from_numpy(s.astype(np.float32)).to(dev)
    x64 = x.double()
    acc = torch.zeros((m, q.shape[0]), dtype=torch.float32, device=dev)
    for g0 in range(0, k, blk):
        d = (x64[:, g0:g0 + blk] @ q64[:, g0:g0 + blk].T).float()   # exact, one rounding to fp32
        if fmt == "int4":
            d = d * s32[:, g0 // group]
        acc = acc + d
    if fmt == "int8":
        acc = acc * s32
    return acc


def pwl_eval(x: torch.Tensor, name: str) -> torch.Tensor:
    """doc/isa.md 7.6: the built-in table ``name`` applied to fp32 ``x`` (fp32 result)."""
    t = pwl.table(name)
    ent = torch.from_numpy(t.entries).to(x.device)
    x = x.to(torch.float32)
    tt = (x - t.lo_f32) * torch.tensor(t.inv_step, dtype=torch.float32)
    idx = torch.where(tt < 0, torch.zeros_like(tt), torch.floor(tt) + 1)
    idx = torch.where((tt >= t.nseg) | torch.isnan(tt), torch.full_like(tt, t.nseg + 1), idx).long()
    return ent[idx, 0] * x + ent[idx, 1]


def _div(a: torch.Tensor, c) -> torch.Tensor:
    """IEEE fp32 division by ``c`` (torch divides by a CPU scalar as a multiplication by its
    reciprocal, which is not the correctly rounded quotient the ISA specifies)."""
    return a / torch.full_like(a, float(c))


def _sqrt(a: torch.Tensor) -> torch.Tensor:
    """Correctly rounded fp32 sqrt (torch's vectorised fp32 sqrt is not); float64 then one
    rounding is exact for sqrt (53 >= 2 * 24 + 2 bits)."""
    return torch.sqrt(a.double()).float()


def _param16(a) -> torch.Tensor:
    """A parameter the device reads from memory as fp16, widened exactly to fp32."""
    return a.to(torch.float16).to(torch.float32)


def _weight(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def dev_mvm(args, attrs, ev):
    x, w = args[0], args[1]
    lead = x.shape[:-1]
    acc = mvm_accumulate(x.reshape(-1, x.shape[-1]), _weight(w), attrs["wfmt"])
    i = 2
    if attrs["bias"]:
        acc = acc + _param16(args[i]).to(acc.device)
        i += 1
    if attrs["res"] != "none":
        r = args[i].reshape(-1, acc.shape[-1]).float()
        acc = acc + r if attrs["res"] == "add" else acc * r
    if attrs["relu"]:
        acc = torch.where(acc < 0, torch.zeros_like(acc), acc)
    if attrs["argmax"]:
        return torch.argmax(acc, dim=-1).to(torch.int32).reshape(lead)
    return acc.to(torch.float16).reshape(lead + (acc.shape[-1],))


def dev_rmsnorm(args, attrs, ev):
    x = args[0].float()
    c = x.shape[-1]
    ms = _div(tree_sum(x * x), c)
    r = 1.0 / _sqrt(ms + np.float32(attrs["eps"]))
    return ((x * r[..., None]) * _param16(args[1])).to(torch.float16)


def dev_layernorm(args, attrs, ev):
    x = args[0].float()
    c = x.shape[-1]
    mu = _div(tree_sum(x), c)
    d = x - mu[..., None]
    v = _div(tree_sum(d * d), c)
    r = 1.0 / _sqrt(v + np.float32(attrs["eps"]))
    return (((d * r[..., None]) * _param16(args[1])) + _param16(args[2])).to(torch.float16)


def softmax_rows(s: torch.Tensor, causal: bool, pos0: int) -> torch.Tensor:
    """doc/isa.md 7.5 softmax of fp32/fp16 scores [..., M, L]; row m is at position pos0 + m."""
    s = s.float()
    m, n = s.shape[-2], s.shape[-1]
    valid = torch.ones((m, n), dtype=torch.bool, device=s.device)
    if causal:
        valid = torch.arange(n, device=s.device)[None, :] <= (pos0 + torch.arange(m, device=s.device))[:, None]
    mx = torch.where(valid, s, torch.full_like(s, -float("inf"))).amax(-1, keepdim=True)
    e = torch.where(valid, pwl_eval(s - mx, pwl.SOFTMAX_EXP_TABLE), torch.zeros_like(s))
    tot = tree_sum(e)
    return (e / tot[..., None]).to(torch.float16)


def dev_softmax(args, attrs, ev):
    x = args[0]
    n = x.shape[-1]
    lead = x.shape[:-1]
    m = lead[-1] if lead else 1
    s = x.reshape(-1, m, n)
    return softmax_rows(s, attrs["causal"], ev(attrs["pos0"])).reshape(x.shape)


def dev_attention(args, attrs, ev):
    if attrs.get("cache") is not None:
        raise NotImplementedError(f"dev.attention with the persistent KV cache {attrs['cache']!r} keeps state "
                                  "between calls: run it on the runtime (dlavm.runtime.generate), not the "
                                  "stateless reference executor")
    q, k, v = args
    m, h, d = q.shape
    lk, hkv, _ = k.shape
    g = h // hkv
    qh = q.float().permute(1, 0, 2)                                  # [H, M, D]
    kh = k.float().permute(1, 0, 2).repeat_interleave(g, 0)          # [H, L, D]
    vh = v.float().permute(1, 0, 2).repeat_interleave(g, 0)
    scale = np.float32(attrs["scale"])
    s = torch.stack([tree_sum(qh[i][:, None, :] * kh[i][None, :, :]) for i in range(h)]) * scale
    pos0 = lk - m if attrs["pos0"] is None else ev(attrs["pos0"])
    p = softmax_rows(s, attrs["causal"], pos0).float()              # [H, M, L]
    o = torch.stack([tree_sum(p[i][:, None, :] * vh[i].T[None, :, :]) for i in range(h)])  # [H, M, D]
    return o.permute(1, 0, 2).to(torch.float16).contiguous()


def dev_rope(args, attrs, ev):
    x, table = args[0].float(), args[1].float()
    m, _, d = x.shape
    p0 = ev(attrs["pos0"])
    t = table[p0:p0 + m]
    half = d // 2
    c, s = t[:, None, :half], t[:, None, half:]
    if attrs["interleaved"]:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x[..., :half], x[..., half:]
    y1 = ((x1 * c) - (x2 * s)).to(torch.float16)
    y2 = ((x2 * c) + (x1 * s)).to(torch.float16)
    if attrs["interleaved"]:
        return torch.stack([y1, y2], -1).reshape(x.shape)
    return torch.cat([y1, y2], -1)


def dev_eltwise(args, attrs, ev):
    a, b = args[0].float(), args[1].float()
    out = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[attrs["fn"]](a, b)
    return out.to(torch.float16)


def dev_act(args, attrs, ev):
    return pwl_eval(args[0].float(), attrs["fn"]).to(torch.float16)


def dev_to_device(args, attrs, ev):
    return args[0].to(torch.float16)


def dev_to_host(args, attrs, ev):
    return args[0].to(DTYPE[attrs["dtype"]])


DEVICE_KERNELS = {
    "dev.mvm": dev_mvm, "dev.rmsnorm": dev_rmsnorm, "dev.layernorm": dev_layernorm,
    "dev.attention": dev_attention, "dev.rope": dev_rope, "dev.eltwise": dev_eltwise,
    "dev.act": dev_act, "dev.softmax": dev_softmax, "dev.to_device": dev_to_device,
    "dev.to_host": dev_to_host,
}

KERNELS.update(DEVICE_KERNELS)
