"""The in-process simulator as the device of a development host.

The runtime (``dlavm.runtime``) takes its device as a
:class:`~dlavm.devlink.DeviceHAL` argument and never imports the simulator;
``hw_models`` never imports the runtime. This module sits above both and is
the one place that opens a ``hw_models.Simulator`` for an artifact, used by
``dlavm.compiler`` (``CompiledModel.runtime``, ``dlavm.run``) when the caller
passes no HAL. A deployment host passes its own HAL and never imports it.
"""
from __future__ import annotations

from typing import Any

from dlavm.runtime.loader import artifact_target
from hw_models import Simulator


def open_simulator(manifest, **sim_options: Any) -> Simulator:
    """A fresh ``hw_models.Simulator`` for the target the artifact was compiled for.

    The target comes from the manifest and is checked against its
    fingerprint (:func:`dlavm.runtime.loader.artifact_target`);
    ``sim_options`` go to the Simulator (``functional``, ``trace``, ...).
    """
    return Simulator(artifact_target(manifest), **sim_options)


def open_rtl(manifest, **options: Any):
    """The Verilated RTL core (``hw_models.rtl.device.RtlDevice``) of the artifact's target, for
    ``--device rtl://`` (doc/rtl.md); built by Verilator on first use (cached). ``options`` go to it."""
    from hw_models.rtl.device import RtlDevice
    return RtlDevice(artifact_target(manifest), **options)


__all__ = ["open_simulator", "open_rtl"]
