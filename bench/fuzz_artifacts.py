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

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from tests.artifact.fuzz_tally import FuzzTally, fuzz_arguments
    args = fuzz_arguments(__doc__, "fuzz_artifacts", 20.0, argv)
    t0 = time.perf_counter()
    print(f"[{0.0:6.1f}s] compiling the base artifacts (block, tiny-llama on target tiny)...", flush=True)
    from tests.artifact.artifact_fuzz import (CLASSES, is_failure, make_bases, message_rule, run_case,
                                              schedule)
    with tempfile.TemporaryDirectory(prefix="fuzz_artifacts_") as work:
        work = Path(work)
        bases = make_bases(work / "bases")
        print(f"[{time.perf_counter() - t0:6.1f}s] bases ready: "
              + ", ".join(f"{b.name} ({len(list(b.directory.rglob('*')))} paths)" for b in bases), flush=True)
        plan = schedule(args.cases, args.seed)
        tally = FuzzTally(CLASSES, is_failure, message_rule, len(plan), t0)
        for i, (cls, seed) in enumerate(plan):
            tally.add(cls, run_case(bases[i % len(bases)], cls, seed, work / "cases", args.time_limit))
    return tally.report(Path(args.out), args.seed, args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
