#!/usr/bin/env python
"""Import time of a Llama-2-7B-shaped model (32 layers, hidden 4096, meta device).

Measures, in one run:

* per phase, in this process on one exported program: torch.export, our conversion to graph IR
  (directly from the exported graph when every op has a converter), the fallback path through our
  decomposition table, and torch's full default ``run_decompositions()`` on the same program;
* end to end, from the built module, each path in a fresh process (neither warms caches for the
  other; the module is built untimed): ``torch.export`` + ours (``dlavm.frontend.torch.export_module``,
  which decomposes through our table only when needed, + ``from_exported_program``: graph IR), against
  ``torch.export`` + torch's own default ``run_decompositions()`` (core ATen), best of ``--e2e-repeat``
  fresh processes each.

Prints the tables and writes bench/results/import_time.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def end_to_end_worker(model: str, path: str) -> dict:
    """In this (fresh) process: build ``model`` (untimed), then time ``torch.export`` and what follows it
    on ``path``: ``ours`` (our export_module + from_exported_program) or ``torch`` (export +
    ``run_decompositions()``)."""
    import torch

    from dlavm.frontend.torch import export_module, from_exported_program
    from dlavm.models import load_model

    spec = load_model(model)
    if path == "ours":
        timings: dict = {}
        t0 = time.perf_counter()
        ep = export_module(spec.module, spec.example_inputs, spec.dynamic_shapes, timings=timings)
        t1 = time.perf_counter()
        from_exported_program(ep, spec.dynamic_shapes, keep_weights=False)
        t2 = time.perf_counter()
        return {"path": path, "export_s": timings["export_s"], "after_export_s": t2 - t0 - timings["export_s"],
                "total_s": t2 - t0, "decomposed_for": timings["decomposed_for"], "convert_s": t2 - t1}
    t0 = time.perf_counter()
    ep = torch.export.export(spec.module, spec.example_inputs, dynamic_shapes=spec.dynamic_shapes, strict=False)
    t1 = time.perf_counter()
    ep.run_decompositions()
    t2 = time.perf_counter()
    return {"path": path, "export_s": t1 - t0, "after_export_s": t2 - t1, "total_s": t2 - t0}


def end_to_end(model: str, repeat: int) -> dict:
    """Best (by total) of ``repeat`` fresh processes of each path of :func:`end_to_end_worker`."""
    out = {}
    for path in ("ours", "torch"):
        runs = []
        for _ in range(repeat):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--model", model, "--e2e-worker", path],
                               capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"end-to-end {path} run failed:\n{r.stderr[-3000:]}")
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        out[path] = min(runs, key=lambda x: x["total_s"]) | {"runs_total_s": [x["total_s"] for x in runs]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="llama2-7b-shape")
    ap.add_argument("--skip-full-decomp", action="store_true",
                    help="skip the slow baseline: torch's default run_decompositions() (per phase and end to end)")
    ap.add_argument("--e2e-repeat", type=int, default=1, help="fresh processes per end-to-end path (best counts)")
    ap.add_argument("--e2e-worker", choices=("ours", "torch"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.e2e_worker:
        print(json.dumps(end_to_end_worker(args.model, args.e2e_worker)))
        return 0

    import torch

    from dlavm.frontend.torch import from_exported_program
    from dlavm.frontend.torch.importer import needs_decomposition
    from dlavm.frontend.torch.decompositions import decomposition_table
    from dlavm.ir import post_order, structural_equal
    from dlavm.models import load_model

    t0 = time.perf_counter()
    spec = load_model(args.model)
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    ep = torch.export.export(spec.module, spec.example_inputs, dynamic_shapes=spec.dynamic_shapes, strict=False)
    t_export = time.perf_counter() - t0
    n_export = len(ep.graph.nodes)

    # Our path: the exported graph goes straight to the converters unless it
    # holds ops they cannot take (then our decomposition table runs first).
    t0 = time.perf_counter()
    missing = needs_decomposition(ep)
    t_check = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = from_exported_program(ep, spec.dynamic_shapes, keep_weights=False)
    t_convert = time.perf_counter() - t0
    n_ir = len(post_order(mod["forward"].body))

    # The fallback path, and torch's default decomposition, on the same program.
    t0 = time.perf_counter()
    ep_table = ep.run_decompositions(decomposition_table())
    t_table = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod_table = from_exported_program(ep_table, spec.dynamic_shapes, keep_weights=False)
    t_convert_table = time.perf_counter() - t0
    same = structural_equal(mod["forward"], mod_table["forward"])

    t_full = n_full = None
    if not args.skip_full_decomp:
        t0 = time.perf_counter()
        ep_full = ep.run_decompositions()
        t_full = time.perf_counter() - t0
        n_full = len(ep_full.graph.nodes)

    total = t_export + t_check + t_convert
    rows = [
        ("build module (meta)", t_build, ""),
        ("torch.export", t_export, f"{n_export} fx nodes"),
        ("check ops (needs decomposition?)", t_check, ", ".join(missing) or "no: convert directly"),
        ("convert to graph IR", t_convert, f"{n_ir} IR nodes"),
        ("IMPORT TOTAL (export+check+convert)", total, "goal < 15 s"),
        ("fallback: run_decompositions(our table)", t_table, f"{len(ep_table.graph.nodes)} fx nodes"),
        ("fallback: convert to graph IR", t_convert_table,
         "same IR as direct" if same else "IR differs from direct"),
    ]
    if t_full is not None:
        rows.append(("baseline: run_decompositions(default)", t_full, f"{n_full} fx nodes"))
    print(f"{args.model} on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<44}{'seconds':>9}  note")
    for name, sec, note in rows:
        print(f"{name:<44}{sec:>9.2f}  {note}")
    if t_full is not None:
        print(f"per phase, this process: ours after export (check + convert) {t_check + t_convert:.2f} s vs "
              f"run_decompositions(default) {t_full:.2f} s ({(t_check + t_convert) / t_full:.3g}x); with the "
              f"one export: {total / (t_export + t_full):.2f}x")
    e2e = None
    if not args.skip_full_decomp:
        e2e = end_to_end(args.model, args.e2e_repeat)
        o, t = e2e["ours"], e2e["torch"]
        print(f"end to end from the module, each path in a fresh process (best of {args.e2e_repeat})")
        print(f"{'path':<52}{'export s':>9}{'after s':>9}{'total s':>9}")
        print(f"{'torch.export + ours (export_module + convert to IR)':<52}{o['export_s']:>9.2f}"
              f"{o['after_export_s']:>9.2f}{o['total_s']:>9.2f}")
        print(f"{'torch.export + run_decompositions(default)':<52}{t['export_s']:>9.2f}"
              f"{t['after_export_s']:>9.2f}{t['total_s']:>9.2f}")
        print(f"end to end, ours / torch's: {o['total_s'] / t['total_s']:.2f}x; after export: "
              f"{o['after_export_s'] / t['after_export_s']:.3g}x")
    print(f"conversion goal < 2 s: {'met' if t_convert < 2 else 'MISSED'}; "
          f"import goal < 15 s: {'met' if total < 15 else 'MISSED'}")

    out = {
        "model": args.model, "torch": torch.__version__, "machine": platform.machine(),
        "build_s": t_build, "export_s": t_export, "check_s": t_check, "convert_s": t_convert,
        "import_total_s": total, "decomposed_for": missing,
        "fallback_decompose_s": t_table, "fallback_convert_s": t_convert_table, "fallback_same_ir": same,
        "default_decompose_s": t_full, "fx_nodes_export": n_export, "fx_nodes_default": n_full,
        "ir_nodes": n_ir, "end_to_end": e2e,
    }
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "import_time.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
