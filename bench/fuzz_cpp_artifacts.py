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

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from tests.artifact.fuzz_tally import FuzzTally, fuzz_arguments
    args = fuzz_arguments(__doc__, "fuzz_cpp_artifacts", 30.0, argv)
    for tool in ("g++", "strace"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed")
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
            plan = schedule(args.cases, args.seed)
            tally = FuzzTally(CLASSES, is_failure, message_rule, len(plan), t0)
            for cls, seed in plan:
                tally.add(cls, run_case(base, server, cls, seed, work / "cases", args.time_limit))
    finally:
        server.close()
    return tally.report(Path(args.out), args.seed, args.time_limit, sanitizers="address,undefined")


if __name__ == "__main__":
    sys.exit(main())
