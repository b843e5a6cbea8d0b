"""The numerics the reference kernels of the ``dev.*`` ops share: doc/isa.md section 7 at tensor level.

Each device op's reference kernel lives with the op (``dlavm.devops``) and
is built from these: ``tree_sum`` (the reduction order of fp16 x fp16
products and SFU row sums), ``mvm_accumulate`` (weights fake-quantised
exactly as ``dlavm.target.layout`` quantises them: int4 symmetric with one
fp16 scale per group of ``int4_group`` channels, int8 per output channel
with exact partial sums over ``int8_block`` channels, fp16; exact per-block
dot products rounded once to fp32 and accumulated in fp32 in block order),
``pwl_eval`` (the piecewise-linear tables of ``dlavm.target.pwl``),
``softmax_rows``, and the correctly rounded fp32 division and square root.
The block sizes and the tree width are arguments: the ``quantize`` pass
copies them from the target onto each device op (its spec's ``numerics``),
and the kernels read them with :func:`numerics`.

The kernels follow the ISA's operation order so results agree with the
simulator (bit for bit where tests/backend/test_lower_ops.py checks it),
and they let a legalized graph be checked against torch before any
hardware is involved.
"""
from __future__ import annotations

import numpy as np
import torch

from ..target import layout, pwl


def tree_sum(p: torch.Tensor, lanes: int) -> torch.Tensor:
    """doc/isa.md 7.1: ``lanes``-lane pairwise fp32 trees (the target's ``tree_lanes``), blocks
    accumulated in order."""
    p = p.to(torch.float32)
    k = p.shape[-1]
    nb = max(1, -(-k // lanes))
    if nb * lanes != k:
        p = torch.nn.functional.pad(p, (0, nb * lanes - k))
    b = p.reshape(p.shape[:-1] + (nb, lanes))
    while b.shape[-1] > 1:
        b = b[..., 0::2] + b[..., 1::2]
    b = b[..., 0]
    acc = torch.zeros(p.shape[:-1], dtype=torch.float32, device=p.device)
    for i in range(nb):
        acc = acc + b[..., i]
    return acc


def mvm_accumulate(x: torch.Tensor, w: np.ndarray, fmt: str, int4_group: int | None,
                   int8_block: int | None, tree_lanes: int | None) -> torch.Tensor:
    """fp32 [M, N] accumulator of doc/isa.md 7.2 for fp16 x [M, K] and master weight w [N, K]
    (``int4_group`` is used by int4 weights, ``int8_block`` by int8 weights, ``tree_lanes`` by fp16
    weights)."""
    x = x.to(torch.float16)
    dev = x.device
    m, k = x.shape
    if fmt == "fp16":
        w16 = torch.from_numpy(np.asarray(w, dtype=np.float32).astype(np.float16)).to(dev).float()
        n = w16.shape[0]
        rows = max(1, (1 << 22) // max(1, n * k))
        parts = [tree_sum(x[i:i + rows].float()[:, None, :] * w16[None, :, :], tree_lanes)
                 for i in range(0, m, rows)]
        return torch.cat(parts, 0) if parts else torch.zeros((0, n), dtype=torch.float32, device=dev)
    if fmt == "int4":
        q, s = layout.quantize_int4(np.asarray(w, dtype=np.float32), int4_group)
        blk = group = int4_group
    elif fmt == "int8":
        q, s = layout.quantize_int8(np.asarray(w, dtype=np.float32))
        blk = int8_block
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
    slope, icpt = ent[idx, 0], ent[idx, 1]
    return torch.where((slope == 0) & torch.isinf(x), icpt, slope * x + icpt)   # a flat entry is a constant


def div_f32(a: torch.Tensor, c) -> torch.Tensor:
    """IEEE fp32 division by ``c`` (torch divides by a CPU scalar as a multiplication by its
    reciprocal, which is not the correctly rounded quotient the ISA specifies)."""
    return a / torch.full_like(a, float(c))


def sqrt_f32(a: torch.Tensor) -> torch.Tensor:
    """Correctly rounded fp32 sqrt (torch's vectorised fp32 sqrt is not); float64 then one
    rounding is exact for sqrt (53 >= 2 * 24 + 2 bits)."""
    return torch.sqrt(a.double()).float()


def param16(a) -> torch.Tensor:
    """A parameter the device reads from memory as fp16, widened exactly to fp32."""
    return a.to(torch.float16).to(torch.float32)


def weight_array(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def softmax_rows(s: torch.Tensor, causal: bool, pos0: int, lanes: int) -> torch.Tensor:
    """doc/isa.md 7.5 softmax of fp32/fp16 scores [..., M, L]; row m is at position pos0 + m."""
    s = s.float()
    m, n = s.shape[-2], s.shape[-1]
    valid = torch.ones((m, n), dtype=torch.bool, device=s.device)
    if causal:
        valid = torch.arange(n, device=s.device)[None, :] <= (pos0 + torch.arange(m, device=s.device))[:, None]
    mx = torch.where(valid, s, torch.full_like(s, -float("inf"))).amax(-1, keepdim=True)
    e = torch.where(valid, pwl_eval(s - mx, pwl.SOFTMAX_EXP_TABLE), torch.zeros_like(s))
    tot = tree_sum(e, lanes)
    return (e / tot[..., None]).to(torch.float16)


def numerics(attrs, name: str, op: str) -> int:
    """The numerics parameter ``name`` (a target field) recorded on an ``op`` call; raises naming
    the op and the pass that sets it when the graph was built without it."""
    v = attrs.get(name)
    if v is None:
        raise ValueError(f"{op} has no '{name}' attribute: run the quantize pass (it copies the target's "
                         f"{name}) or dlavm.passes.quantize.bind_numerics on a hand-built device graph")
    return v
