"""Simulator speed: simulated cycles and MACs per wall second, functional and
timing-only, against the same decoder layer in torch eager on this CPU.

Workload: one Llama-2-7B-shaped decode step (hidden 4096, 32 heads of 128,
MLP 11008, int4 group-128 weights, KV length ``--ctx``) on the ``vcu128``
target. The functional run executes one decoder layer with real numerics
(and checks it against the torch layer); the timing-only run times the full
32-layer step plus the greedy LM head. Every figure is measured in this run.

Usage: python bench/sim_speed.py [--ctx 512] [--repeats 3]
Prints a table and writes bench/results/sim_speed.json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlavm.target import get_target, isa, layout, pwl  # noqa: E402
from hw_models import Simulator  # noqa: E402

F16, F32 = np.float16, np.float32


@dataclass(frozen=True)
class LlamaShape:
    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 32
    head_dim: int = 128
    inter: int = 11008
    layers: int = 32
    vocab: int = 32000
    eps: float = 1e-5


class Bump:
    """Bump allocator per memory region (4 KiB aligned)."""

    def __init__(self, target):
        self.next = {r.name: r.base for r in target.figures.regions}

    def __call__(self, nbytes: int, region: str) -> int:
        addr = self.next[region]
        self.next[region] = addr + -(-max(nbytes, 1) // 4096) * 4096
        return addr


def allocate(t, cfg: LlamaShape, layers: int, cap: int):
    """Addresses of every tensor of the decode step (weights/KV in HBM, activations in SRAM)."""
    a = Bump(t)
    g = t.int4_group
    D, H, hd, I = cfg.hidden, cfg.heads, cfg.head_dim, cfg.inter
    lin = {"wq": (D, D), "wk": (cfg.kv_heads * hd, D), "wv": (cfg.kv_heads * hd, D), "wo": (D, D),
           "wg": (I, D), "wu": (I, D), "wd": (D, I)}
    per_layer = []
    for _ in range(layers):
        lw = {}
        for name, (n, k) in lin.items():
            wb, sb = layout.weight_bytes("int4", n, k, g)
            lw[name] = (a(wb, "hbm"), a(sb, "hbm"), n, k)
        lw["kc"] = a(cfg.kv_heads * cap * hd * 2, "hbm")
        lw["vc"] = a(cfg.kv_heads * cap * hd * 2, "hbm")
        lw["ln1"], lw["ln2"] = a(D * 2, "ddr"), a(D * 2, "ddr")
        per_layer.append(lw)
    wb, sb = layout.weight_bytes("int4", cfg.vocab, D, g)
    head = {"w": (a(wb, "hbm"), a(sb, "hbm"), cfg.vocab, D), "ln": a(D * 2, "ddr")}
    buf = {n: a(s, "sram") for n, s in (("x", D * 2), ("h", D * 2), ("q", D * 2), ("k", D * 2), ("v", D * 2),
                                       ("s", H * cap * 4), ("p", H * cap * 2), ("o", D * 2), ("x2", D * 2),
                                       ("g", I * 2), ("gs", I * 2), ("u", I * 2), ("tok", 8), ("act", 8192))}
    buf["rope"] = a(t.max_seq_len * hd * 4, "ddr")
    buf["stream"] = a(1 << 20, "ddr")
    return per_layer, head, buf


def layer_program(cfg: LlamaShape, lw, buf, pos: int, cap: int, silu) -> list[isa.Instruction]:
    """One decoder layer, decode (M=1) at position ``pos``: x <- layer(x)."""
    D, H, hd, I = cfg.hidden, cfg.heads, cfg.head_dim, cfg.inter
    L = pos + 1

    def mvm(w, x, out, wait, **kw):
        wa, sa, n, k = lw[w]
        return isa.make("mvm", wfmt="int4", x=x, w=wa, wscale=sa, out=out, m=1, k=k, n=n, wait=wait, **kw)

    kv = dict(m=1, kv_heads=cfg.kv_heads, d=hd, pos=pos, head_stride=cap * hd * 2, capacity=cap)
    att = dict(m=1, heads=H, kv_heads=cfg.kv_heads, l=L, d=hd)
    return [
        isa.make("rmsnorm", src=buf["x"], dst=buf["h"], gamma=lw["ln1"], rows=1, cols=D, eps=cfg.eps,
                 wait=["mvm"]),
        mvm("wq", buf["h"], buf["q"], ["sfu"]),
        mvm("wk", buf["h"], buf["k"], []),
        mvm("wv", buf["h"], buf["v"], []),
        isa.make("rope", src=buf["q"], dst=buf["q"], table=buf["rope"], m=1, heads=H, d=hd, pos0=pos, wait=["mvm"]),
        isa.make("rope", src=buf["k"], dst=buf["k"], table=buf["rope"], m=1, heads=cfg.kv_heads, d=hd, pos0=pos),
        isa.make("kv_append", src=buf["k"], dst=lw["kc"], wait=["sfu"], **kv),
        isa.make("kv_append", src=buf["v"], dst=lw["vc"], **kv),
        isa.make("mat_qk", q=buf["q"], kc=lw["kc"], out=buf["s"], k_stride=cap * hd * 2,
                 scale=1 / math.sqrt(hd), out_fp32=True, wait=["sfu"], **att),
        isa.make("softmax", src=buf["s"], dst=buf["p"], rows=H, cols=L, m=1, pos0=pos, causal=True,
                 in_fp32=True, wait=["mat"]),
        isa.make("mat_pv", p=buf["p"], vc=lw["vc"], out=buf["o"], v_stride=cap * hd * 2, wait=["sfu"], **att),
        mvm("wo", buf["o"], buf["x2"], ["mat"], res="add", resid=buf["x"]),
        isa.make("rmsnorm", src=buf["x2"], dst=buf["h"], gamma=lw["ln2"], rows=1, cols=D, eps=cfg.eps,
                 wait=["mvm"]),
        mvm("wg", buf["h"], buf["g"], ["sfu"]),
        isa.make("act", src=buf["g"], dst=buf["gs"], table=buf["act"], count=I, nseg=silu.nseg,
                 lo=silu.lo_f32, inv_step=silu.inv_step, wait=["mvm"]),
        mvm("wu", buf["h"], buf["u"], ["sfu"], res="mul", resid=buf["gs"]),
        mvm("wd", buf["u"], buf["x"], ["mvm"], res="add", resid=buf["x2"]),
    ]


def head_program(cfg, head, buf) -> list[isa.Instruction]:
    wa, sa, n, k = head["w"]
    return [isa.make("rmsnorm", src=buf["x"], dst=buf["h"], gamma=head["ln"], rows=1, cols=cfg.hidden,
                     eps=cfg.eps, wait=["mvm"]),
            isa.make("mvm", wfmt="int4", argmax=True, x=buf["h"], w=wa, wscale=sa, out=buf["tok"], m=1, k=k, n=n,
                     wait=["sfu"])]


def rope_table(positions: int, hd: int) -> np.ndarray:
    inv = 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(positions)[:, None] * inv[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(F32)


def run_stream(sim: Simulator, addr: int, prog) -> float:
    sim.load_stream(addr, prog)
    c0 = sim.cycles_now
    w0 = time.perf_counter()
    sim.run_stream(addr, len(prog))
    sim.wait()
    return time.perf_counter() - w0, sim.cycles_now - c0


def functional_layer(t, cfg: LlamaShape, ctx: int, rng):
    """Run one layer with numerics; returns (wall s, cycles, macs, sim output, inputs for torch)."""
    cap = t.max_seq_len
    per_layer, head, buf = allocate(t, cfg, 1, cap)
    lw = per_layer[0]
    sim = Simulator(t, functional=True, trace=False)
    g = t.int4_group
    dense = {}
    for name in ("wq", "wk", "wv", "wo", "wg", "wu", "wd"):
        wa, sa, n, k = lw[name]
        q, s = layout.quantize_int4(rng.standard_normal((n, k)).astype(F32) / math.sqrt(k), g)
        sim.write_mem(wa, layout.pack_int4(q, g))
        sim.write_mem(sa, s)
        dense[name] = q.astype(F32) * np.repeat(s.astype(F32), g, axis=1)[:, :k]
    pos = ctx - 1
    hd = cfg.head_dim
    kc = (rng.standard_normal((cfg.kv_heads, pos, hd))).astype(F16)
    vc = (rng.standard_normal((cfg.kv_heads, pos, hd))).astype(F16)
    for h in range(cfg.kv_heads):
        sim.write_mem(lw["kc"] + h * cap * hd * 2, kc[h])
        sim.write_mem(lw["vc"] + h * cap * hd * 2, vc[h])
    ln1 = (1 + 0.1 * rng.standard_normal(cfg.hidden)).astype(F16)
    ln2 = (1 + 0.1 * rng.standard_normal(cfg.hidden)).astype(F16)
    sim.write_mem(lw["ln1"], ln1)
    sim.write_mem(lw["ln2"], ln2)
    rope = rope_table(t.max_seq_len, hd)
    sim.write_mem(buf["rope"], rope)
    silu = pwl.table("silu")
    sim.write_mem(buf["act"], silu.to_bytes())
    x = rng.standard_normal(cfg.hidden).astype(F16)
    sim.write_mem(buf["x"], x)
    prog = layer_program(cfg, lw, buf, pos, cap, silu)
    wall, cycles = run_stream(sim, buf["stream"], prog)
    out = sim.read_array(buf["x"], F16, cfg.hidden)
    inputs = dict(x=x, dense=dense, kc=kc, vc=vc, ln1=ln1, ln2=ln2, rope=rope[pos], pos=pos)
    return wall, cycles, sim.stats()["macs"], out, inputs


def torch_layer(cfg: LlamaShape, inp, repeats: int):
    """The same decode layer in torch eager (fp32, dequantized weights); returns (best wall s, output)."""
    import torch
    F = torch.nn.functional
    W = {k: torch.from_numpy(v) for k, v in inp["dense"].items()}
    kc = torch.from_numpy(inp["kc"].astype(F32))
    vc = torch.from_numpy(inp["vc"].astype(F32))
    ln1, ln2 = torch.from_numpy(inp["ln1"].astype(F32)), torch.from_numpy(inp["ln2"].astype(F32))
    hd, H = cfg.head_dim, cfg.heads
    rope = torch.from_numpy(inp["rope"])
    cos, sin = torch.cat([rope[: hd // 2]] * 2), torch.cat([rope[hd // 2:]] * 2)
    x0 = torch.from_numpy(inp["x"].astype(F32))

    def rot(t):
        return t * cos + torch.cat([-t[..., hd // 2:], t[..., : hd // 2]], dim=-1) * sin

    def layer(x):
        h = F.rms_norm(x, (cfg.hidden,), ln1, cfg.eps)
        q, k, v = (F.linear(h, W[n]).view(-1, hd) for n in ("wq", "wk", "wv"))
        q, k = rot(q), rot(k)
        K = torch.cat([kc, k[:, None]], dim=1)
        V = torch.cat([vc, v[:, None]], dim=1)
        o = F.scaled_dot_product_attention(q[:, None], K, V)[:, 0].reshape(-1)
        x2 = x + F.linear(o, W["wo"])
        h = F.rms_norm(x2, (cfg.hidden,), ln2, cfg.eps)
        return x2 + F.linear(F.silu(F.linear(h, W["wg"])) * F.linear(h, W["wu"]), W["wd"])

    with torch.no_grad():
        out = layer(x0)
        best = float("inf")
        for _ in range(repeats):
            w0 = time.perf_counter()
            layer(x0)
            best = min(best, time.perf_counter() - w0)
    return best, out.numpy()


def timing_step(t, cfg: LlamaShape, ctx: int):
    """Timing-only full decode step: 32 layers + LM head; returns (wall s, cycles, macs, stats, bytes)."""
    cap = t.max_seq_len
    per_layer, head, buf = allocate(t, cfg, cfg.layers, cap)
    sim = Simulator(t, functional=False, trace=True)
    silu = pwl.table("silu")
    prog = [i for lw in per_layer for i in layer_program(cfg, lw, buf, ctx - 1, cap, silu)]
    prog += head_program(cfg, head, buf)
    wall, cycles = run_stream(sim, buf["stream"], prog)
    st = sim.stats()
    return wall, cycles, st["macs"], st, len(prog), sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctx", type=int, default=512, help="KV length including the new token")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim_speed.json"))
    args = ap.parse_args()
    t = get_target("vcu128")
    cfg = LlamaShape()
    rng = np.random.default_rng(0)

    f_wall, f_cycles, f_macs, f_out, inputs = functional_layer(t, cfg, args.ctx, rng)
    tt_wall, t_out = torch_layer(cfg, inputs, args.repeats)
    err = float(np.abs(f_out.astype(F32) - t_out).max())
    ref_scale = float(np.abs(t_out).max())
    s_wall, s_cycles, s_macs, st, n_insn, sim = timing_step(t, cfg, args.ctx)
    trace_path = sim.write_trace(ROOT / "bench" / "results" / "sim_speed_trace.json")

    fig = t.figures
    step_us = fig.cycles_to_us(s_cycles)
    # Roofline of the decode step: all HBM bytes it must move at full HBM bandwidth.
    roofline_us = fig.cycles_to_us(st["hbm_bytes"] / fig.hbm_bytes_per_cycle)
    rows = [
        ("functional, 1 layer", f_cycles, f_macs, f_wall),
        (f"timing-only, {cfg.layers} layers + head", s_cycles, s_macs, s_wall),
    ]
    result = {
        "target": t.name, "model": "llama-2-7b shape, int4 g128", "ctx": args.ctx,
        "host": platform.processor() or platform.machine(),
        "modes": {name: {"sim_cycles": c, "macs": m, "wall_s": w, "cycles_per_s": c / w, "macs_per_s": m / w}
                  for name, c, m, w in rows},
        "torch_eager_layer_s": tt_wall,
        "functional_over_torch": f_wall / tt_wall,
        "timing_only_layer_over_torch": (s_wall / (cfg.layers + 1)) / tt_wall,
        "functional_vs_torch_max_abs_err": err, "torch_output_max_abs": ref_scale,
        "decode_step": {"instructions": n_insn, "sim_us": step_us, "tokens_per_s": 1e6 / step_us,
                        "hbm_bytes": st["hbm_bytes"], "hbm_roofline_us": roofline_us,
                        "fraction_of_roofline": roofline_us / step_us,
                        "unit_busy_cycles": st["unit_busy_cycles"]},
        "trace": str(trace_path.relative_to(ROOT)),
    }
    print(f"target {t.name}, Llama-2-7B-shaped decode (int4 g128), ctx {args.ctx}")
    print(f"{'mode':<34}{'sim cycles':>14}{'MACs':>16}{'wall s':>10}{'cycles/s':>14}{'MACs/s':>12}")
    for name, c, m, w in rows:
        print(f"{name:<34}{c:>14,}{m:>16,}{w:>10.3f}{c / w:>14.3e}{m / w:>12.3e}")
    print(f"{'torch eager, 1 layer (fp32 CPU)':<34}{'':>14}{f_macs:>16,}{tt_wall:>10.3f}{'':>14}"
          f"{f_macs / tt_wall:>12.3e}")
    print(f"functional / torch eager wall ratio: {f_wall / tt_wall:.1f}x   "
          f"timing-only per layer / torch: {result['timing_only_layer_over_torch']:.2f}x")
    print(f"functional vs torch layer output: max |diff| {err:.3g} (output max |y| {ref_scale:.3g})")
    print(f"simulated decode step: {step_us:,.0f} us = {1e6 / step_us:.1f} tok/s; HBM roofline "
          f"{roofline_us:,.0f} us -> {100 * roofline_us / step_us:.1f}% of roofline")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} and {result['trace']}")


if __name__ == "__main__":
    main()
