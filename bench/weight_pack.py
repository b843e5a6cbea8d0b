#!/usr/bin/env python
"""Weight quantise + pack throughput (dlavm/target/layout.py) on Llama-7B-sized matrices.

For each format (int4 g128, int8 per channel, fp16) and each matrix shape
(random fp32, fixed seed), times quantise + pack into the device layout of
doc/isa.md section 6 and reports MB/s of fp32 input consumed (input MB /
seconds; best of ``--repeat`` runs) and the packed output size. The
``int4`` row is quantise then pack (two passes); ``int4-fused`` is
``layout.quantize_pack_int4``, the compiler's path (same bytes, checked). A progress
line goes to stderr. Writes bench/results/weight_pack.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008))  # q/k/v/o, gate/up, down of Llama-7B


def packers(group: int):
    """Format -> function(w fp32 [N, K]) -> tuple of packed device arrays."""
    import numpy as np

    from dlavm.target.layout import pack_int4, quantize_int4, quantize_pack_int4, quantize_int8

    def int4(w):
        q, scales = quantize_int4(w, group)
        return pack_int4(q, group), scales

    def int8(w):
        return quantize_int8(w)

    def fp16(w):
        return (np.ascontiguousarray(w, dtype=np.float16),)

    def int4_fused(w):
        return quantize_pack_int4(w, group)

    return {"int4": int4, "int8": int8, "fp16": fp16, "int4-fused": int4_fused}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="only the 4096x4096 matrix")
    args = ap.parse_args()

    import numpy as np

    from dlavm.target import get_target

    group = get_target("vcu128").int4_group
    shapes = SHAPES[:1] if args.quick else SHAPES
    fns = packers(group)
    rng = np.random.default_rng(0)
    rows = []
    total = len(shapes) * len(fns) * args.repeat
    done = 0
    for n, k in shapes:
        w = rng.standard_normal((n, k), dtype=np.float32)
        for fmt, fn in fns.items():
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = fn(w)
                best = min(best, time.perf_counter() - t0)
                done += 1
                print(f"\r[{done}/{total}] {fmt} {n}x{k}: {best:.3f} s", end="", file=sys.stderr, flush=True)
            if fmt == "int4-fused":  # the fused path must produce the very bytes of the two-step one
                ref = fns["int4"](w)
                if not all(np.array_equal(a, b) for a, b in zip(ref, out)):
                    raise SystemExit(f"int4-fused differs from layout.py on {n}x{k}")
            rows.append({"format": fmt, "n": n, "k": k, "seconds": best, "input_mb": w.nbytes / 1e6,
                         "output_mb": sum(a.nbytes for a in out) / 1e6, "mb_per_s": w.nbytes / 1e6 / best})
    print(file=sys.stderr)
    print(f"quantise+pack, fp32 input MB/s (best of {args.repeat}), numpy {np.__version__}, "
          f"{platform.machine()}, int4 group {group}")
    print(f"{'format':<11}{'shape':>12}{'in MB':>9}{'out MB':>9}{'seconds':>10}{'MB/s':>10}")
    for r in rows:
        print(f"{r['format']:<11}{r['n']:>6}x{r['k']:<6}{r['input_mb']:>9.1f}{r['output_mb']:>9.1f}"
              f"{r['seconds']:>10.3f}{r['mb_per_s']:>10.0f}")
    for fmt in fns:
        sel = [r for r in rows if r["format"] == fmt]
        agg = sum(r["input_mb"] for r in sel) / sum(r["seconds"] for r in sel)
        print(f"{fmt}: {agg:.0f} MB/s overall")
    path = os.path.join(os.path.dirname(__file__), "results", "weight_pack.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"numpy": np.__version__, "machine": platform.machine(), "repeat": args.repeat,
                   "int4_group": group, "rows": rows}, f, indent=2)
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
