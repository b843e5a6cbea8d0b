#!/usr/bin/env python
"""DevProc's four pipelines (examples/devproc/pipelines.py, doc/devproc.md) on the simulator.

1. **JIT**: per pipeline, in one process with an empty cache folder:
   * *first call*: trace, compile every model, save to the cache, load, run;
   * *cached call*: the median of ``--reps`` calls of the same pipeline afterwards (traced again, its key
     computed, the loaded pipeline found in memory, run);
   * *disk hit*: the first call of a fresh process on the same cache folder (trace, key, verified load
     from the cache, run), measured in a subprocess without its interpreter start and imports.
   **speedup** = first / cached.
2. **Hit rate over a mixed sequence**: ``--mixed`` calls drawn (seeded) from the four pipelines with varied
   inputs and two weight formats, in a fresh process on the cache of phase 1: how many ran from memory, from
   the disk cache, or compiled.
3. **Where time goes**: per pipeline, one call on the saved pipeline's runtime: host seconds of its host ops
   (tokenizer, image ops, pooling, argmax...) against the device time the simulator measures (cycles at the
   target's clock), and the simulator's own wall time.
4. **MiniLM embeddings** with fp16, int8 and int4 weights: cosine to sentence-transformers in fp32 over the
   sentences of examples/devproc/minilm.py (min and mean).

Wall times on a shared 2-core machine: rerun and compare. Prints tables, writes bench/results/devproc.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pipelines(images: list):
    """name -> (kernel, constants, list of input tuples, target)."""
    from examples.devproc import minilm
    from examples.devproc import pipelines as P
    tok, enc = P.minilm_constants()
    ttok, llm = P.textgen_constants()
    (cnn,) = P.classifier_constants()
    vtok, tower, vllm, table = P.vlm_constants()
    return {
        "embeddings": (P.sentence_embedding, (tok, enc), [(s,) for s in minilm.SENTENCES[:6]], minilm.TARGET),
        "text": (P.text_generation, (ttok, llm, 16), [("Once upon a time",), ("hello world",), ("The compiler",)],
                 "tiny"),
        "multimodal": (P.describe_image, (vtok, tower, vllm, table, 8),
                       [(str(p), q) for p, q in zip(images[:3], ("Once upon a time", "A picture of", "hello"))],
                       "tiny"),
        "classifier": (P.classify, (cnn,), [(str(p),) for p in images[:6]], "tiny"),
    }


def _call(kernel, inputs, consts):
    return kernel(*inputs, *consts)


def phase_jit(cache: str, reps: int, images: list) -> dict:
    import devproc
    out = {}
    for name, (kernel, consts, inputs, target) in pipelines(images).items():
        devproc.set_options(cache_dir=cache, target=target, weights="fp16")
        say(f"[jit] {name}: first call (compiles)")
        t0 = time.perf_counter()
        _call(kernel, inputs[0], consts)
        first = time.perf_counter() - t0
        times = []
        for k in range(reps):
            t0 = time.perf_counter()
            _call(kernel, inputs[k % len(inputs)], consts)
            times.append(time.perf_counter() - t0)
        # the JIT's own work in a cached call (trace + key + lookup) and the run it leads to
        from devproc.build import jit
        from devproc.lang import trace
        over, runs = [], []
        for k in range(reps):
            args = (*inputs[k % len(inputs)], *consts)
            t0 = time.perf_counter()
            g, b, values = trace(kernel, args)
            key, _ = jit.pipeline_key(g, b, dict(jit._OPTIONS))
            rt = jit._loaded[(key, None, cache)]
            t1 = time.perf_counter()
            rt.run(*values)
            over.append(t1 - t0)
            runs.append(time.perf_counter() - t1)
        cached, run, jit_s = statistics.median(times), statistics.median(runs), statistics.median(over)
        out[name] = {"first_s": first, "cached_s": cached, "speedup": first / cached, "run_s": run,
                     "cached_jit_s": jit_s, "first_jit_s": first - run, "jit_speedup": (first - run) / jit_s}
        say(f"[jit] {name}: first {first:.2f} s, cached {cached:.3f} s (of which JIT {jit_s * 1e3:.2f} ms)")
    return out


def phase_disk(cache: str, images: list) -> dict:
    import devproc
    out = {}
    for name, (kernel, consts, inputs, target) in pipelines(images).items():
        devproc.set_options(cache_dir=cache, target=target, weights="fp16")
        t0 = time.perf_counter()
        _call(kernel, inputs[0], consts)
        out[name] = {"disk_hit_s": time.perf_counter() - t0}
        assert devproc.jit_stats()["hit"] >= 1, f"{name}: not loaded from the disk cache"
    return out


def phase_mixed(cache: str, n: int, images: list) -> dict:
    import devproc
    rng = random.Random(0)
    table = pipelines(images)
    devproc.jit_stats(reset=True)
    t0 = time.perf_counter()
    for k in range(n):
        name = rng.choice(sorted(table))
        kernel, consts, inputs, target = table[name]
        weights = rng.choice(["fp16", "fp16", "fp16", "int8"])
        devproc.set_options(cache_dir=cache, target=target, weights=weights)
        _call(kernel, rng.choice(inputs), consts)
        if (k + 1) % 10 == 0:
            say(f"[mixed] {k + 1}/{n} calls")
    stats = devproc.jit_stats()
    stats["seconds"] = time.perf_counter() - t0
    stats["hit_rate"] = (stats["memory"] + stats["hit"]) / stats["calls"]
    return stats


def phase_where(images: list) -> dict:
    import devproc
    from dlavm.target import get_target
    out = {}
    for name, (kernel, consts, inputs, target) in pipelines(images).items():
        say(f"[where] {name}")
        sig = [devproc.input(f"in{k}", devproc.String) for k in range(len(inputs[0]))]
        lib = devproc.compile(kernel, (*sig, *consts), target=target, weights="fp16")
        rt = devproc.runtime.Runtime(devproc.load(lib.save(tempfile.mkdtemp(prefix="devproc-bench-"))))
        rt.run(*inputs[0])          # warm
        t0 = time.perf_counter()
        rt.run(*inputs[0])
        wall = time.perf_counter() - t0
        clock = get_target(target).clock_mhz * 1e6
        cycles = sum(rt.timings["device_cycles"].values())
        out[name] = {"wall_s": wall, "host_ops_s": sum(rt.timings["host_s"].values()),
                     "host_by_op_s": rt.timings["host_s"], "device_s_simulated": cycles / clock,
                     "device_cycles": rt.timings["device_cycles"], "simulator_wall_s": sum(rt.timings["device_s"].values()),
                     "target": target}
    return out


def phase_minilm() -> dict:
    import numpy as np

    import devproc
    from examples.devproc import minilm
    from examples.devproc import pipelines as P
    tok, enc = P.minilm_constants()
    want = minilm.reference_embeddings(minilm.SENTENCES)
    out = {}
    for weights in ("fp16", "int8", "int4"):
        say(f"[minilm] {weights}")
        lib = devproc.compile(P.sentence_embedding, (devproc.input("text", devproc.String), tok, enc),
                              target=minilm.TARGET, weights=weights)
        rt = devproc.runtime.Runtime(devproc.load(lib.save(tempfile.mkdtemp(prefix="devproc-bench-"))))
        got = np.concatenate([rt.run(s) for s in minilm.SENTENCES])
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        out[weights] = {"min": float(cos.min()), "mean": float(cos.mean()), "sentences": len(cos)}
    return out


def _images() -> list:
    from examples.devproc import classifier
    d = tempfile.mkdtemp(prefix="devproc-images-")
    return [str(p) for p, _ in classifier.write_images(d, 6)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mixed", type=int, default=40)
    ap.add_argument("--phase", choices=["disk", "mixed"], help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--images", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    if args.phase:
        images = json.loads(args.images)
        res = phase_disk(args.cache, images) if args.phase == "disk" else phase_mixed(args.cache, args.mixed, images)
        print(json.dumps(res))
        return 0
    images = _images()
    cache = tempfile.mkdtemp(prefix="devproc-cache-")
    jit = phase_jit(cache, args.reps, images)

    def sub(phase):
        say(f"[{phase}] in a fresh process")
        res = subprocess.run([sys.executable, __file__, "--phase", phase, "--cache", cache, "--images",
                              json.dumps(images), "--mixed", str(args.mixed)], capture_output=True, text=True,
                             cwd=ROOT)
        if res.returncode != 0:
            raise SystemExit(res.stderr[-2000:])
        return json.loads(res.stdout.strip().splitlines()[-1])
    disk = sub("disk")
    mixed = sub("mixed")
    where = phase_where(images)
    cos = phase_minilm()

    print("\nJIT: first call vs cached call (one process, wall seconds); 'run' is the saved pipeline's run alone, the"
          "\nJIT's own work is the call without it (first: trace, compile, save, load; cached: trace, key, lookup)")
    print(f"{'pipeline':<12} {'first':>8} {'cached':>8} {'speedup':>8} {'run':>7} {'JIT first':>10} {'JIT cached':>11} "
          f"{'JIT speedup':>12} {'disk hit':>9}")
    for name, r in jit.items():
        print(f"{name:<12} {r['first_s']:8.2f} {r['cached_s']:8.3f} {r['speedup']:7.0f}x {r['run_s']:7.3f} "
              f"{r['first_jit_s']:10.2f} {r['cached_jit_s'] * 1e3:9.2f}ms {r['jit_speedup']:11.0f}x "
              f"{disk[name]['disk_hit_s']:9.3f}")
    print(f"\nmixed sequence: {mixed['calls']} calls, {mixed['memory']} from memory, {mixed['hit']} from the disk "
          f"cache, {mixed['miss']} compiled: hit rate {mixed['hit_rate']:.1%}")
    print("\nwhere time goes (one call, after a warm-up)")
    print(f"{'pipeline':<12} {'target':<7} {'host ops s':>10} {'device s (sim.)':>15} {'simulator wall s':>16}  top host op")
    for name, r in where.items():
        top = max(r["host_by_op_s"].items(), key=lambda kv: kv[1])
        print(f"{name:<12} {r['target']:<7} {r['host_ops_s']:10.4f} {r['device_s_simulated']:15.6f} "
              f"{r['simulator_wall_s']:16.3f}  {top[0]} {top[1]:.4f}")
    print("\nMiniLM embeddings vs sentence-transformers fp32 (cosine over the sentences)")
    for w, r in cos.items():
        print(f"  {w:<5} min {r['min']:.6f}  mean {r['mean']:.6f}  ({r['sentences']} sentences)")
    out = {"jit": jit, "disk": disk, "mixed": mixed, "where": where, "minilm_cosine": cos,
           "machine": {"cpus": os.cpu_count()}}
    path = ROOT / "bench" / "results" / "devproc.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
