"""Exceptions the simulator raises; every message names the address, field or register."""
from __future__ import annotations

from dlavm.devlink.hal import HALError


class SimError(HALError):
    """Base class of every simulator error."""


class AddressError(SimError):
    """An access falls outside every memory region (or straddles two)."""


class UnalignedAccessError(SimError):
    """A device access, stride or register address is not aligned as doc/isa.md requires."""


class UninitializedReadError(SimError):
    """A unit read device memory that was never written (only with ``check_uninit``)."""


class UndefinedRegisterError(SimError):
    """A host access to an address with no register, or against its access mode."""


class IllegalInstructionError(SimError):
    """An instruction's fields break a rule of doc/isa.md (shape, format, capacity)."""
