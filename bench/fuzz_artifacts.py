#!/usr/bin/env python
"""Fuzz the Python artifact loader and runtime with mutated real artifacts.

Compiles two artifacts once (a one-layer Llama block and the tiny generating
LLM, target ``tiny``), then runs ``--cases`` mutations (default 5,000) of the
classes in tests/artifact/artifact_fuzz.py, round-robin from ``--seed``: bit
flips, truncations and extensions of every file (the manifest and its
``manifest.sha256`` included), manifest field edits of every field path with
type-aware values (negative, huge, wrong type, NaN/Infinity, deep nesting),
unsealed and resealed, path traversal in file fields, symbolic links out of
the artifact, special files (FIFO, directory) and a file changed between
loading and running. Each case loads the copy and runs one entry on the
simulator under ``--time-limit`` seconds and an audit hook on ``open``.

Prints progress every second, then a table of outcomes per class, the
distinct refusal rules, the manifest field paths reached and every failure;
writes ``bench/results/fuzz_artifacts.json``. Exit status 1 if any case
failed (tests/artifact/artifact_fuzz.py: ``is_failure``).
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz_artifacts.json"))
    args = ap.parse_args(argv)
    if args.cases < 1 or args.time_limit <= 0:
        ap.error("--cases must be >= 1 and --time-limit > 0")
    t0 = time.perf_counter()
    print(f"[{0.0:6.1f}s] compiling the base artifacts (block, tiny-llama on target tiny)...", flush=True)
    from tests.artifact.artifact_fuzz import (CLASSES, is_failure, make_bases, message_rule, run_case,
                                              schedule)
    with tempfile.TemporaryDirectory(prefix="fuzz_artifacts_") as work:
        work = Path(work)
        bases = make_bases(work / "bases")
        print(f"[{time.perf_counter() - t0:6.1f}s] bases ready: "
              + ", ".join(f"{b.name} ({len(list(b.directory.rglob('*')))} paths)" for b in bases), flush=True)
        table = collections.Counter()
        rules = collections.Counter()
        fields, sealed_ran, failures = set(), collections.Counter(), []
        last = time.perf_counter()
        t_cases = time.perf_counter()
        plan = schedule(args.cases, args.seed)
        for i, (cls, seed) in enumerate(plan):
            case = run_case(bases[i % len(bases)], cls, seed, work / "cases", args.time_limit)
            table[cls, case.outcome] += 1
            if case.outcome == "refused":
                rules[message_rule(case.message)] += 1
            if cls.startswith("field"):
                fields.add(case.detail.split(" ")[0])
            if cls == "field-sealed" and case.outcome in ("different", "device-refused"):
                sealed_ran[f"{case.detail.split(' ')[0]}: {case.outcome}"] += 1
            if is_failure(case):
                failures.append(case)
            now = time.perf_counter()
            if now - last >= 1.0 or i + 1 == len(plan):
                last = now
                print(f"[{now - t0:6.1f}s] {i + 1}/{len(plan)} cases, {len(failures)} failures", flush=True)
        elapsed = time.perf_counter() - t_cases
    outcomes = sorted({o for _, o in table})
    print()
    print(f"{'class':<16}" + "".join(f"{o:>16}" for o in outcomes) + f"{'total':>10}")
    for cls in CLASSES:
        print(f"{cls:<16}" + "".join(f"{table[cls, o]:>16}" for o in outcomes)
              + f"{sum(table[cls, o] for o in outcomes):>10}")
    print(f"{'all':<16}" + "".join(f"{sum(table[c, o] for c in CLASSES):>16}" for o in outcomes)
          + f"{sum(table.values()):>10}")
    print(f"\n{sum(table.values())} cases in {elapsed:.1f} s ({1000 * elapsed / max(1, sum(table.values())):.1f} "
          f"ms each); {len(rules)} distinct refusal rules; {len(fields)} manifest field paths edited")
    if sealed_ran:
        print("\nresealed edits that ran differently (a different well-formed artifact; no check can tell):")
        for k, n in sealed_ran.most_common():
            print(f"  {n:5d}  {k}")
    print(f"\nfailures: {len(failures)}")
    for c in failures[:50]:
        print(f"  {c.base} {c.cls} {c.detail}: {c.outcome}: {c.message}")
    result = {
        "cases": sum(table.values()), "seed": args.seed, "time_limit_s": args.time_limit,
        "seconds": round(elapsed, 1), "python": platform.python_version(),
        "table": {cls: {o: table[cls, o] for o in outcomes if table[cls, o]} for cls in CLASSES},
        "failures": [c.__dict__ for c in failures],
        "refusal_rules": dict(rules.most_common()),
        "field_paths_edited": sorted(fields),
        "sealed_edits_that_ran_differently": dict(sealed_ran),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
