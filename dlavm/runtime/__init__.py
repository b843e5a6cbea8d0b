"""Running compiled work on a device: the HAL interface (``hal.py``).

The runtime needs numpy only: no torch, no compiler.
"""
from dlavm.runtime.hal import DeviceHAL, HALError

__all__ = ["DeviceHAL", "HALError"]
