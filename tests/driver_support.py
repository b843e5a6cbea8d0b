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
    """clib/build/libdlavm_rt.a, built if missing."""
    if not LIB.exists():
        subprocess.run(["make", "-C", str(CLIB), "lib"], check=True, capture_output=True)
    return LIB


def build_driver(art: Path, name: str, main: str = "main", opt: str = "-O2") -> Path:
    """Compile ``driver/<name>.cc`` + ``driver/<name>_<main>.cc`` of artifact ``art`` with
    g++ -Wall -Werror against clib; returns the executable."""
    lib = ensure_clib()
    d = art / "driver"
    exe = art / f"{name}_{main}"
    res = subprocess.run(["g++", "-std=c++17", opt, "-Wall", "-Werror", f"-I{CLIB / 'include'}", f"-I{d}",
                          str(d / f"{name}.cc"), str(d / f"{name}_{main}.cc"), str(lib), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


@contextlib.contextmanager
def sim_server(workdir: Path, target: str = "tiny", once: bool = False, record: Path | None = None):
    """Run ``python -m hw_models.server`` on an ephemeral 127.0.0.1 port; yields ``(uri, process)``."""
    port_file = workdir / f"port-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "hw_models.server", "--target", target, "--port", "0",
           "--port-file", str(port_file)]
    if once:
        cmd.append("--once")
    if record is not None:
        cmd += ["--record", str(record)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if port_file.exists() and port_file.read_text().strip():
                break
            if proc.poll() is not None:
                pytest.fail(f"simulator server exited with {proc.returncode}")
            time.sleep(0.05)
        else:
            pytest.fail("simulator server did not start")
        yield f"sim://127.0.0.1:{port_file.read_text().strip()}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
