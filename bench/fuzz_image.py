#!/usr/bin/env python
"""Fuzz DevProc's image decoding: clib's dlavm::devproc::decode_image (built with AddressSanitizer +
UndefinedBehaviorSanitizer) against devproc/lang/image.py.

``--cases`` mutated PNGs (default 20,000; the test suite runs 400 of the same kind) from ``--seed``: the
mutations of tests/devproc/test_image.py (raw bit flips, truncations, insertions and deletions; damage inside
IHDR, PLTE, tRNS or IDAT with the chunk's CRC recomputed; damage to the deflate data with the Adler-32
repaired when the stream still inflates) applied to PNGs of every colour type, bit depth, filter and zlib
strategy. Per input the outcomes must agree: both accept with the same pixels, or both refuse with the same
one-line message. A disagreement or a sanitizer finding is saved under ``bench/results/fuzz_crashes/``.
Prints the counts; exit code 1 if anything disagreed or crashed.
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CRASHES = ROOT / "bench" / "results" / "fuzz_crashes"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flavour", choices=("asan", "release"), default="asan")
    ap.add_argument("--batch", type=int, default=500, help="inputs per C++ process")
    args = ap.parse_args()

    from devproc.lang import image as I
    from tests.clib.clib_build import SANITIZER_EXIT_CODE, build_clib, compile_programs, sanitizer_env
    from tests.devproc import test_image as T

    work = Path(tempfile.mkdtemp(prefix="fuzz_image_"))
    try:
        lib = build_clib(args.flavour)
        exe = compile_programs({"image_tool": [ROOT / "tests" / "devproc" / "image_tool.cc"]}, work / "bin",
                               args.flavour, lib)["image_tool"]
        rng = random.Random(args.seed)
        seeds = [data for _, data in T.own_png_files() + T.pillow_png_files()]
        counts = {"accepted": 0, "refused": 0, "disagree": 0, "crash": 0}
        t0 = time.time()
        for start in range(0, args.cases, args.batch):
            n = min(args.batch, args.cases - start)
            files, expected, jobs = [], [], []
            for k in range(n):
                path = work / f"in{start + k}.png"
                path.write_bytes(T.mutate(rng.choice(seeds), rng))
                files.append(path)
                expected.append(T.py_outcome(I.load_image, str(path)))
                jobs.append(["decode", str(path), str(work / f"out{start + k}")])
            (work / "jobs").write_text("".join("\t".join(j) + "\n" for j in jobs))
            res = subprocess.run([str(exe), "batch", str(work / "jobs")], capture_output=True, text=True,
                                 env=sanitizer_env(), timeout=3600)
            if res.returncode != 0:
                counts["crash"] += 1
                CRASHES.mkdir(parents=True, exist_ok=True)
                for f in files:
                    shutil.copy(f, CRASHES / f"image_{args.seed}_{f.name}")
                (CRASHES / f"image_{args.seed}_batch{start}.txt").write_text(
                    f"exit code {res.returncode} (sanitizer: {SANITIZER_EXIT_CODE})\n{res.stderr}")
                print(f"batch at {start}: exit code {res.returncode}\n{res.stderr[-2000:]}")
                continue
            for path, e, j in zip(files, expected, jobs):
                err = Path(j[2] + ".err")
                g = err.read_text() if err.exists() else T.read_raw(Path(j[2]).read_bytes())
                if not T.same(g, e):
                    counts["disagree"] += 1
                    CRASHES.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, CRASHES / f"image_{args.seed}_{path.name}")
                    print(f"{path.name}: numpy {e if isinstance(e, str) else 'accepts'}; "
                          f"C++ {g if isinstance(g, str) else 'accepts'}")
                else:
                    counts["refused" if isinstance(g, str) else "accepted"] += 1
        print(f"{args.cases} inputs ({args.flavour}, seed {args.seed}, {time.time() - t0:.0f} s): " +
              ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 1 if counts["disagree"] or counts["crash"] else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
