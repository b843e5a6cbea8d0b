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
    ap.add_argument("--largest", action="store_true",
                    help="also find the largest context whose KV cache fits HBM (the target with max_seq_len "
                         "raised, compiled at that context and one past it)")
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
    largest = _largest(args.target, rows, cm) if args.largest else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "stream_size", "target": args.target, "model": "llama2-7b-shape",
                               "weights": "int4", "machine": platform.machine(), "rows": rows,
                               "largest_context": largest}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _largest(target_name: str, rows: list, cm) -> dict:
    """The largest max-seq (a multiple of 64) whose weights + KV pool fit HBM, predicted from the last compile
    (KV bytes per position, scratch as planned) and checked: compiled at it, refused 64 past it, on the
    target with ``max_seq_len`` raised (the ISA bound the real target has is printed beside it)."""
    from dlavm.compiler import CompileError
    from dlavm.llm import compile_llm
    from dlavm.passes.memory_plan import PlanError
    from dlavm.target import get_target
    t = get_target(target_name)
    r = rows[-1]
    hbm = t.figures.region("hbm")
    weights = cm.build.manifest.memory["weights"].used
    per_pos = (r["kv_pool_bytes"] - r["attention_scratch_bytes"]) / r["max_seq"]
    guess = int((hbm.end - hbm.base - weights - r["attention_scratch_bytes"]) // per_pos)
    wide = t.replace(name=f"{t.name}-ctx", max_seq_len=1 << 20)

    def fits(n: int) -> bool:
        print(f"  compiling at max-seq {n} ({wide.name}: {t.name} with max_seq_len raised) ...", flush=True)
        try:
            compile_llm("llama2-7b-shape", target=wide, weights="int4", max_seq=n)
            return True
        except (PlanError, CompileError) as e:
            print(f"    refused: {str(e).splitlines()[0][:200]}")
            return False
    n = guess // 64 * 64
    while not fits(n):   # the scratch grows a little with the context: step down until it fits
        n -= 64
    assert not fits(n + 64), "64 positions past the predicted limit must not fit"
    print(f"largest context (a multiple of 64) whose KV cache fits {t.name}'s HBM: {n} positions "
          f"({per_pos / 2**10:.0f} KiB of KV per position, weights {weights / 2**30:.2f} GiB); "
          f"{t.name}'s max_seq_len is {t.max_seq_len}")
    return {"positions": n, "kv_bytes_per_position": per_pos, "weights_bytes": weights,
            "target_max_seq_len": t.max_seq_len}


if __name__ == "__main__":
    sys.exit(main())
