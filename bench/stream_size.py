"""Stream size and decode time against the sequence bound (max-seq), Llama-2-7B shape.

Compiles the ``llama2-7b-shape`` recipe (32 layers, meta device: no weights) for generation with
``compile_llm`` at each max-seq (default 128, 512, 2048, 4096), target ``vcu128``, int4, and prints per
bound: the AUX stream entries and bytes of one entry (``greedy``), per layer, the loops the host
re-launches, the KV pool (KV cache + attention scratch) and whether it fits HBM, and the simulated
(timing-only) time of one decode step at KV length ``--ctx`` (a prefill of ``ctx - 1`` tokens first,
not measured) and of a prefill of ``--prefill`` tokens where the bound allows it. A token loop's body
is stored once and re-launched per extra trip (doc/backend.md "AUX streams"), so the stream should
not grow with the bound, and neither should decode time.

Usage: ``python bench/stream_size.py [--bounds 128,512,2048,4096] [--ctx 128] [--prefill 512]``.
Prints a table and writes bench/results/stream_size.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bounds", default="128,512,2048,4096")
    ap.add_argument("--ctx", type=int, default=128, help="KV length of the measured decode step")
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens of the measured prefill (0: none)")
    ap.add_argument("--target", default="vcu128")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stream_size.json"))
    args = ap.parse_args(argv)
    from rich.progress import Progress

    from dlavm.compiler import profile
    from dlavm.llm import compile_llm
    bounds = [int(b) for b in args.bounds.split(",")]
    rows = []
    with Progress(transient=True) as bar:
        task = bar.add_task("compiling", total=len(bounds) * 3)
        for b in bounds:
            bar.update(task, description=f"compile max-seq {b}")
            t0 = time.process_time()
            cm = compile_llm("llama2-7b-shape", target=args.target, weights="int4", max_seq=b)
            compile_s = time.process_time() - t0
            bar.advance(task)
            m = cm.build.manifest
            layers = 32
            greedy = [s for n, s in m.streams.items() if n.startswith("greedy.")]
            entries = sum(s.count for s in greedy)
            loops = sum(len(s.loops) for s in greedy)
            kv = m.memory["kv"]
            scratch = sum(buf.size for n, buf in kv.buffers.items() if n.startswith("scratch."))
            read = cm.build.files.__getitem__
            ctx = min(args.ctx, b)
            bar.update(task, description=f"max-seq {b}: decode at ctx {ctx}")
            dec = profile(m, read, seq=1, entry="greedy", functional=False, ctx=ctx)
            bar.advance(task)
            pre = None
            if args.prefill and args.prefill <= b:
                bar.update(task, description=f"max-seq {b}: prefill {args.prefill}")
                pre = profile(m, read, seq=args.prefill, entry="greedy", functional=False)
            bar.advance(task)
            rows.append({
                "max_seq": b, "entries": entries, "bytes": entries * 64, "bytes_per_layer": entries * 64 / layers,
                "loops": loops, "kv_pool_bytes": kv.used, "attention_scratch_bytes": scratch,
                "decode_ctx": ctx, "decode_cycles": dec["cycles"], "decode_ms": dec["time_us"] / 1e3,
                "decode_instructions": dec["instructions"],
                "prefill_tokens": args.prefill if pre else None, "prefill_ms": pre["time_us"] / 1e3 if pre else None,
                "compile_cpu_s": compile_s})
    base = rows[0]
    head = (f"{'max-seq':>8} {'entries':>8} {'stream KB':>10} {'B/layer':>8} {'x first':>8} {'loops':>6} "
            f"{'KV pool MiB':>12} {'scratch MiB':>12} {'decode ms':>10} {'x first':>8} {'prefill ms':>11}")
    print(f"llama2-7b-shape int4 on {args.target}: greedy entry; decode at ctx {args.ctx} (timing-only)")
    print(head)
    for r in rows:
        pre = f"{r['prefill_ms']:,.1f}" if r["prefill_ms"] is not None else "-"
        print(f"{r['max_seq']:>8} {r['entries']:>8,} {r['bytes'] / 1024:>10,.1f} {r['bytes_per_layer']:>8,.0f} "
              f"{r['bytes'] / base['bytes']:>8.3f} {r['loops']:>6} {r['kv_pool_bytes'] / 2**20:>12,.1f} "
              f"{r['attention_scratch_bytes'] / 2**20:>12,.1f} {r['decode_ms']:>10.3f} "
              f"{r['decode_cycles'] / base['decode_cycles']:>8.4f} {pre:>11}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "stream_size", "target": args.target, "model": "llama2-7b-shape",
                               "weights": "int4", "machine": platform.machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
