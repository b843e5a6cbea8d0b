"""Mutated real artifacts through the C++ path under AddressSanitizer + UBSan: refused with one line, or
the same output; never a sanitizer report, crash, hang or read outside the artifact.

A few hundred cases of every mutation class (tests/clib/cpp_artifact_fuzz.py); bench/fuzz_cpp_artifacts.py
runs thousands. Prints the table of outcomes per class (``pytest -s``)."""
from __future__ import annotations

import collections
import shutil
import subprocess

import pytest

from tests.clib.cpp_artifact_fuzz import (CLASSES, SimServer, is_failure, make_base, outside_opens, run_case,
                                          schedule, strace_prefix)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("strace") is None,
                                reason="needs g++ and strace")

CASES = 240


def test_the_outside_read_check_sees_a_link_followed_out_of_the_artifact(tmp_path):
    """The fuzzer's read-outside check on a program that does follow a link: it names the outside file, and
    nothing for a file inside."""
    d = tmp_path / "art"
    d.mkdir()
    (d / "inside.bin").write_bytes(b"in")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"out")
    (d / "link.bin").symlink_to(outside)
    trace = tmp_path / "trace.txt"
    subprocess.run([*strace_prefix(trace), "cat", str(d / "inside.bin"), str(d / "link.bin")], check=True,
                   capture_output=True)
    here = str(tmp_path.resolve())    # (cat also opens locale files of the system)
    assert [p for p in outside_opens(trace, d, ()) if p.startswith(here)] == [str(outside.resolve())]
    subprocess.run([*strace_prefix(trace), "cat", str(d / "inside.bin")], check=True, capture_output=True)
    assert [p for p in outside_opens(trace, d, ()) if p.startswith(here)] == []


@pytest.fixture(scope="module")
def server():
    srv = SimServer()
    yield srv
    srv.close()


def test_mutated_artifacts_are_refused_or_run_as_compiled_under_the_sanitizers(server, tmp_path):
    base = make_base(tmp_path / "base", server)
    table = collections.Counter()
    failures = []
    for cls, seed in schedule(CASES, seed=11):
        case = run_case(base, server, cls, seed, tmp_path / "cases", time_limit=30.0)
        table[cls, case.outcome] += 1
        if is_failure(case):
            failures.append(case)
    outcomes = sorted({o for _, o in table})
    print("\nclass           " + " ".join(f"{o:>14}" for o in outcomes))
    for cls in CLASSES:
        print(f"{cls:<16}" + " ".join(f"{table[cls, o]:>14}" for o in outcomes))
    assert not failures, "\n".join(f"{c.cls} {c.detail}: {c.outcome} {c.message}" for c in failures[:20])
    assert all(sum(n for (c, _), n in table.items() if c == cls) for cls in CLASSES)
    # damage a loader can see is refused
    for cls in ("bitflip", "truncate", "extend", "field-unsealed", "path", "symlink", "special-file", "resized"):
        assert {o for (c, o) in table if c == cls} == {"refused"}, cls
    assert table["field-sealed", "refused"] > 0 and table["field-sealed", "same"] > 0
