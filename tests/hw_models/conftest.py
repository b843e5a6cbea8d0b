"""Shared fixtures for simulator tests."""
from __future__ import annotations

import numpy as np
import pytest

from sim_device import Device


@pytest.fixture
def dev() -> Device:
    return Device("tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
