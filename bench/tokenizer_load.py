#!/usr/bin/env python
"""Load time of the C++ tokenizer.json reader for vocabularies of 32k to 150k entries.

For each size, a tokenizer.json is made from the demo tokenizer by adding
tokens "t0", "t1", ... (one JSON object of N keys under ``model.vocab``).
The release build of clib's parser harness (``make -C clib fuzz-harness``,
clib/src/fuzz/parser_fuzz_harness.cc) is timed on it in two modes: ``json``
(parse, dump, parse again) and ``tokenizer`` (``Tokenizer::from_json``, then
encode a few texts and decode every id), best of ``--repeat`` runs, minus the
time of the same process on an empty input. Linear time shows as a constant
microseconds-per-entry column. Prints a table and writes
bench/results/tokenizer_load.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HARNESS = ROOT / "clib" / "build" / "parser_fuzz_harness"
SIZES = (32_000, 64_000, 150_000)


def vocab_json(demo: str, n: int) -> bytes:
    data = json.loads(demo)
    vocab = data["model"]["vocab"]
    k = 0
    while len(vocab) < n:
        vocab.setdefault(f"t{k}", len(vocab))
        k += 1
    return json.dumps(data).encode()


def best_time(mode: str, payload: bytes, repeat: int) -> float:
    frame = struct.pack("<I", len(payload)) + payload if payload else b""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = subprocess.run([str(HARNESS), mode], input=frame, capture_output=True)
        best = min(best, time.perf_counter() - t0)
        if res.returncode != 0 or (payload and res.stdout != b"A"):
            raise SystemExit(f"harness {mode} failed on {len(payload)} bytes: {res.stdout!r} {res.stderr[-500:]!r}")
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = ap.parse_args(argv)
    print("building clib and the parser harness (make -C clib fuzz-harness) ...", file=sys.stderr, flush=True)
    subprocess.run(["make", "-C", str(ROOT / "clib"), "fuzz-harness"], check=True, capture_output=True)
    from dlavm.tokenizer import build_demo_tokenizer_json
    demo = build_demo_tokenizer_json(512)
    rows = []
    for n in args.sizes:
        payload = vocab_json(demo, n)
        row = {"entries": n, "bytes": len(payload)}
        for mode in ("json", "tokenizer"):
            start = best_time(mode, b"", args.repeat)
            row[f"{mode}_s"] = best_time(mode, payload, args.repeat) - start
        rows.append(row)
        print(f"{n:,} entries done", file=sys.stderr, flush=True)
    print(f"{'entries':>9} {'MB':>6} {'json s':>8} {'us/entry':>9} {'tokenizer s':>12} {'us/entry':>9}")
    for r in rows:
        per_entry = {m: 1e6 * r[f"{m}_s"] / r["entries"] for m in ("json", "tokenizer")}
        print(f"{r['entries']:>9,} {r['bytes'] / 1e6:>6.2f} {r['json_s']:>8.3f} {per_entry['json']:>9.2f} "
              f"{r['tokenizer_s']:>12.3f} {per_entry['tokenizer']:>9.2f}")
    out = ROOT / "bench" / "results" / "tokenizer_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "tokenizer_load", "repeat": args.repeat, "machine": platform.machine(),
                               "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
