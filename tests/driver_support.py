"""Shared test support for generated C++ drivers: build clib, build a driver, run the
simulator server on 127.0.0.1 (a real socket), as users do."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIB = ROOT / "clib"
LIB = CLIB / "build" / "libdlavm_rt.a"


def ensure_clib() -> Path:
    """clib/build/libdlavm_rt.a, brought up to date (`make -C clib`, serialised by tests.clib.clib_build)."""
    from tests.clib.clib_build import build_clib
    assert build_clib("release") == LIB
    return LIB


def build_driver(art: Path, name: str, main: str = "main", opt: str = "-O2") -> Path:
    """Compile ``driver/<name>.cc`` + ``driver/<name>_<main>.cc`` of artifact ``art`` (for ``generate``
    also ``driver/<name>_llm.cc``, its ``dlavm::make_llm_model``) with g++ -Wall -Werror against clib;
    returns the executable."""
    lib = ensure_clib()
    d = art / "driver"
    exe = art / f"{name}_{main}"
    extra = [str(d / f"{name}_llm.cc")] if main == "generate" else []
    res = subprocess.run(["g++", "-std=c++17", opt, "-Wall", "-Werror", f"-I{CLIB / 'include'}", f"-I{d}",
                          str(d / f"{name}.cc"), *extra, str(d / f"{name}_{main}.cc"), str(lib), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


@contextlib.contextmanager
def sim_server(workdir: Path, target: str = "tiny", once: bool = False, record: Path | None = None,
               port: int = 0):
    """Run ``python -m hw_models.server`` on 127.0.0.1 (``port`` 0: an ephemeral one; another number: that
    one, e.g. a device restarted at the same address); yields ``(uri, process)``."""
    port_file = workdir / f"port-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "hw_models.server", "--target", target, "--port", str(port),
           "--port-file", str(port_file)]
    if once:
        cmd.append("--once")
    if record is not None:
        cmd += ["--record", str(record)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            if proc.poll() is not None:
                pytest.fail(f"simulator server exited with {proc.returncode}")
            time.sleep(0.05)
        else:
            pytest.fail("simulator server did not start within 30 s")
        yield f"sim://127.0.0.1:{port_file.read_text().strip()}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
