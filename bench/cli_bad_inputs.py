#!/usr/bin/env python
"""The CLI's bad-input table (tests/cli/bad_inputs.py) run as real processes on a host without torch.

Each row runs ``python -m dlavm.cli.main`` (or ``script/main.py``) in a
subprocess whose ``sitecustomize`` makes ``import torch`` fail, as on a
deployment host. Reports per row the exit code and wall time, and in total:
tracebacks, wrong exit-0s, internal errors, other breaks of the contract
(doc/cli.md), and how many error paths took 1 s or more, in wall time and in
the child's CPU time (which a busy shared machine does not inflate). Rows whose command
needs torch to get as far as its error (importing a torch model) answer
"needs the Python package 'torch'"; they are counted apart, since their
message cannot name the value. Writes bench/results/cli_bad_inputs.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

#: What a row's message says when it needed torch to get to its own error.
NEEDS_TORCH = ("needs the Python package 'torch'", "No module named 'torch'")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default=None, help="folder for the artifacts and inputs (kept; default: a temp dir)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "cli_bad_inputs.json"))
    args = ap.parse_args()

    from tests.cli.bad_inputs import cases, make_artifacts, make_workspace
    from tests.cli.outcome import run_subprocess, write_no_torch_site

    root = Path(args.work or tempfile.mkdtemp(prefix="dlavm-cli-bench-"))
    paths = make_artifacts(root)
    paths["ws"] = make_workspace(root / "ws")
    no_torch = write_no_torch_site(root / "no_torch")
    rows = []
    for case in cases():
        t0, cpu0 = time.perf_counter(), _children_cpu()
        out = run_subprocess(case, paths, no_torch)
        secs, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        needs_torch = any(text in out.message for text in NEEDS_TORCH)
        problems = [p for p in out.problems(case) if not (needs_torch and p.startswith("message does not name"))]
        rows.append({"case": case.id, "exit": out.exit_code, "seconds": round(secs, 3), "cpu_seconds": round(cpu, 3),
                     "needs_torch": needs_torch,
                     "problems": problems, "message": out.message.replace(str(root), "WORK")})
        print(f"{secs:6.2f}s wall {cpu:5.2f}s cpu  exit {out.exit_code:>3}  {','.join(problems) or 'ok':<24} {case.id}", flush=True)
    times = [r["seconds"] for r in rows if not r["needs_torch"]]
    cpu_times = [r["cpu_seconds"] for r in rows if not r["needs_torch"]]
    summary = {
        "cases": len(rows),
        "tracebacks": sum("traceback" in r["problems"] for r in rows),
        "wrong_exit_0": sum("exit 0" in r["problems"] for r in rows),
        "internal_errors": sum("internal error" in r["problems"] for r in rows),
        "contract_breaks": sum(bool(r["problems"]) for r in rows),
        "need_torch_to_reach_their_error": sum(r["needs_torch"] for r in rows),
        "torch_free_error_paths": len(times),
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "at_or_over_1s": sum(t >= 1.0 for t in times),
        # CPU time of the child (user + system) does not grow with the load of a shared machine
        "median_cpu_s": round(statistics.median(cpu_times), 3),
        "max_cpu_s": round(max(cpu_times), 3),
        "cpu_at_or_over_1s": sum(t >= 1.0 for t in cpu_times),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 1 if summary["contract_breaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
