#!/usr/bin/env python
"""Fuzz the C++ artifact path (``dlavm::Artifact::open`` + a generated driver) under the sanitizers.

Compiles one artifact with its generated C++ driver (a one-layer Llama block, target ``tiny``), builds the
driver against ``clib/build-asan`` (AddressSanitizer + UndefinedBehaviorSanitizer, ``make -C clib asan``),
then runs ``--cases`` mutations (default 5,000) of the classes in tests/clib/cpp_artifact_fuzz.py (the
Python fuzzer's, applied by its functions), round-robin from ``--seed``: bit flips, truncations and
extensions of every file, manifest field edits of every field path with type-aware values (unsealed and
resealed), path traversal in file fields, symbolic links out of the artifact and special files. Each case
runs the driver on the mutated copy against the simulator server within ``--time-limit`` seconds, under
``strace`` for the classes that can change which files are opened.

Prints progress every second, then a table of outcomes per class, the distinct refusal rules and every
failure (a sanitizer report, a crash, a hang, a read outside the artifact, an unclear message, or a run
that differs from the unmutated one for any class but resealed manifest edits); writes
``bench/results/fuzz_cpp_artifacts.json``. Exit status 1 if any case failed.
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import shutil
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
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz_cpp_artifacts.json"))
    args = ap.parse_args(argv)
    if args.cases < 1 or args.time_limit <= 0:
        ap.error("--cases must be >= 1 and --time-limit > 0")
    for tool in ("g++", "strace"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} is not installed")
    t0 = time.perf_counter()
    print(f"[{0.0:6.1f}s] compiling the base artifact (block on target tiny) and its driver with the "
          f"sanitizers...", flush=True)
    from tests.clib.cpp_artifact_fuzz import (CLASSES, SimServer, is_failure, make_base, message_rule, run_case,
                                              schedule)
    server = SimServer()
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz_cpp_artifacts_") as work:
            work = Path(work)
            base = make_base(work / "base", server)
            print(f"[{time.perf_counter() - t0:6.1f}s] base ready: {len(list(base.directory.rglob('*')))} paths, "
                  f"unmutated run: {base.cycles}", flush=True)
            table, rules, fields = collections.Counter(), collections.Counter(), set()
            sealed_ran, failures = collections.Counter(), []
            last = t_cases = time.perf_counter()
            plan = schedule(args.cases, args.seed)
            for i, (cls, seed) in enumerate(plan):
                case = run_case(base, server, cls, seed, work / "cases", args.time_limit)
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
    finally:
        server.close()
    outcomes = sorted({o for _, o in table})
    n = sum(table.values())
    print()
    print(f"{'class':<16}" + "".join(f"{o:>16}" for o in outcomes) + f"{'total':>10}")
    for cls in CLASSES:
        print(f"{cls:<16}" + "".join(f"{table[cls, o]:>16}" for o in outcomes)
              + f"{sum(table[cls, o] for o in outcomes):>10}")
    print(f"{'all':<16}" + "".join(f"{sum(table[c, o] for c in CLASSES):>16}" for o in outcomes) + f"{n:>10}")
    print(f"\n{n} cases in {elapsed:.1f} s ({1000 * elapsed / max(1, n):.1f} ms each); {len(rules)} distinct "
          f"refusal rules; {len(fields)} manifest field paths edited")
    if sealed_ran:
        print("\nresealed edits that ran differently (a different well-formed artifact; no check can tell):")
        for k, c in sealed_ran.most_common():
            print(f"  {c:5d}  {k}")
    print(f"\nfailures: {len(failures)}")
    for c in failures[:50]:
        print(f"  {c.cls} {c.detail}: {c.outcome}: {c.message}")
    result = {
        "cases": n, "seed": args.seed, "time_limit_s": args.time_limit, "seconds": round(elapsed, 1),
        "python": platform.python_version(), "sanitizers": "address,undefined",
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
