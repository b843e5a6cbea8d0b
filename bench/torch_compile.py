#!/usr/bin/env python
"""``torch.compile(model, backend="dlavm")`` on the tiny models of tests/dynamo/test_models.py
(Hugging Face Llama, GPT-2 and BERT, a CNN, a model with a graph break), target ``tiny``, fp16 weights.
Llama runs three ways: static shapes (``torch.compile``'s first compilation), ``dynamic=True``, and
``dynamic=True`` with ``torch._dynamo.config.specialize_float`` (without it dynamo passes the modules'
float attributes, the RMS norm eps and the attention scale, as float64 graph inputs: their casts run in
eager and the norms on the host).

1. **First call, cold cache**: a fresh process with an empty program cache calls each compiled model
   once: dynamo's capture, AOTAutograd, partitioning, ``dlavm.compile`` of every device subgraph and
   the first run on the simulator. Of it, *(backend)* is the backend's share (partitioning, import and
   getting the programs, ``STATS.partition_seconds``) and *(compile)* the programs' share
   (``STATS.program_seconds``: ``dlavm.compile``, or loading the artifact from the cache).
2. **First call, warm cache**: a second fresh process with the same cache folder does the same; the
   programs come from the cache (it must compile nothing).
3. **Steady state** (in the second process, after the first call): the median wall time of a call,
   compiled and in torch eager (``torch.no_grad()``), over ``--reps`` calls, split with the backend's
   counters (``dlavm.dynamo.STATS``):

   * *in runtime*: time inside the runtime's ``run`` of every device subgraph
     (``STATS.device_seconds``): the simulator executing the instruction streams, the host<->device
     copies through its memory interface, the stream patching for the call's sizes, and the
     program's host-fallback steps;
   * *host kernels*: of that, the program's host-fallback steps (numpy kernels, the runtime's
     ``host_log``; ``STATS.host_kernel_seconds``);
   * **host per call** = compiled - (in runtime - host kernels): the call's host wall time without
     the simulator's time, i.e. dynamo's guards, the AOTAutograd wrapper, the partitioned graph's
     eager nodes, the torch<->numpy conversions and the host-fallback kernels;
   * *glue* = compiled - in runtime: the same without the host kernels (the backend's own overhead).

Each phase runs in its own process (``--phase``), so process start and imports are not counted and
no compiled frame is shared; a throwaway model compiled first takes the process's one-time costs.
torch runs on one thread. The figures are wall times: on a busy machine rerun and compare.
Prints a table and writes bench/results/torch_compile.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["llama", "llama_dynamic", "llama_dynamic_sf", "gpt2", "bert", "cnn", "graph_break"]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(name: str):
    """(model, example inputs) of ``name``: the builders of the model tests."""
    import torch
    from tests.dynamo import test_models as tm
    if name in ("llama", "llama_dynamic", "llama_dynamic_sf"):
        return tm.tiny_llama(), (tm._ids(16),)
    if name == "gpt2":
        return tm.tiny_gpt2(), (tm._ids(16),)
    if name == "bert":
        return tm.tiny_bert(), (tm._ids(16),)
    if name == "cnn":
        return tm.tiny_cnn(), (torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)),)
    if name == "graph_break":
        torch.manual_seed(0)
        return tm.Gated().eval(), (torch.randn(4, 16, generator=torch.Generator().manual_seed(0)),)
    raise SystemExit(f"unknown model {name!r} (one of {', '.join(MODELS)})")


def median_call(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def phase(kind: str, cache: str, models: list, reps: int) -> list:
    """One process's figures per model: the first call, and (``kind == "warm"``) the steady state."""
    import torch
    import dlavm.dynamo
    from dlavm.dynamo import backend
    torch.set_num_threads(1)   # eager on one thread: steadier figures on a shared machine
    stats = dlavm.dynamo.STATS
    # one-time costs of the process (dynamo's and the compiler's lazy imports) on a throwaway model
    # with no cache, so that the first model's first call is not charged with them
    say(f"  {kind}: warming up the process")
    with torch.no_grad():
        torch.compile(torch.nn.Linear(16, 8).eval(), backend="dlavm",
                      options={"target": "tiny", "cache_dir": False})(torch.ones(2, 16))
    rows = []
    for name in models:
        say(f"  {kind}: {name}: building")
        model, inputs = build(name)
        torch._dynamo.reset()
        dlavm.dynamo.reset_stats()
        dynamic = True if "_dynamic" in name else None
        # _sf: dynamo keeps the module's float attributes (eps, scales) as constants instead of graph inputs
        config = torch._dynamo.config.patch(specialize_float=name.endswith("_sf"))
        config.__enter__()
        compiled = torch.compile(model, backend="dlavm", dynamic=dynamic,
                                 options={"target": "tiny", "cache_dir": cache})
        reports: list = []
        backend._collectors.append(reports)   # the partition reports dlavm.explain prints
        with torch.no_grad():
            t0 = time.perf_counter()
            out = compiled(*inputs)
            first = time.perf_counter() - t0
            want = model(*inputs)
        backend._collectors.remove(reports)
        placed = [w for g in reports for sub in g.subgraphs for _op, w in sub.placement]
        row = {"model": name, "first_call_s": round(first, 3), "program_s": round(stats.program_seconds, 3),
               "partition_s": round(stats.partition_seconds, 3),
               "compiles": stats.compiles,
               "cache_hits": stats.cache_hits, "graphs": stats.graphs, "device_calls": stats.device_calls,
               "fallback_ops": dict(stats.fallback_ops), "device_ops": placed.count("device"),
               "host_ops": placed.count("host"),
               "max_abs_err": float((out.float() - want.float()).abs().max())}
        say(f"  {kind}: {name}: first call {first:.2f} s ({stats.compiles} compiled, {stats.cache_hits} from cache)")
        if kind == "warm":
            with torch.no_grad():
                for _ in range(2):
                    compiled(*inputs), model(*inputs)
                eager = median_call(lambda: model(*inputs), reps)
                calls = stats.device_calls
                total, runtime, kernels = [], [], []
                for _ in range(reps):
                    dev0, host0 = stats.device_seconds, stats.host_kernel_seconds
                    t0 = time.perf_counter()
                    compiled(*inputs)
                    total.append(time.perf_counter() - t0)
                    runtime.append(stats.device_seconds - dev0)
                    kernels.append(stats.host_kernel_seconds - host0)
            med = statistics.median
            per_call = med(total)
            row.update({"reps": reps, "eager_ms": eager * 1e3, "compiled_ms": per_call * 1e3,
                        "in_runtime_ms": med(runtime) * 1e3, "host_kernels_ms": med(kernels) * 1e3,
                        "host_per_call_ms": med(t - r + k for t, r, k in zip(total, runtime, kernels)) * 1e3,
                        "glue_ms": med(t - r for t, r in zip(total, runtime)) * 1e3,
                        "device_calls_per_call": (stats.device_calls - calls) / reps})
            say(f"  {kind}: {name}: {per_call * 1e3:.1f} ms a call compiled, {eager * 1e3:.2f} ms eager")
        config.__exit__(None, None, None)
        rows.append(row)
    return rows


def run_phase(kind: str, cache: str, models: list, reps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", kind, "--cache", cache, "--reps", str(reps),
           "--models", ",".join(models)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)   # stderr: the child's progress
    if res.returncode != 0:
        raise SystemExit(f"the {kind} phase failed (exit status {res.returncode})")
    say(f"  {kind}: process done in {time.perf_counter() - t0:.1f} s")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="calls per steady-state measurement [20]")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--phase", choices=["cold", "warm"], help=argparse.SUPPRESS)   # a child process
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"--models: {unknown[0]!r} is not one of {', '.join(MODELS)}")
    if args.phase:
        rows = phase(args.phase, args.cache, models, args.reps)
        from dlavm.cache import source_fingerprint   # a cache entry's key holds it: equal in both runs?
        print(json.dumps({"source_fingerprint": source_fingerprint(), "rows": rows}))
        return 0

    say(f"torch_compile: {len(models)} models, target tiny; cold then warm program cache, {args.reps} steady calls")
    cache = tempfile.mkdtemp(prefix="dlavm-torch-compile-bench-")
    try:
        cold_run = run_phase("cold", cache, models, args.reps)
        warm_run = run_phase("warm", cache, models, args.reps)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    cold, warm = cold_run["rows"], warm_run["rows"]
    same_sources = cold_run["source_fingerprint"] == warm_run["source_fingerprint"]

    print(f"\ntorch.compile(backend='dlavm'), target tiny, fp16 weights; steady state: median of {args.reps} calls")
    print(f"{'model':<17} {'cold 1st s':>10} {'(backend)':>9} {'(compile)':>9} {'comp':>5} {'warm 1st s':>10} "
          f"{'(backend)':>9} {'(load)':>7} {'hits':>5} {'dev/host ops':>12} {'eager':>5} {'eager ms':>9} "
          f"{'compiled ms':>12} {'runtime ms':>11} {'host-kern ms':>13} {'host/call ms':>13} {'glue ms':>8} "
          f"{'max|err|':>9}")
    ok = True
    for c, w in zip(cold, warm):
        ok &= w["compiles"] == 0 and w["cache_hits"] > 0
        placed = f"{c['device_ops']}/{c['host_ops']}"
        print(f"{c['model']:<17} {c['first_call_s']:>10.2f} {c['partition_s']:>9.2f} {c['program_s']:>9.2f} "
              f"{c['compiles']:>5} {w['first_call_s']:>10.2f} {w['partition_s']:>9.2f} {w['program_s']:>7.2f} "
              f"{w['cache_hits']:>5} {placed:>12} {sum(c['fallback_ops'].values()):>5} {w['eager_ms']:>9.2f} "
              f"{w['compiled_ms']:>12.2f} {w['in_runtime_ms']:>11.2f} {w['host_kernels_ms']:>13.2f} "
              f"{w['host_per_call_ms']:>13.2f} {w['glue_ms']:>8.2f} {w['max_abs_err']:>9.1e}")
    print("1st: the first call; (backend): of it, the backend's partitioning, import and programs; (compile)/(load): "
          "of that, getting the programs (dlavm.compile, or loading the cached artifact); the rest of the first "
          "call is dynamo's capture, AOTAutograd's trace and the run")
    print("dev/host ops: ops of the compiled programs on the device / on the host (compile report); eager: "
          "graph nodes left to torch eager (fallbacks, by op in the JSON)")
    print("steady state: each figure a median over the calls; host/call = compiled - (runtime - host kernels): the call's "
          "host wall time without the simulator's; glue = compiled - runtime")
    print(f"warm runs compiled nothing: {ok}")
    if not same_sources:
        print("the compiler's sources changed between the two runs (another key for every entry): "
              "the warm figures are of a recompilation; run again")
    out = {"bench": "torch_compile", "target": "tiny", "weights": "fp16", "reps": args.reps,
           "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                       "torch": __import__("torch").__version__},
           "cold": cold, "warm": warm, "warm_compiled_nothing": ok, "same_sources": same_sources}
    path = ROOT / "bench" / "results" / "torch_compile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
