"""Fixtures for the C++ runtime tests: the built library, the compiled test
programs, and a simulator server on 127.0.0.1 (a thread of this process)."""
from __future__ import annotations

from pathlib import Path

import pytest

from clib_build import FLAVOURS, build_clib, compile_programs, install_sanitizer_env
from clib_testing import HERE, ServerThread

install_sanitizer_env()


@pytest.fixture(scope="session")
def clib_lib() -> Path:
    """`make -C clib` (library + self-tests), serialised with other test runs by a lock file."""
    return build_clib("release")


@pytest.fixture(scope="session", params=FLAVOURS)
def cpp_programs(request, tmp_path_factory) -> dict[str, Path]:
    """tests/clib/*.cc compiled with -Wall -Wextra -Werror against the library of each flavour
    (release -O2; asan: `make -C clib asan`, whose self-tests then ran under the sanitizers)."""
    lib = build_clib(request.param)
    return compile_programs({src.stem: [src] for src in sorted(HERE.glob("*.cc"))},
                            tmp_path_factory.mktemp(f"clib_bin_{request.param}"), request.param, lib)


@pytest.fixture
def sim_server():
    srv = ServerThread("tiny", record=True)
    yield srv
    srv.stop()
