"""Building clib and C++ test programs in two flavours: ``release`` (the -O2 build users get) and
``asan`` (AddressSanitizer + UndefinedBehaviorSanitizer, `make -C clib asan`, build-asan/). The C++
tests run every program in both, so a memory error or undefined behaviour fails the suite.

Importable as ``clib_build`` from tests/clib and as ``tests.clib.clib_build`` from elsewhere."""
from __future__ import annotations

import fcntl
import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIB = ROOT / "clib"
FLAVOURS = ("release", "asan")
WARNINGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
# A sanitizer finding exits with this code (never a code a test expects from a refused input).
SANITIZER_EXIT_CODE = 86


@functools.lru_cache(maxsize=None)
def _make_var(target: str) -> str:
    # --no-print-directory: under `make test` (a sub-make) make would add "Entering directory" lines
    res = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(CLIB), target], capture_output=True,
                         text=True, timeout=60, check=True)
    return res.stdout.strip()


def sanitize_flags() -> list[str]:
    """The compiler flags of the asan flavour, as clib/Makefile defines them."""
    return _make_var("print-sanitize-flags").split()


def sanitizer_env() -> dict[str, str]:
    """os.environ plus the sanitizer options of clib/Makefile, with findings exiting SANITIZER_EXIT_CODE."""
    env = dict(os.environ)
    for item in _make_var("print-sanitize-env").split():
        key, value = item.split("=", 1)
        env[key] = f"{value}:exitcode={SANITIZER_EXIT_CODE}"
    return env


def install_sanitizer_env() -> None:
    """Put the sanitizer options into this process's environment, so every program a test starts
    (built with the asan flavour) reports findings with SANITIZER_EXIT_CODE; others ignore them."""
    for key, value in sanitizer_env().items():
        if key.endswith("SAN_OPTIONS"):
            os.environ[key] = value


def build_clib(flavour: str) -> Path:
    """`make -C clib` (release) or `make -C clib asan`, serialised across test processes by a lock
    file; returns the static library."""
    build = CLIB / ("build" if flavour == "release" else "build-asan")
    build.mkdir(exist_ok=True)
    with open(build / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB), *([] if flavour == "release" else ["asan"])],
                             capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    lib = build / "libdlavm_rt.a"
    assert lib.is_file()
    return lib


def flavour_flags(flavour: str) -> list[str]:
    """g++ flags for a program of ``flavour`` (warnings as errors in both)."""
    return [*WARNINGS, "-O2"] if flavour == "release" else [*WARNINGS, "-O1", *sanitize_flags()]


def compile_programs(sources: dict[str, list[Path]], out: Path, flavour: str, lib: Path,
                     includes: tuple[Path, ...] = ()) -> dict[str, Path]:
    """{name: executable} for {name: [source files]}, linked against ``lib``, compiled in parallel."""
    out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, srcs in sources.items():
        exe = out / name
        cmd = ["g++", *flavour_flags(flavour), f"-I{CLIB / 'include'}", *(f"-I{d}" for d in includes),
               *map(str, srcs), str(lib), "-o", str(exe)]
        procs[name] = (exe, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for name, (exe, p) in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"compiling {name} ({flavour}) failed:\n{log}"
    return {name: exe for name, (exe, _) in procs.items()}
