"""Running compiled work on a device through the HAL (``dlavm.devlink``).

The runtime needs numpy only: no torch, no compiler, no simulator.
"""
from dlavm.devlink import DeviceHAL, HALError

__all__ = ["DeviceHAL", "HALError"]
