"""The tally both artifact fuzzers keep (bench/fuzz_artifacts.py: the Python path,
bench/fuzz_cpp_artifacts.py: the C++ path): outcomes per mutation class, refusal rules, manifest
field paths reached, resealed edits that ran, failures; the printed table and the JSON result."""
from __future__ import annotations

import argparse
import collections
import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fuzz_arguments(doc: str, name: str, time_limit: float, argv=None) -> argparse.Namespace:
    """The command line both fuzz benches take: ``--cases``, ``--seed``, ``--time-limit`` (seconds per
    case before it counts as a hang) and ``--out`` (default ``bench/results/<name>.json``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=time_limit, help="seconds per case before it counts as a hang")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / f"{name}.json"))
    args = ap.parse_args(argv)
    if args.cases < 1 or args.time_limit <= 0:
        ap.error("--cases must be >= 1 and --time-limit > 0")
    return args


class FuzzTally:
    """Counts cases as they finish; ``is_failure(case)`` and ``message_rule(message)`` come from the
    fuzzer (each path decides what a failure is); ``classes`` orders the table's rows."""

    def __init__(self, classes, is_failure, message_rule, total: int, t0: float):
        self.classes, self.is_failure, self.message_rule = classes, is_failure, message_rule
        self.total, self.t0 = total, t0
        self.table = collections.Counter()
        self.rules = collections.Counter()
        self.fields: set = set()
        self.sealed_ran = collections.Counter()
        self.failures: list = []
        self.done = 0
        self._last = time.perf_counter()
        self._start = time.perf_counter()

    def add(self, cls: str, case) -> None:
        """Record one finished case; prints a progress line at most once a second and at the end."""
        self.done += 1
        self.table[cls, case.outcome] += 1
        if case.outcome == "refused":
            self.rules[self.message_rule(case.message)] += 1
        if cls.startswith("field"):
            self.fields.add(case.detail.split(" ")[0])
        if cls == "field-sealed" and case.outcome in ("different", "device-refused"):
            self.sealed_ran[f"{case.detail.split(' ')[0]}: {case.outcome}"] += 1
        if self.is_failure(case):
            self.failures.append(case)
        now = time.perf_counter()
        if now - self._last >= 1.0 or self.done == self.total:
            self._last = now
            print(f"[{now - self.t0:6.1f}s] {self.done}/{self.total} cases, {len(self.failures)} failures",
                  flush=True)

    def report(self, out: Path, seed: int, time_limit: float, **extra) -> int:
        """Print the table, the resealed edits that ran and the failures; write the JSON to ``out``.
        Returns the exit status: 1 if any case failed."""
        elapsed = time.perf_counter() - self._start
        table, classes = self.table, self.classes
        outcomes = sorted({o for _, o in table})
        n = sum(table.values())
        print()
        print(f"{'class':<16}" + "".join(f"{o:>16}" for o in outcomes) + f"{'total':>10}")
        for cls in classes:
            print(f"{cls:<16}" + "".join(f"{table[cls, o]:>16}" for o in outcomes)
                  + f"{sum(table[cls, o] for o in outcomes):>10}")
        print(f"{'all':<16}" + "".join(f"{sum(table[c, o] for c in classes):>16}" for o in outcomes) + f"{n:>10}")
        print(f"\n{n} cases in {elapsed:.1f} s ({1000 * elapsed / max(1, n):.1f} ms each); {len(self.rules)} "
              f"distinct refusal rules; {len(self.fields)} manifest field paths edited")
        if self.sealed_ran:
            print("\nresealed edits that ran differently (a different well-formed artifact; no check can tell):")
            for k, c in self.sealed_ran.most_common():
                print(f"  {c:5d}  {k}")
        print(f"\nfailures: {len(self.failures)}")
        for c in self.failures[:50]:
            base = getattr(c, "base", None)
            print(f"  {base + ' ' if base else ''}{c.cls} {c.detail}: {c.outcome}: {c.message}")
        result = {
            "cases": n, "seed": seed, "time_limit_s": time_limit, "seconds": round(elapsed, 1),
            "python": platform.python_version(), **extra,
            "table": {cls: {o: table[cls, o] for o in outcomes if table[cls, o]} for cls in classes},
            "failures": [c.__dict__ for c in self.failures],
            "refusal_rules": dict(self.rules.most_common()),
            "field_paths_edited": sorted(self.fields),
            "sealed_edits_that_ran_differently": dict(self.sealed_ran),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
        return 1 if self.failures else 0


__all__ = ["FuzzTally", "fuzz_arguments"]
