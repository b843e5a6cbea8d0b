#!/usr/bin/env python
"""Compile time of the Llama-2-7B-shaped recipe (meta device: no weight data) through the whole
DLAVM pipeline, per stage and per pass; in the same run, TVM Relax (``tvm.compile``, target llvm)
on the same exported program when ``import tvm`` works; and the simulated performance of the
result on vcu128 (timing-only simulator): decode (seq=1) and prefill (seq=512), time per token
and fraction of the roofline. Prints tables and writes bench/results/compile_time.json.

TVM is not a project dependency. To get the column without touching the venv:
``pip install --target DIR --no-deps apache-tvm apache-tvm-ffi ml_dtypes`` then run with
``--tvm-path DIR``.

The same run measures how compile time scales with depth: the recipe with its decoder cut to 2, 8,
16 and 32 layers (``--layers``; 32 is the recipe itself), each in a fresh process, exported untimed
and then compiled from the exported program on (convert, import and device passes, lower / streams /
pack): the CPU time (``time.process_time``) of the first compile in that process (what ``dlavm
compile`` pays) and the best of ``--repeat`` more, and the 32/8 ratio (linear in depth is 4.0).
Printed, and written to bench/results/compile_scaling.json; ``--scaling-only`` runs just that part.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

TVM_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import tvm
from tvm import relax
from tvm.relax.frontend.torch import from_exported_program
from tvm.relax.frontend.torch import exported_program_translator as ept
from dlavm.models import load_model
import numpy as np

_orig = ept.ExportedProgramImporter._convert_pytorch_tensor_to_tvm


def _meta_safe(self, t):
    # Shape-only (meta) model: buffers/constants become zeros of their shape; parameters, which
    # keep_params_as_input only attaches as an attribute, become 1-element placeholders.
    if getattr(t, "is_meta", False):
        dt = str(t.dtype).removeprefix("torch.")
        shape = tuple(t.shape) if t.numel() <= 1 << 20 else (1,)
        return tvm.runtime.tensor(np.zeros(shape, dtype=dt))
    return _orig(t)


ept.ExportedProgramImporter._convert_pytorch_tensor_to_tvm = _meta_safe
spec = load_model(sys.argv[1], max_seq=int(sys.argv[2]))
t1 = time.perf_counter()
ep = torch.export.export(spec.module, spec.example_inputs, dynamic_shapes=spec.dynamic_shapes, strict=False)
t2 = time.perf_counter()
mod = from_exported_program(ep, keep_params_as_input=True)
t3 = time.perf_counter()
err = None
try:
    tvm.compile(mod, target="llvm")
except Exception as e:  # report how far TVM got, and why it stopped
    err = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
t4 = time.perf_counter()
print(json.dumps({"version": tvm.__version__, "build_s": t1 - t0, "export_s": t2 - t1, "import_s": t3 - t2,
                  "compile_s": t4 - t3, "compile_error": err}))
"""


def compile_exported(spec, ep, target: str = "vcu128", weights: str = "int4") -> tuple:
    """Compile the exported program ``ep`` of ``spec`` as ``dlavm.compile`` does from there on: convert
    to graph IR, the import passes, the device pipeline, lower / streams / pack. Returns
    ``(rows, cpu_s, wall_s, build)``: one ``(stage, name, wall seconds)`` row per stage and pass, and
    the CPU and wall time of the whole (``time.process_time`` / ``time.perf_counter``)."""
    import dlavm.devops  # noqa: F401  (registers the device ops: legalize needs them)
    from dlavm.backend.build import build_module
    from dlavm.frontend.torch import from_exported_program
    from dlavm.ir import PassContext, PassManager
    from dlavm.passes import IMPORT_PIPELINE, device_pipeline
    from dlavm.target import get_target

    timings: dict = {}
    tgt = get_target(target)
    ctx, ctx2 = PassContext(), PassContext(target=tgt)  # as dlavm.compile runs them
    cpu0, wall0 = time.process_time(), time.perf_counter()
    mod = from_exported_program(ep, spec.dynamic_shapes, keep_weights=not spec.shape_only, timings=timings)
    mod = PassManager(IMPORT_PIPELINE).run(mod, ctx)
    mod = PassManager(device_pipeline(weights)).run(mod, ctx2)
    build = build_module(mod, tgt, model=spec.name, weights=weights)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rows = [("import", k.removesuffix("_s"), v) for k, v in timings.items()]
    rows += [("import pass", r.name, r.seconds) for r in ctx.records]
    rows += [("device pass", r.name, r.seconds) for r in ctx2.records]
    rows += [("backend", k, v) for k, v in build.timings.items()]
    return rows, cpu, wall, build


def dlavm_compile_times(model: str, max_seq: int) -> tuple:
    from dlavm.frontend.torch import export_module
    from dlavm.models import load_model

    t0 = time.perf_counter()
    spec = load_model(model, max_seq=max_seq)
    t_build = time.perf_counter() - t0
    timings: dict = {}
    t0 = time.perf_counter()
    ep = export_module(spec.module, spec.example_inputs, spec.dynamic_shapes, timings=timings)
    t_export = time.perf_counter() - t0
    rows, cpu, wall, build = compile_exported(spec, ep)
    rows = [("import", "build", t_build), ("import", "export", t_export)] + rows
    totals = {"import_s": t_build + t_export + sum(s for stage, _, s in rows[2:] if stage in ("import", "import pass")),
              "device_pipeline_s": sum(s for stage, _, s in rows if stage == "device pass"),
              "backend_s": sum(s for stage, _, s in rows if stage == "backend"),
              "total_s": t_build + t_export + wall,
              # from the exported program on: convert + every pass + lowering/streams/packing
              "after_export_s": wall, "after_export_cpu_s": cpu}
    return rows, totals, build


def layer_spec(layers: int, max_seq: int):
    """The llama2-7b-shape recipe with its decoder cut to ``layers`` layers (meta device; the rest of
    the Llama-2-7B configuration unchanged)."""
    import copy
    import dataclasses

    import torch
    from transformers import LlamaForCausalLM

    from dlavm.models import load_model
    from dlavm.models.builtin import CausalLMLogits

    spec = load_model("llama2-7b-shape", max_seq=max_seq)
    cfg = copy.deepcopy(spec.module.model.config)
    cfg.num_hidden_layers = layers
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    return dataclasses.replace(spec, name=f"llama2-7b-shape-{layers}l", module=CausalLMLogits(model).eval())


def scaling_worker(layers: int, max_seq: int, repeat: int) -> dict:
    """In this (fresh) process: export the 7B shape cut to ``layers`` layers (untimed), then compile it
    once as ``dlavm compile`` does in a fresh process (``first``), then ``repeat`` more times (warm)."""
    import gc

    from dlavm.frontend.torch import export_module

    spec = layer_spec(layers, max_seq)
    ep = export_module(spec.module, spec.example_inputs, spec.dynamic_shapes)
    cpus, walls = [], []
    for i in range(1 + repeat):
        if i:
            gc.collect()  # a warm compile starts from a collected heap (not timed); the first, as the
            # command's, right after the export with whatever it left for the collector
        _, cpu, wall, _ = compile_exported(spec, ep)
        cpus.append(cpu)
        walls.append(wall)
    return {"layers": layers, "first_cpu_s": cpus[0], "first_wall_s": walls[0],
            "warm_cpu_s": min(cpus[1:], default=None), "warm_wall_s": min(walls[1:], default=None),
            "cpu_runs_s": cpus}


def compile_scaling(layer_counts, max_seq: int, repeat: int) -> dict:
    """Compile CPU time after export of the 7B shape cut to each of ``layer_counts`` layers, each in a
    fresh process (:func:`scaling_worker`): the first compile there (what ``dlavm compile`` pays: the
    garbage collector sees the whole heap of torch and the exported program) and the best of
    ``repeat`` warm compiles of the same exported program."""
    runs = []
    for n in layer_counts:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--scaling-worker", str(n),
                            "--max-seq", str(max_seq), "--repeat", str(repeat)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"compile of {n} layers failed:\n{r.stderr[-3000:]}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))

    def ratio(key):
        by = {r["layers"]: r[key] for r in runs}
        return by[32] / by[8] if by.get(32) and by.get(8) else None
    return {"model": "llama2-7b-shape", "max_seq": max_seq, "weights": "int4", "target": "vcu128",
            "repeat": repeat, "runs": runs, "ratio_32_8": ratio("first_cpu_s"),
            "warm_ratio_32_8": ratio("warm_cpu_s")}


def print_scaling(sc: dict) -> None:
    print(f"compile CPU time after export, {sc['model']} cut to N layers (max_seq {sc['max_seq']}, int4, "
          f"{sc['target']}); each in a fresh process: its first compile, and the best of {sc['repeat']} more")
    print(f"{'layers':>6} {'first CPU ms':>13} {'ms/layer':>9} {'first wall ms':>14} {'warm CPU ms':>12}")
    for r in sc["runs"]:
        warm = f"{r['warm_cpu_s'] * 1e3:>12.0f}" if r["warm_cpu_s"] is not None else f"{'-':>12}"
        print(f"{r['layers']:>6} {r['first_cpu_s'] * 1e3:>13.0f} {r['first_cpu_s'] * 1e3 / r['layers']:>9.1f} "
              f"{r['first_wall_s'] * 1e3:>14.0f} {warm}")
    if sc["ratio_32_8"] is not None:
        warm = f", warm {sc['warm_ratio_32_8']:.2f}x" if sc["warm_ratio_32_8"] is not None else ""
        print(f"32 layers / 8 layers: first compile {sc['ratio_32_8']:.2f}x{warm} (linear: 4.0x)")


def tvm_compile_time(model: str, max_seq: int, tvm_path: str | None, timeout: int) -> dict:
    env = dict(os.environ)
    if tvm_path:
        env["PYTHONPATH"] = os.pathsep.join([tvm_path, ROOT, env.get("PYTHONPATH", "")])
    else:
        env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    probe = subprocess.run([sys.executable, "-c", "import tvm"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        return {"skipped": "import tvm failed: " + (probe.stderr.strip().splitlines() or ["?"])[-1]}
    try:
        r = subprocess.run([sys.executable, "-c", TVM_SCRIPT, model, str(max_seq)], env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"tvm.compile did not finish within {timeout} s"}
    if r.returncode != 0:
        return {"skipped": "tvm failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def simulate(build) -> list:
    from dlavm.compiler import profile
    files = build.files
    out = []
    for seq in (1, 512):
        t0 = time.perf_counter()
        p = profile(build.manifest, lambda rel: files[rel], seq, functional=False)
        p["wall_s"] = time.perf_counter() - t0
        p["us_per_token"] = p["time_us"] / seq
        p.pop("per_op")
        out.append(p)
    return out


def llm_profile(model: str, max_ctx: int) -> dict:
    """Generation figures of ``model`` compiled with a KV cache (doc/llm.md), timing-only simulator:
    decode (one token after ``max_ctx // 2`` and after ``max_ctx - 1`` cached ones; HBM-bandwidth bound,
    judged against the HBM roofline) and prefill of 512 tokens (compute bound, judged against peak MACs)."""
    from dlavm.compiler import profile
    from dlavm.llm import compile_llm
    t0 = time.perf_counter()
    cm = compile_llm(model, target="vcu128", weights="int4", max_seq=max_ctx)
    compile_s = time.perf_counter() - t0
    files = cm.build.files
    runs = []
    for phase, seq, ctx in (("decode", 1, max_ctx // 2), ("decode", 1, max_ctx), ("prefill", 512, 512)):
        p = profile(cm.manifest, lambda rel: files[rel], seq, "greedy", functional=False, ctx=ctx)
        p.pop("per_op")
        p["phase"] = phase
        runs.append(p)
    return {"model": model, "max_ctx": max_ctx, "compile_s": compile_s, "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="llama2-7b-shape")
    ap.add_argument("--max-seq", type=int, default=512)
    ap.add_argument("--tvm-path", default=None, help="directory holding a pip --target install of apache-tvm")
    ap.add_argument("--tvm-timeout", type=int, default=540)
    ap.add_argument("--skip-tvm", action="store_true")
    ap.add_argument("--llm-max-ctx", type=int, default=1024, help="KV cache length of the generation profile")
    ap.add_argument("--skip-llm", action="store_true", help="skip the KV-cached decode/prefill profile")
    ap.add_argument("--layers", default="2,8,16,32", help="layer counts of the scaling measurement")
    ap.add_argument("--repeat", type=int, default=2, help="warm compiles per layer count after the first (best counts)")
    ap.add_argument("--skip-scaling", action="store_true", help="skip the compile time vs layers measurement")
    ap.add_argument("--scaling-only", action="store_true", help="run only the compile time vs layers measurement")
    ap.add_argument("--scaling-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.scaling_worker is not None:
        print(json.dumps(scaling_worker(args.scaling_worker, args.max_seq, args.repeat)))
        return 0
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    if not args.skip_scaling:
        sc = compile_scaling([int(n) for n in args.layers.split(",")], args.max_seq, args.repeat)
        sc.update(machine=platform.platform(), python=platform.python_version())
        print_scaling(sc)
        with open(os.path.join(ROOT, "bench", "results", "compile_scaling.json"), "w") as f:
            json.dump(sc, f, indent=1)
    if args.scaling_only:
        return 0

    rows, totals, build = dlavm_compile_times(args.model, args.max_seq)
    print(f"DLAVM compile of {args.model} (max_seq {args.max_seq}, int4, target vcu128)")
    print(f"{'stage':<12} {'pass':<22} {'ms':>10}")
    for stage, name, s in rows:
        print(f"{stage:<12} {name:<22} {s * 1e3:>10.1f}")
    for k, v in totals.items():
        print(f"{'total':<12} {k:<22} {v * 1e3:>10.1f}")
    tvm = {"skipped": "--skip-tvm"} if args.skip_tvm else \
        tvm_compile_time(args.model, args.max_seq, args.tvm_path, args.tvm_timeout)
    if "skipped" in tvm:
        print(f"TVM column skipped: {tvm['skipped']}")
    else:
        print(f"TVM {tvm['version']} relax: export {tvm['export_s'] * 1e3:.0f} ms, from_exported_program "
              f"{tvm['import_s'] * 1e3:.0f} ms, tvm.compile(llvm) {tvm['compile_s'] * 1e3:.0f} ms"
              + (f" -- FAILED after that time: {tvm['compile_error']}" if tvm.get("compile_error") else ""))
        ours = totals["after_export_s"]
        theirs = tvm["import_s"] + tvm["compile_s"]
        what = "import only (tvm.compile failed)" if tvm.get("compile_error") else "import + compile"
        print(f"after export: DLAVM convert+passes+backend {ours * 1e3:.0f} ms vs TVM {what} {theirs * 1e3:.0f} ms")
    sims = simulate(build)
    fig0 = sims[0]
    print(f"roofline against the port peak ({fig0['port_peak_gb_s']:.1f} GB/s) and the device peak "
          f"({fig0['device_peak_gb_s']:.1f} GB/s)")
    print(f"{'phase':<14} {'seq':>5} {'cycles':>14} {'time ms':>10} {'us/token':>10} {'% port':>7} {'% device':>9} "
          f"{'sim wall s':>10}")
    for p, phase in zip(sims, ("decode", "prefill")):
        print(f"{phase:<14} {p['seq']:>5} {p['cycles']:>14,} {p['time_us'] / 1e3:>10.2f} {p['us_per_token']:>10.1f} "
              f"{100 * p['roofline_fraction']:>6.1f}% {100 * p['device_roofline_fraction']:>8.1f}% "
              f"{p['wall_s']:>10.2f}")
    llm = None
    if not args.skip_llm:
        llm = llm_profile(args.model, args.llm_max_ctx)
        print(f"generation ({args.model}, KV cache {args.llm_max_ctx} positions, int4, vcu128 at "
              f"{llm['runs'][0]['clock_mhz']} MHz; compiled in {llm['compile_s']:.1f} s)")
        print(f"{'phase':<9} {'seq':>5} {'ctx':>5} {'ms':>10} {'ms/token':>9} {'HBM/port':>9} {'HBM/dev':>8} "
              f"{'MACs':>7}")
        for p in llm["runs"]:
            print(f"{p['phase']:<9} {p['seq']:>5} {p['state']['ctx']:>5} {p['time_us'] / 1e3:>10.2f} "
                  f"{p['ms_per_token']:>9.3f} {100 * p['hbm_fraction']:>8.1f}% {100 * p['hbm_device_fraction']:>7.1f}% "
                  f"{100 * p['mac_fraction']:>6.1f}%")
    result = {"model": args.model, "llm": llm, "max_seq": args.max_seq, "machine": platform.platform(),
              "python": platform.python_version(), "dlavm_rows": rows, "dlavm_totals": totals, "tvm": tvm,
              "simulated": sims}
    with open(os.path.join(ROOT, "bench", "results", "compile_time.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
