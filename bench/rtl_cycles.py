"""RTL cycles against the timing model, and Verilated speed against the Python simulator.

Workload: the tiny Llama (``tiny-llama``, int4 weights by default) compiled for target ``tiny``; a prefill of
``--prompt`` tokens then ``--decode`` greedy decode steps, run by the Python runtime on the Verilated core
(``hw_models.rtl.device.RtlDevice``, the ``rtl://`` device) and on ``hw_models.Simulator``. Reported:

* per instruction kind, over every instruction of the run in serial mode (``Runtime(serial=True)``: every
  instruction waits for every unit, so each runs alone on both): how many, the RTL's busy cycles (start
  to the unit's done) against the timing model's, the total and mean ratio RTL / model, the largest
  deviation in cycles and how many instructions agree within 5% (or 2 cycles): the check of each
  instruction's cycle formulas (doc/simulator.md);
* the same table for the normal run (units overlapping, contending for the channels) against the model's
  busy cycles in its own run: how far the model's contention, resolved in issue order, is from the RTL's;
* a sweep of shapes beyond the tiny Llama's (rows, columns, KV lengths, heads per KV head, query rows),
  each instruction pushed alone on an idle core and on the simulator: the same agreement per kind;
* one decode step end to end (host traffic included, as ``Runtime.last_cycles``): RTL cycles vs the
  simulator's, and whether the logits are bit-identical;
* simulated cycles per wall second of the decode step(s): Verilated core vs the Python simulator.

Usage: python bench/rtl_cycles.py [--fmt int4] [--prompt 17] [--decode 4]
Prints a table and writes bench/results/rtl_cycles.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlavm.llm import compile_llm  # noqa: E402
from dlavm.models import import_model  # noqa: E402
from dlavm.runtime.generate import Generator  # noqa: E402
from hw_models import Simulator  # noqa: E402
from hw_models.rtl.device import RtlDevice, cycle_table  # noqa: E402

TARGET = "tiny"
MAX_CTX = 160


def run(cm, hal, prompt, decode: int, serial: bool = False) -> dict:
    """Prefill + ``decode`` steps on ``hal``: logits rows, per-step cycles, decode wall time and cycles."""
    rt = cm.runtime(hal, serial=serial)
    gen = Generator(rt)
    t0 = time.perf_counter()
    rows = [gen.step(prompt, logits=True)]
    prefill_wall = time.perf_counter() - t0
    prefill_cycles = rt.last_cycles
    steps, wall = [], 0.0
    for _ in range(decode):
        t0 = time.perf_counter()
        rows.append(gen.step([int(np.argmax(rows[-1]))], logits=True))
        wall += time.perf_counter() - t0
        steps.append(rt.last_cycles)
    return {"rows": rows, "prefill_cycles": prefill_cycles, "prefill_wall": prefill_wall,
            "decode_cycles": steps, "decode_wall": wall}


def sweep_cases() -> list:
    """Instructions of shapes the tiny Llama does not use: row-wise SFU ops over rows and columns, the
    attention over KV lengths, heads per KV head and query rows (operands in DDR, KV heads and γ/β in HBM,
    as the compiler places them)."""
    from dlavm.target import get_target, isa
    fig = get_target(TARGET).figures
    hbm, ddr = fig.region("hbm").base, fig.region("ddr").base
    out = []
    for cols in (64, 128, 256):
        for rows in (1, 2, 3, 17):
            out.append(isa.make("rmsnorm", src=ddr + 0x10000, gamma=hbm + 0x40000, dst=ddr + 0x80000, rows=rows,
                                cols=cols, eps=0x3727C5AC))
            out.append(isa.make("layernorm", src=ddr + 0x10000, gamma=hbm + 0x40000, beta=hbm + 0x48000,
                                dst=ddr + 0x80000, rows=rows, cols=cols, eps=0x3727C5AC))
    for cols in (17, 64, 129):
        for rows in (1, 2, 17, 68):
            for fp32 in (0, 1):
                out.append(isa.make("softmax", src=ddr + 0x10000, dst=ddr + 0x80000, rows=rows, cols=cols,
                                    in_fp32=fp32, causal=0, m=1))
    for l in (1, 2, 17, 18, 33, 64, 129):
        for m, h, hk in ((1, 2, 1), (1, 4, 2), (17, 4, 2), (5, 2, 2)):
            if l < m:   # a causal prefill's KV length is at least its query rows
                continue
            out.append(isa.make("mat_pv", p=ddr + 0x10000, vc=hbm + 0x40000, out=ddr + 0x80000, m=m, heads=h,
                                kv_heads=hk, l=l, d=32, v_stride=0x10000))
            out.append(isa.make("mat_qk", q=ddr + 0x10000, kc=hbm + 0x40000, out=ddr + 0x80000, m=m, heads=h,
                                kv_heads=hk, l=l, d=32, k_stride=0x10000, out_fp32=1))
    return out


def run_alone(hal, insns) -> list:
    """Each instruction pushed alone (the device idle before it); its record."""
    from dlavm.target import get_target
    fig = get_target(TARGET).figures
    ones = np.full(0x40000, 0x3C00, dtype="<u2").tobytes()   # fp16 1.0: every operand initialised
    for region in ("hbm", "ddr"):
        hal.write_mem(fig.region(region).base + 0x10000, ones)
    recs = []
    for insn in insns:
        n0 = len(hal.records)
        hal.push(insn)
        hal.wait()
        recs.append(hal.records[n0])
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmt", default="int4", choices=["int4", "int8", "fp16"])
    ap.add_argument("--prompt", type=int, default=17)
    ap.add_argument("--decode", type=int, default=4)
    ap.add_argument("--no-sweep", action="store_true", help="skip the shape sweep")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rtl_cycles.json"))
    a = ap.parse_args()

    t0 = time.perf_counter()
    cm = compile_llm(import_model("tiny-llama", max_seq=MAX_CTX).module, target=TARGET, weights=a.fmt,
                     max_seq=MAX_CTX, name="tiny-llama")
    compile_s = time.perf_counter() - t0
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, 512, a.prompt)]

    sim = Simulator(TARGET)
    s = run(cm, sim, prompt, a.decode)
    t0 = time.perf_counter()
    dev = RtlDevice(TARGET)    # builds the library on first use (cached)
    build_s = time.perf_counter() - t0
    r = run(cm, dev, prompt, a.decode)
    identical = all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(r["rows"], s["rows"]))
    in_run = cycle_table(dev.records, sim.records, model="run")
    dev.close()
    sim_serial = Simulator(TARGET)
    s_serial = run(cm, sim_serial, prompt, a.decode, serial=True)
    with RtlDevice(TARGET) as dev_serial:
        r_serial = run(cm, dev_serial, prompt, a.decode, serial=True)
        table = cycle_table(dev_serial.records, sim_serial.records, model="alone")
    identical = identical and all(np.array_equal(x.view(np.uint32), y.view(np.uint32))   # serial: same numerics
                                  for rows in (r_serial["rows"], s_serial["rows"]) for x, y in zip(rows, s["rows"]))

    print(f"tiny-llama {a.fmt} on target {TARGET}: prefill {a.prompt} tokens + {a.decode} decode steps; "
          f"logits bit-identical (normal and serial runs): {identical}")

    def show(title: str, tab: dict) -> None:
        print(title)
        print(f"{'op':<11}{'n':>6}{'rtl cycles':>12}{'model cycles':>14}{'total ratio':>13}{'mean ratio':>12}"
              f"{'max dev':>9}{'within 5%':>11}")
        for op, row in sorted(tab.items()):
            print(f"{op:<11}{row['n']:>6}{row['rtl_cycles']:>12,}{row['model_cycles']:>14,}"
                  f"{row['total_ratio']:>13.3f}{row['mean_ratio']:>12.3f}{row['max_dev']:>+9d}"
                  f"{row['within']:>7}/{row['n']}")
        n, ok = sum(r_['n'] for r_ in tab.values()), sum(r_['within'] for r_ in tab.values())
        print(f"{'all':<11}{n:>6}{'':>63}{ok:>7}/{n}")

    show("each instruction alone (serial runs): RTL vs the timing model", table)
    show("in the normal run (units overlap): RTL vs the model's own run", in_run)
    swept = None
    if not a.no_sweep:
        cases = sweep_cases()
        with RtlDevice(TARGET) as dev_sweep:
            rtl_recs = run_alone(dev_sweep, cases)
        swept = cycle_table(rtl_recs, run_alone(Simulator(TARGET), cases), model="alone")
        show(f"a sweep of {len(cases)} shapes beyond the tiny Llama's, each alone: RTL vs the timing model", swept)
    rd, sd = r["decode_cycles"], s["decode_cycles"]
    print(f"prefill {a.prompt}: rtl {r['prefill_cycles']:,} cycles, sim {s['prefill_cycles']:,} "
          f"(ratio {r['prefill_cycles'] / s['prefill_cycles']:.3f})")
    print(f"decode step (first): rtl {rd[0]:,} cycles, sim {sd[0]:,} (ratio {rd[0] / sd[0]:.3f}); "
          f"mean over {a.decode}: rtl {np.mean(rd):,.0f}, sim {np.mean(sd):,.0f}")
    rtl_cps = sum(rd) / r["decode_wall"]
    sim_cps = sum(sd) / s["decode_wall"]
    print(f"speed on the decode steps: Verilated {rtl_cps:.3e} cycles/s ({r['decode_wall']:.3f} s), "
          f"Python simulator {sim_cps:.3e} cycles/s ({s['decode_wall']:.3f} s): ratio {rtl_cps / sim_cps:.2f}")
    out = {
        "target": TARGET, "model": "tiny-llama", "weights": a.fmt, "prompt": a.prompt, "decode_steps": a.decode,
        "logits_bit_identical": identical, "per_op": table, "per_op_in_run": in_run, "per_op_sweep": swept,
        "serial_prefill_cycles": {"rtl": r_serial["prefill_cycles"], "sim": s_serial["prefill_cycles"]},
        "prefill_cycles": {"rtl": r["prefill_cycles"], "sim": s["prefill_cycles"]},
        "decode_step_cycles": {"rtl": rd, "sim": sd},
        "cycles_per_second": {"verilated": rtl_cps, "python_sim": sim_cps},
        "wall_s": {"rtl_decode": r["decode_wall"], "sim_decode": s["decode_wall"], "rtl_prefill": r["prefill_wall"],
                   "sim_prefill": s["prefill_wall"], "compile": compile_s, "rtl_open_and_build": build_s},
        "machine": platform.platform(), "python": platform.python_version(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
