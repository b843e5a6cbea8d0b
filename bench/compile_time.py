#!/usr/bin/env python
"""Compile time of the Llama-2-7B-shaped recipe (meta device: no weight data) through the whole
DLAVM pipeline, per stage and per pass; in the same run, TVM Relax (``tvm.compile``, target llvm)
on the same exported program when ``import tvm`` works; and the simulated performance of the
result on vcu128 (timing-only simulator): decode (seq=1) and prefill (seq=512), time per token
and fraction of the roofline. Prints tables and writes bench/results/compile_time.json.

TVM is not a project dependency. To get the column without touching the venv:
``pip install --target DIR --no-deps apache-tvm apache-tvm-ffi ml_dtypes`` then run with
``--tvm-path DIR``.
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


def dlavm_compile_times(model: str, max_seq: int) -> tuple:
    from dlavm.backend.build import build_module
    from dlavm.models import import_model
    from dlavm.ir import PassContext, PassManager
    from dlavm.passes import device_pipeline
    from dlavm.target import get_target

    rows = []
    t0 = time.perf_counter()
    ctx = PassContext()
    res = import_model(model, max_seq=max_seq, pass_ctx=ctx)
    t_import = time.perf_counter() - t0
    for k in ("build_s", "export_s", "decompose_s", "convert_s"):
        if k in res.timings:
            rows.append(("import", k.removesuffix("_s"), res.timings[k]))
    rows += [("import pass", r.name, r.seconds) for r in ctx.records]
    ctx2 = PassContext()
    t0 = time.perf_counter()
    mod = PassManager(device_pipeline("int4")).run(res.module, ctx2)
    t_dev = time.perf_counter() - t0
    rows += [("device pass", r.name, r.seconds) for r in ctx2.records]
    t0 = time.perf_counter()
    build = build_module(mod, get_target("vcu128"), model=model)
    t_build = time.perf_counter() - t0
    rows += [("backend", k, v) for k, v in build.timings.items()]
    totals = {"import_s": t_import, "device_pipeline_s": t_dev, "backend_s": t_build,
              "total_s": t_import + t_dev + t_build,
              # from the exported program on: convert + every pass + lowering/streams/packing
              "after_export_s": sum(s for stage, name, s in rows if (stage, name) not in
                                    (("import", "build"), ("import", "export")))}
    return rows, totals, build


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
    args = ap.parse_args()

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
    print(f"{'phase':<14} {'seq':>5} {'cycles':>14} {'time ms':>10} {'us/token':>10} {'roofline':>9} {'sim wall s':>10}")
    for p, phase in zip(sims, ("decode", "prefill")):
        print(f"{phase:<14} {p['seq']:>5} {p['cycles']:>14,} {p['time_us'] / 1e3:>10.2f} {p['us_per_token']:>10.1f} "
              f"{100 * p['roofline_fraction']:>8.1f}% {p['wall_s']:>10.2f}")
    llm = None
    if not args.skip_llm:
        llm = llm_profile(args.model, args.llm_max_ctx)
        print(f"generation ({args.model}, KV cache {args.llm_max_ctx} positions, int4, vcu128 at "
              f"{llm['runs'][0]['clock_mhz']} MHz; compiled in {llm['compile_s']:.1f} s)")
        print(f"{'phase':<9} {'seq':>5} {'ctx':>5} {'ms':>10} {'ms/token':>9} {'HBM BW':>7} {'MACs':>7}")
        for p in llm["runs"]:
            print(f"{p['phase']:<9} {p['seq']:>5} {p['state']['ctx']:>5} {p['time_us'] / 1e3:>10.2f} "
                  f"{p['ms_per_token']:>9.3f} {100 * p['hbm_fraction']:>6.1f}% {100 * p['mac_fraction']:>6.1f}%")
    result = {"model": args.model, "llm": llm, "max_seq": args.max_seq, "machine": platform.platform(),
              "python": platform.python_version(), "dlavm_rows": rows, "dlavm_totals": totals, "tvm": tvm,
              "simulated": sims}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "compile_time.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
