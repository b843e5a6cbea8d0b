#!/usr/bin/env python
"""Cold start-up time of each ``dlavm`` command: a new interpreter per run, as a user types it.

Each command line runs ``python -m dlavm.cli.main ...`` in a fresh
subprocess ``--runs`` times (after one run that is not counted: it may write
bytecode caches) and the table reports the median wall time, the median CPU
time of the child (user + system, which a busy shared machine does not
inflate) and whether the command imported torch (one more run, with
``-X importtime``). The commands are the torch-free ones a deployment host
runs (doc/cli.md, "Without torch"): ``--help``, ``models``, ``targets``,
``ops``, ``run``, ``disasm``, ``profile``, ``diff``, ``generate``, and error
paths such as ``generate --temperature -1`` (the issue's "10.8 s to say bad
sampling parameters").

``--tree DIR`` measures the ``dlavm`` of another checkout (for instance an
older commit unpacked with ``git archive COMMIT | tar -x -C DIR``), so a
change can be shown as before/after on the same machine; the artifacts are
then compiled by that checkout. Writes the table to stdout and
``bench/results/cli_startup.json`` (or ``--out``). No threshold is asserted:
this is a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Compiles the two artifacts the commands use, with the dlavm of the tree being measured: a one-layer
#: Llama block (``mlp``, dims seq <= 32) and tiny-llama for generation (``llm``, context 16), on ``tiny``.
MAKE_ARTIFACTS = """
import sys
from pathlib import Path
import numpy as np
from dlavm.compare.cases import llama_block
from dlavm.compiler import compile as dlavm_compile
from dlavm.llm import compile_llm
root = Path(sys.argv[1])
if not (root / "mlp" / "manifest.json").is_file():
    mod = llama_block(max_seq=32, layers=1, rng=np.random.default_rng(0))
    dlavm_compile(mod, target="tiny", name="mlp").save(root / "mlp", driver=False)
if not (root / "llm" / "manifest.json").is_file():
    compile_llm("tiny-llama", target="tiny", max_seq=16).save(root / "llm", driver=False)
"""

#: (label, argv) of every command measured; ``{mlp}`` and ``{llm}`` are the artifacts.
COMMANDS = (
    ("--help", ("--help",)),
    ("models", ("models",)),
    ("targets", ("targets",)),
    ("ops", ("ops",)),
    ("disasm", ("disasm", "{mlp}")),
    ("run", ("run", "{mlp}", "--seq", "3")),
    ("profile", ("profile", "{mlp}", "--seq", "3")),
    ("diff", ("diff", "{mlp}", "{mlp}")),
    ("generate (4 tokens)", ("generate", "{llm}", "--prompt-ids", "1,2", "--max-new-tokens", "4")),
    ("generate --temperature -1", ("generate", "{llm}", "--prompt-ids", "1,2", "--temperature", "-1")),
    ("run --seq 0 (error)", ("run", "{mlp}", "--seq", "0")),
    ("unknown command (error)", ("nosuchcommand",)),
    ("import --max-seq 0 (error)", ("import", "mlp", "--max-seq", "0")),
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def measure(argv: list, tree: Path, runs: int) -> dict:
    """Median wall and CPU seconds of ``runs`` cold runs of ``dlavm argv``, its exit code, and whether
    it imported torch."""
    cmd = [sys.executable, "-m", "dlavm.cli.main", *argv]
    env = _env(tree)
    subprocess.run(cmd, capture_output=True, env=env, cwd=tree)  # not counted: may write bytecode caches
    walls, cpus, code = [], [], None
    for _ in range(runs):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, env=env, cwd=tree)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - cpu0)
        code = res.returncode
    probe = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], capture_output=True, text=True,
                           env=env, cwd=tree)
    torch = any(line.startswith("import time:") and line.split("|")[-1].strip() == "torch"
                for line in probe.stderr.splitlines())
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "median_cpu_s": round(statistics.median(cpus), 3), "exit": code, "imports_torch": torch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per command (default 5)")
    ap.add_argument("--tree", default=str(ROOT), help="checkout whose dlavm is measured (default: this one)")
    ap.add_argument("--work", default=None, help="folder for the artifacts (kept; default: a temp dir)")
    ap.add_argument("--only", action="append", default=[], help="measure only commands whose label has this "
                                                                 "text (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli_startup.json"))
    args = ap.parse_args()
    if args.runs < 1:
        ap.error(f"--runs {args.runs}: must be >= 1")
    tree = Path(args.tree).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="dlavm-startup-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([sys.executable, "-c", MAKE_ARTIFACTS, str(work)], env=_env(tree), cwd=tree,
                          capture_output=True, text=True)
    if made.returncode:
        print(f"error: cannot compile the artifacts with {tree}: {made.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return 2
    paths = {"mlp": str(work / "mlp"), "llm": str(work / "llm")}
    rows = []
    print(f"{'command':<28} {'median s':>8} {'min s':>7} {'cpu s':>7} {'exit':>4}  torch", flush=True)
    for label, argv in COMMANDS:
        if args.only and not any(o in label for o in args.only):
            continue
        r = measure([a.format(**paths) for a in argv], tree, args.runs)
        rows.append({"command": label, "argv": list(argv), **r})
        print(f"{label:<28} {r['median_s']:>8.2f} {r['min_s']:>7.2f} {r['median_cpu_s']:>7.2f} {r['exit']:>4}  "
              f"{'yes' if r['imports_torch'] else 'no'}", flush=True)
    result = {"tree": "this checkout" if tree == ROOT else tree.name, "runs": args.runs, "rows": rows,
              "load_average_1min": round(os.getloadavg()[0], 2), "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
