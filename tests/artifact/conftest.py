"""Fixtures: a small real artifact (weights, a host constant, patches and guards) and the C++ reader."""
from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIB = ROOT / "clib"


@pytest.fixture(scope="session")
def good_artifact(tmp_path_factory) -> Path:
    """A one-layer Llama block on tiny, with weight data, saved without a driver."""
    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    mod = llama_block(max_seq=256, layers=1, rng=np.random.default_rng(3))
    return dlavm_compile(mod, target="tiny", name="block").save(tmp_path_factory.mktemp("good") / "block",
                                                                driver=False)


@pytest.fixture(scope="session")
def cpp_reader(tmp_path_factory) -> Path:
    """tests/clib/rt_tool.cc built against a freshly made clib (its ``artifact DIR`` command opens an artifact)."""
    (CLIB / "build").mkdir(exist_ok=True)
    with open(CLIB / "build" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB), "lib"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    exe = tmp_path_factory.mktemp("cpp") / "rt_tool"
    res = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{CLIB / 'include'}",
                          str(ROOT / "tests" / "clib" / "rt_tool.cc"), str(CLIB / "build" / "libdlavm_rt.a"),
                          "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return exe
