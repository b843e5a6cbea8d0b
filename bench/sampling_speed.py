#!/usr/bin/env python
"""Time of one sampled token: the C++ sampler (``dlavm::sample_token``, what the generated driver and
dlavm-server run) and the Python one (``dlavm.runtime.sampling.sample``), microseconds per token.

Vocabularies of 512, 32,000 (the Llama-2 7B shape's) and 151,936 ids; logits drawn from N(0, 3) in
float32 at temperature 0.8; top_k 0 and 40 by top_p 1 and 0.9 (doc/serve.md, "Sampling is the same
everywhere": with top_k 0 and top_p 1 nothing is sorted; top_k keeps a heap; top_p orders only the ids
it keeps). The C++ figure is the median of ``--draws`` calls timed one by one inside
tests/llm/sampling_tool.cc (``time`` mode, release build), with the CPU's widest vector loops (AVX2
where there) and with the portable ones; Python's the median of ``--py-draws`` calls. For scale: the 7B
shape runs about 20 ms per token on the simulated device, so 1% of it is 200 us. Prints a table and
writes bench/results/sampling_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCABS = (512, 32_000, 151_936)
PARAMS = ((0, 1.0), (0, 0.9), (40, 1.0), (40, 0.9))   # (top_k, top_p)
TEMPERATURE = 0.8
SEED = 7


def logits(vocab: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 3.0, vocab).astype(np.float32)


def cpp_times(tool: Path, work: Path, draws: int, portable: bool) -> list[dict]:
    """One ``time`` run over every (vocab, top_k, top_p): median and minimum us per call, and the last id."""
    cases = b""
    for vocab in VOCABS:
        x = logits(vocab).astype("<f4").tobytes()
        for top_k, top_p in PARAMS:
            cases += struct.pack("<IIdqdQ", vocab, draws, TEMPERATURE, top_k, top_p, SEED) + x
    path = work / "cases.bin"
    path.write_bytes(cases)
    res = subprocess.run([str(tool), *(["--portable"] if portable else []), "time", str(path)], capture_output=True,
                         text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"sampling_tool failed: {res.stderr[-500:]}")
    lines = res.stdout.split("\n")[:-1]
    return [{"median_us": float(a), "min_us": float(b), "last_id": int(c)} for a, b, c in (ln.split() for ln in lines)]


def python_time(vocab: int, top_k: int, top_p: float, draws: int) -> float:
    """Median us per call of dlavm.runtime.sampling.sample."""
    from dlavm.runtime.sampling import SplitMix64, sample
    x, rng, times = logits(vocab), SplitMix64(SEED), []
    for _ in range(draws):
        t0 = time.perf_counter()
        sample(x, TEMPERATURE, top_k, top_p, rng)
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=2000, help="C++ calls per case (default 2000)")
    ap.add_argument("--py-draws", type=int, default=30, help="Python calls per case (default 30)")
    args = ap.parse_args(argv)
    from tests.clib.clib_build import build_clib, compile_programs
    print("building clib (release) and tests/llm/sampling_tool.cc ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tool = compile_programs({"sampling_tool": [ROOT / "tests" / "llm" / "sampling_tool.cc"]}, work, "release",
                                build_clib("release"))["sampling_tool"]
        vectors = subprocess.run([str(tool), "vectors"], capture_output=True, text=True, check=True).stdout.strip()
        native = cpp_times(tool, work, args.draws, portable=False)
        portable = cpp_times(tool, work, args.draws, portable=True)
    rows = []
    for i, (vocab, (top_k, top_p)) in enumerate((v, p) for v in VOCABS for p in PARAMS):
        if native[i]["last_id"] != portable[i]["last_id"]:
            raise SystemExit(f"vocab {vocab} top_k {top_k} top_p {top_p}: the two vector loops drew different ids")
        rows.append({"vocab": vocab, "top_k": top_k, "top_p": top_p, "cpp_us": native[i]["median_us"],
                     "cpp_min_us": native[i]["min_us"], "cpp_portable_us": portable[i]["median_us"],
                     "python_us": python_time(vocab, top_k, top_p, args.py_draws)})
        print(f"vocab {vocab:,} top_k {top_k} top_p {top_p} done", file=sys.stderr, flush=True)
    print(f"microseconds per sampled token (median; temperature {TEMPERATURE}, logits N(0, 3)); "
          f"C++ vector loops: {vectors}")
    print(f"{'vocab':>8} {'top_k':>6} {'top_p':>6} {'C++':>9} {'C++ portable':>13} {'Python':>9}")
    for r in rows:
        print(f"{r['vocab']:>8,} {r['top_k']:>6} {r['top_p']:>6} {r['cpp_us']:>9.1f} {r['cpp_portable_us']:>13.1f} "
              f"{r['python_us']:>9.1f}")
    print("(1% of the 7B shape's ~20 ms per token: 200 us)")
    out = ROOT / "bench" / "results" / "sampling_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "sampling_speed", "temperature": TEMPERATURE, "logits": "N(0, 3) float32",
                               "draws": args.draws, "py_draws": args.py_draws, "cpp_vectors": vectors,
                               "machine": platform.machine(), "cpus": os.cpu_count(),
                               "load_average": os.getloadavg(), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
