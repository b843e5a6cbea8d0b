"""The reference executor: runs graph IR on torch (CPU, or CUDA when present).

It is the numeric reference the hardware path is checked against, so each op
is implemented by the plainest torch call with torch's own semantics.
"""
from .check import DEVICE_TOLERANCE, Agreement, DeviceAgreement, NothingCompared, compare_device_with_torch, \
    compare_with_torch
from .executor import ExecutionError, bind_dims, run_function

__all__ = ["Agreement", "compare_with_torch", "DeviceAgreement", "compare_device_with_torch", "NothingCompared",
           "DEVICE_TOLERANCE", "ExecutionError", "bind_dims", "run_function"]
