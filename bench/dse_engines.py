#!/usr/bin/env python
"""Design-space sweeps on each engine (doc/dse.md; all figures of one run).

The sweep: ``llama2-7b-shape`` (shape only, timing-only simulation) on ``vcu128`` over HBM channels
(16, 24, 32, 48) x HBM bytes per channel (256 MiB, 512 MiB) x weight format (int4, int8, fp16) x
context (512, 2048): 48 points, each a compile plus a decode step at the full context after a
simulated prefill of the rest (the points whose weights do not fit are refused: results too).

1. **Engines**: the sweep on a local pool of 1 worker, a local pool of ``--workers`` (default: every
   usable core) and a private local Ray cluster of as many CPUs. Per engine: wall time, points per
   minute, the time until the first worker was ready (process or actor start plus the model's import),
   and the per-point overhead: ``(wall x workers - sum of the points' compile + simulate time) / points``
   (everything a worker-second spent outside the points: start, import, dispatch, idle tail).
2. **Identical results**: every record's params, status, reason and metrics equal across the engines.
3. **Resume**: ``dlavm dse`` run as a command, SIGKILLed (driver and workers) once half the points are
   stored, then run again: it computes only the rest, and the results equal the uninterrupted ones.
4. **Report**: ``dlavm dse report`` on the result (Pareto fronts, ``pareto.png``, ``params.png``).

Prints a table and writes bench/results/dse_engines.json; the results folder is build/dse_bench/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARY = ["hbm_channels=16,24,32,48", "hbm_channel_bytes=268435456,536870912", "weights=int4,int8,fp16"]
CTX = [512, 2048]
MODEL, TARGET = "llama2-7b-shape", "vcu128"


def shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it: what the results and their JSON name."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def comparable(rows):
    return {r["point_id"]: (r["index"], r["params"], r["status"], r["reason"], r["metrics"]) for r in rows}


def rows_of(folder):
    from dlavm.dse import ResultStore
    with ResultStore.read(folder) as s:
        return s.rows()


def run_engine(label, engine, spec, out):
    from dlavm.dse import run_sweep
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    first_ready = []

    def on_event(kind, detail):
        if kind == "worker" and not first_ready:
            first_ready.append(time.perf_counter() - t0)

    def on_record(r, done, total, eta):
        print(f"\r  {label}: {done}/{total} points, ETA {eta:5.0f} s   ", end="", file=sys.stderr, flush=True)

    print(f"  {label}: starting ({engine.describe()})", file=sys.stderr, flush=True)
    outcome = run_sweep(spec, out, engine, on_record=on_record, on_event=on_event)
    wall = time.perf_counter() - t0
    print(file=sys.stderr)
    rows = rows_of(out)
    compute = sum(r["compile_s"] + r["sim_s"] for r in rows)
    workers = engine.workers or 1
    n = len(rows)
    return rows, {
        "engine": label, "workers": workers, "points": n, "wall_s": round(wall, 2),
        "points_per_min": round(n / wall * 60, 2), "first_worker_ready_s": round(first_ready[0], 2),
        "compute_s": round(compute, 2), "mean_point_s": round(compute / n, 3),
        "overhead_per_point_s": round((wall * workers - compute) / n, 3),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in ("ok", "refused", "failed")},
        "computed": outcome.computed,
    }


def count_points(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT count(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_and_resume(out: Path, workers: int, total: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dlavm.cli.main", "dse", MODEL, "-t", TARGET, "--ctx", ",".join(map(str, CTX)),
           "-o", shown(out), "--workers", str(workers)]
    for v in VARY:
        cmd += ["--vary", v]
    print("  resume: running 'dlavm dse' until half the points are stored, then SIGKILL", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while count_points(out / "dse.sqlite") < total // 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = count_points(out / "dse.sqlite")
    print(f"  resume: killed with {stored}/{total} stored; running the same command again", file=sys.stderr,
          flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"resumed sweep failed: {res.stderr.strip().splitlines()[-1]}")
    return {"stored_at_kill": stored, "resumed_wall_s": round(time.perf_counter() - t0, 2),
            "resumed_summary": res.stdout.strip().splitlines()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=None, help="workers of the parallel runs [every usable core]")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = ap.parse_args(argv)
    from dlavm.cache import cache_dir
    from dlavm.dse import LocalEngine, RayEngine, build_spec
    from dlavm.dse.engines import usable_cores
    workers = args.workers or usable_cores()
    spec = build_spec(MODEL, TARGET, VARY, None, CTX, None, None, None, None)
    root = cache_dir("dse_bench")
    print(f"dse_engines: {spec.describe()}", file=sys.stderr, flush=True)
    runs, results = [], {}
    for label, engine in [("local x1", LocalEngine(1)), (f"local x{workers}", LocalEngine(workers))] + (
            [] if args.no_ray else [(f"ray x{workers}", RayEngine("local", workers))]):
        rows, figures = run_engine(label, engine, spec, root / label.replace(" ", "_"))
        runs.append(figures)
        results[label] = comparable(rows)
    labels = list(results)
    identical = all(results[k] == results[labels[0]] for k in labels)
    resume = kill_and_resume(root / "resumed", workers, len(spec.points()))
    resume["identical_to_uninterrupted"] = comparable(rows_of(root / "resumed")) == results[labels[0]]
    report = subprocess.run([sys.executable, "-m", "dlavm.cli.main", "dse", "report", shown(root / "resumed")],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    base = runs[0]
    for r in runs:
        r["speedup_vs_local_x1"] = round(base["wall_s"] / r["wall_s"], 2)

    print(f"\n{spec.describe()}")
    print(f"{'engine':<10} {'wall s':>8} {'points/min':>11} {'1st ready s':>12} {'mean point s':>13} "
          f"{'overhead/pt s':>14} {'speedup':>8}  ok/refused/failed")
    for r in runs:
        st = r["statuses"]
        print(f"{r['engine']:<10} {r['wall_s']:>8.1f} {r['points_per_min']:>11.1f} {r['first_worker_ready_s']:>12.1f} "
              f"{r['mean_point_s']:>13.2f} {r['overhead_per_point_s']:>14.2f} {r['speedup_vs_local_x1']:>7.2f}x"
              f"  {st['ok']}/{st['refused']}/{st['failed']}")
    print(f"identical results across engines: {identical}")
    print(f"resume: killed with {resume['stored_at_kill']} of {len(spec.points())} stored; "
          f"{resume['resumed_summary']}; identical: {resume['identical_to_uninterrupted']}")
    print(report)
    out = {"bench": "dse_engines", "spec": spec.to_json(), "machine": {"cores": usable_cores(),
                                                                       "python": platform.python_version()},
           "runs": runs, "identical_across_engines": identical, "resume": resume, "report": report}
    path = ROOT / "bench" / "results" / "dse_engines.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written: {shown(path)} (results and plots in {shown(root / 'resumed')})")
    return 0 if identical and resume["identical_to_uninterrupted"] else 1


if __name__ == "__main__":
    sys.exit(main())
