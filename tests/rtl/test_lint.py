"""`verilator --lint-only -Wall` is clean for the whole core, at the smallest and at the reference target."""
from __future__ import annotations

import pytest

from hw_models.rtl import build

TOPS = ("dlavm_core", "frontend", "dma_engine", "mvm_engine", "mat_engine", "sfu")


@pytest.mark.parametrize("target", ["tiny", "vcu128"])
@pytest.mark.parametrize("top", TOPS)
def test_lint_clean(top, target):
    build.lint(top, build.rtl_sources(*build.CORE_FOLDERS), target=target)
