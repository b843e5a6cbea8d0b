"""Fixtures of the torch.compile backend's tests: every test starts from a reset dynamo (no compiled
frame of another test is reused) and zeroed backend statistics."""
import logging

import pytest
import torch

import dlavm.dynamo


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Reset dynamo's caches and ``dlavm.dynamo.STATS`` before the test, and dynamo's again after it."""
    torch._dynamo.reset()
    dlavm.dynamo.reset_stats()
    yield
    torch._dynamo.reset()


@pytest.fixture
def dynamo_log(caplog):
    """``caplog`` capturing the backend's INFO records (logger ``dlavm.dynamo``)."""
    caplog.set_level(logging.INFO, logger="dlavm.dynamo")
    return caplog
