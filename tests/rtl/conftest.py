"""Shared pieces of the RTL tests (doc/rtl.md, "Tests").

Each unit's bench is a cocotb module in ``tests/rtl/benches/`` (``cocotb_<unit>.py``: not collected by
pytest) run by :func:`hw_models.rtl.build.run_cocotb` from a pytest test here. Operands are drawn by
hypothesis in the pytest process (derandomized: the same cases every run), written to a JSON file and
read by the bench, so one simulator run checks every case.

``make test`` runs :data:`EXAMPLES` cases per property (``DLAVM_RTL_EXAMPLES`` sets it; the full RTL suite,
``make rtl-test``, sets it higher and also runs the tests marked ``rtl_full``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st  # noqa: F401  (re-exported for the test modules)

BENCHES = Path(__file__).resolve().parent / "benches"
EXAMPLES = int(os.environ.get("DLAVM_RTL_EXAMPLES", "12"))
FULL = os.environ.get("DLAVM_RTL_FULL", "") not in ("", "0")


def draw_cases(strategy, n: int | None = None) -> list:
    """``n`` examples of ``strategy`` drawn by hypothesis, derandomized (the same list every run; hypothesis
    still tries its edge cases first: zeros, extremes, the smallest sizes)."""
    out: list = []

    @settings(max_examples=n or EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case):
        out.append(case)

    collect()
    return out


def write_cases(tmp_path: Path, cases: list, name: str = "cases.json") -> dict[str, str]:
    """Write ``cases`` for a bench; returns the ``extra_env`` that tells the bench where they are."""
    p = tmp_path / name
    p.write_text(json.dumps(cases))
    return {"DLAVM_RTL_CASES": str(p)}


#: What ``make test`` runs of the RTL (the smoke subset: seconds to a few minutes from a clean clone): the
#: generated package, the fp blocks' lint and bench, the device URIs, the synthesis flow's bookkeeping. Everything else builds large Verilated
#: models (the core and its harness take tens of minutes of C++ compile on 2 cores) and runs in the full
#: suite, ``make rtl-test``.
SMOKE = ("test_gen.py::", "test_fp.py::test_fp_lint", "test_fp.py::test_fp_blocks",
         "test_device.py::test_rtl_uris", "test_device.py::test_not_rtl_uris",
         "test_synth.py::")


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="part of the full RTL suite: make rtl-test (DLAVM_RTL_FULL=1)")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent != Path(__file__).resolve().parent:
            continue
        if "rtl_full" in item.keywords or not any(f"{path.name}::{item.name}".startswith(s) for s in SMOKE):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "rtl_full: runs in the full RTL suite only (make rtl-test)")
