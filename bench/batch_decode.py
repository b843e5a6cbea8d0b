"""Batched decode on the Llama-2-7B shape: tokens/s and step time for B = 1, 2, 4, 8 sequences per step.

One artifact: the ``llama2-7b-shape`` recipe (32 layers, hidden 4096, 32 heads of 128, MLP 11008,
vocab 32000; meta device, shape only) compiled by ``compile_llm(..., batch=8)`` for ``vcu128`` with int4
g128 weights and a KV cache of ``--max-ctx`` positions per slot (8 slots). It runs on the timing-only
simulator (the cycle model without numerics; bench/sim_speed.py). Every slot is first prefilled with
``ctx - 1`` tokens (the ``greedy`` entry with state dims ``ctx``, ``slot``: a real prefill, untimed, so
every key a step reads was written). Then, per B, the ``greedy_batch`` entry runs one decode step of B
sequences (rows 0..B-1, each at KV length ``ctx``: B new tokens), ``--repeats`` times; the simulated
cycles of one step (every repeat gives the same count: the model is deterministic) give

* step time = cycles / clock;
* tokens/s (aggregate) = B / step time; per sequence = 1 / step time;
* HBM bytes per step and the HBM roofline (bytes at the ports' peak) over the step time; MACs per
  step over the step time at the device's peak MACs per cycle; the roofline (the larger of the two
  lower bounds, ``Figures.roofline_cycles``) over the step time.

For comparison the single-sequence ``greedy`` entry (today's decode, its head-group pipeline) runs one
step at the same ``ctx`` on the same artifact. Progress on stderr from the first second; prints a
table and writes bench/results/batch_decode.json.

Usage: ``python bench/batch_decode.py [--ctx 512] [--max-ctx 1024] [--batches 1,2,4,8] [--repeats 1]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctx", type=int, default=512, help="KV length of every sequence after the step")
    ap.add_argument("--max-ctx", type=int, default=1024, help="KV cache capacity per slot")
    ap.add_argument("--batches", default="1,2,4,8", help="comma-separated B values (each <= 8)")
    ap.add_argument("--repeats", type=int, default=1, help="timed steps per B (the wall time is the best)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch_decode.json"))
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    slots = max(batches)
    if not 2 <= args.ctx <= args.max_ctx:
        ap.error(f"--ctx must be in [2, --max-ctx={args.max_ctx}]")
    if not all(1 <= b <= 8 for b in batches):
        ap.error("--batches: each B must be in [1, 8]")

    from dlavm.cli.progress import Progress
    from dlavm.llm import compile_llm

    with Progress() as progress:
        progress.note(f"compile llama2-7b-shape for vcu128, int4, max_ctx {args.max_ctx}, {slots} slots ...")
        t0 = time.perf_counter()
        cm = compile_llm("llama2-7b-shape", target="vcu128", weights="int4", max_seq=args.max_ctx, batch=slots,
                         on_progress=progress)
        compile_s = time.perf_counter() - t0
        progress.note(f"compiled in {compile_s:.0f} s")
        rt = cm.runtime(functional=False)
        fig = cm.target.figures
        past = args.ctx - 1
        for s in range(slots):
            progress("prefill", s + 1, slots, f"slot {s}: {past} tokens")
            rt.run("greedy", np.zeros((1, past), np.int64), dims={"ctx": past, "slot": s})

        def figures(wall):
            cycles, hbm = rt.last_cycles, rt.last_hbm_bytes
            step_us = fig.cycles_to_us(cycles)
            roof_us = fig.cycles_to_us(hbm / fig.hbm_bytes_per_cycle)
            macs = rt.last_macs
            return {"cycles": cycles, "hbm_bytes": hbm, "macs": macs, "step_ms": step_us / 1e3,
                    "hbm_roofline_ms": roof_us / 1e3, "hbm_of_peak": roof_us / step_us,
                    "macs_of_peak": macs / fig.peak_macs_per_cycle / cycles,
                    "of_roofline": fig.roofline_cycles(macs, hbm) / cycles, "wall_s": wall}

        progress("single", 0, 1, "greedy entry, one sequence")
        w0 = time.perf_counter()
        rt.run("greedy", np.zeros((1, 1), np.int64), dims={"ctx": args.ctx, "slot": 0})
        single = figures(time.perf_counter() - w0)
        single["tokens_per_s"] = 1e3 / single["step_ms"]
        progress("single", 1, 1, f"{single['step_ms']:.2f} ms")

        rows = []
        for i, b in enumerate(batches):
            dims = {f"ctx{r}": args.ctx for r in range(slots)}
            best = float("inf")
            for k in range(args.repeats):
                progress("batched", i * args.repeats + k, len(batches) * args.repeats, f"B={b}")
                w0 = time.perf_counter()
                rt.run("greedy_batch", np.zeros((1, b), np.int64), dims=dims)
                best = min(best, time.perf_counter() - w0)
            r = {"B": b, **figures(best)}
            r["tokens_per_s"] = b * 1e3 / r["step_ms"]
            r["tokens_per_s_per_sequence"] = 1e3 / r["step_ms"]
            rows.append(r)
        progress("batched", len(batches) * args.repeats, len(batches) * args.repeats, "done")

    base = rows[0]["tokens_per_s"] if rows[0]["B"] == 1 else single["tokens_per_s"]
    print(f"llama2-7b-shape, vcu128 at {cm.target.clock_mhz:g} MHz, int4 g128, timing-only simulator; KV length "
          f"{args.ctx} per sequence (capacity {args.max_ctx} x {slots} slots); one decode step per row below")
    print(f"{'run':<22}{'step ms':>9}{'tokens/s':>10}{'per seq':>9}{'vs B=1':>8}{'HBM GB':>8}{'HBM/peak':>10}"
          f"{'MACs/peak':>11}{'roofline':>10}{'wall s':>8}")

    def line(name, r, tps, per_seq, rel):
        print(f"{name:<22}{r['step_ms']:>9.2f}{tps:>10.1f}{per_seq:>9.1f}{rel:>8}{r['hbm_bytes'] / 1e9:>8.2f}"
              f"{100 * r['hbm_of_peak']:>9.1f}%{100 * r['macs_of_peak']:>10.1f}%{100 * r['of_roofline']:>9.1f}%"
              f"{r['wall_s']:>8.1f}")
    line("greedy (1 sequence)", single, single["tokens_per_s"], single["tokens_per_s"], "")
    for r in rows:
        line(f"greedy_batch B={r['B']}", r, r["tokens_per_s"], r["tokens_per_s_per_sequence"],
             f"{r['tokens_per_s'] / base:.2f}x")
    result = {"model": "llama2-7b-shape", "target": "vcu128", "weights": "int4", "ctx": args.ctx,
              "max_ctx": args.max_ctx, "slots": slots, "compile_s": compile_s, "repeats": args.repeats,
              "clock_mhz": cm.target.clock_mhz, "single": single, "batched": rows,
              "host": platform.processor() or platform.machine(), "load_average": os.getloadavg()[0],
              "kv_bytes": int(sum(b.size for n, b in cm.manifest.memory["kv"].buffers.items()
                                  if n.startswith("kv."))),
              "instructions": {e: sum(s.count for n, s in cm.manifest.streams.items() if n.split(".")[0] == e)
                               for e in ("greedy", "greedy_batch")}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {Path(args.out).relative_to(ROOT) if Path(args.out).is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
