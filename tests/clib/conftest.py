"""Fixtures for the C++ runtime tests: the built library, the compiled test
programs, and a simulator server on 127.0.0.1 (a thread of this process)."""
from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from clib_testing import CLIB, CXXFLAGS, HERE, ServerThread


@pytest.fixture(scope="session")
def clib_lib() -> Path:
    """`make -C clib` (library + self-tests), serialised with other test runs by a lock file."""
    (CLIB / "build").mkdir(exist_ok=True)
    with open(CLIB / "build" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lib = CLIB / "build" / "libdlavm_rt.a"
    assert lib.is_file()
    return lib


@pytest.fixture(scope="session")
def cpp_programs(clib_lib, tmp_path_factory) -> dict[str, Path]:
    """tests/clib/*.cc compiled with g++ -O2 -Wall -Werror against the library (in parallel)."""
    out = tmp_path_factory.mktemp("clib_bin")
    procs = {}
    for src in sorted(HERE.glob("*.cc")):
        exe = out / src.stem
        procs[src.stem] = (exe, subprocess.Popen(
            ["g++", *CXXFLAGS, f"-I{CLIB / 'include'}", str(src), str(clib_lib), "-o", str(exe)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for name, (exe, p) in procs.items():
        log, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"compiling {name}.cc failed:\n{log}"
    return {name: exe for name, (exe, _) in procs.items()}


@pytest.fixture
def sim_server():
    srv = ServerThread("tiny", record=True)
    yield srv
    srv.stop()
