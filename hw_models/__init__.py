"""Cycle-level simulator of the DLAVM accelerator (implements doc/isa.md).

Entry point: :class:`Simulator`, a :class:`dlavm.devlink.DeviceHAL`.
Reads the device description (``dlavm.target``) and the instruction
encoding (``dlavm.target.isa``); never imports the compiler.

Files: ``memory.py`` (regions, sparse pages, init checks), ``numerics.py``
(exact vectorised arithmetic), ``units/`` (one table row per instruction:
operands, cycles, semantics), ``timing.py`` (timelines, queues, channels),
``hazards.py`` (missing-wait detection), ``trace.py`` (Chrome trace JSON),
``simulator.py`` (host registers, AUX, HAL).
"""
from hw_models.errors import (AddressError, IllegalInstructionError, SimError, UnalignedAccessError,
                              UndefinedRegisterError, UninitializedReadError)
from hw_models.hazards import HazardError
from hw_models.memory import DeviceMemory
from hw_models.simulator import Simulator

__all__ = ["Simulator", "DeviceMemory", "SimError", "AddressError", "UnalignedAccessError",
           "UninitializedReadError", "UndefinedRegisterError", "IllegalInstructionError", "HazardError"]
