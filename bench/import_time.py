#!/usr/bin/env python
"""Import time of a Llama-2-7B-shaped model (32 layers, hidden 4096, meta device).

Measures, in one run: torch.export, our conversion to graph IR (directly from
the exported graph when every op has a converter), the fallback path through
our decomposition table, and, for comparison, torch's full default
``run_decompositions()`` on the same exported program. Prints a table and writes
bench/results/import_time.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="llama2-7b-shape")
    ap.add_argument("--skip-full-decomp", action="store_true",
                    help="skip the slow baseline: torch's default run_decompositions()")
    args = ap.parse_args()

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
    print(f"{args.model} on {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{'step':<44}{'seconds':>9}  note")
    for name, sec, note in rows:
        print(f"{name:<44}{sec:>9.2f}  {note}")
    if t_full is not None:
        print(f"import total vs export + default decomposition: {total / (t_export + t_full):.2f}x")
    print(f"conversion goal < 2 s: {'met' if t_convert < 2 else 'MISSED'}; "
          f"import goal < 15 s: {'met' if total < 15 else 'MISSED'}")

    out = {
        "model": args.model, "torch": torch.__version__, "machine": platform.machine(),
        "build_s": t_build, "export_s": t_export, "check_s": t_check, "convert_s": t_convert,
        "import_total_s": total, "decomposed_for": missing,
        "fallback_decompose_s": t_table, "fallback_convert_s": t_convert_table, "fallback_same_ir": same,
        "default_decompose_s": t_full, "fx_nodes_export": n_export, "fx_nodes_default": n_full,
        "ir_nodes": n_ir,
    }
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "import_time.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
