"""A small run of bench/fuzz_cpp_parsers.py (a few thousand inputs per parser, under AddressSanitizer
+ UBSan): every parser accepts some mutated inputs and refuses others with its own error type, and
nothing crashes, trips a sanitizer or escapes with another exception."""
from __future__ import annotations

import importlib.util

from clib_testing import ROOT


def _bench_module():
    spec = importlib.util.spec_from_file_location("fuzz_cpp_parsers", ROOT / "bench" / "fuzz_cpp_parsers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parsers_survive_a_small_fuzz_run(tmp_path):
    fuzz = _bench_module()
    doc = fuzz.run(2000, seed=7, quiet=True, crash_dir=tmp_path / "crashes")
    assert [r["parser"] for r in doc["results"]] == list(fuzz.PARSERS)
    for r in doc["results"]:
        assert (r["crashes"], r["sanitizer_reports"], r["unexpected"]) == (0, 0, 0), r["findings"]
        assert r["accepted"] + r["refused"] == r["inputs"] == 2000, r
        assert r["accepted"] > 0 and r["refused"] > 0, r      # valid seeds, and mutations that break them
    assert not (tmp_path / "crashes").exists()
