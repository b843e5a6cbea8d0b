"""Open an artifact directory: verify it, then run it with :class:`~dlavm.runtime.runtime.Runtime`.

:func:`verify_artifact` refuses, with :class:`ArtifactError` naming the file
or field, an artifact whose manifest breaks the schema
(:func:`dlavm.artifact.open_artifact`: format, version, every field, file
checksums), whose ISA major version differs from this runtime's, or (given a
target) that was compiled for another target. Needs ``dlavm.target`` and
``dlavm.artifact`` only; the device is the caller's HAL
(``dlavm.sim_device.open_simulator`` opens the simulator on a development
host).
"""
from __future__ import annotations

from pathlib import Path

from dlavm.artifact import ArtifactError, Manifest, open_artifact
from dlavm.target.isa import ISA_VERSION


def verify_artifact(directory, target=None) -> Manifest:
    """The typed manifest of a verified artifact (see module docstring)."""
    m = open_artifact(directory)
    isa = f"{ISA_VERSION >> 16}.{ISA_VERSION & 0xFFFF}"
    if m.isa_version.split(".")[0] != isa.split(".")[0]:
        raise ArtifactError(f"artifact {directory}: built for ISA {m.isa_version}, this runtime speaks ISA {isa}")
    if target is not None and target.fingerprint() != m.target.fingerprint:
        raise ArtifactError(f"artifact {directory}: compiled for target '{m.target.name}' "
                            f"(fingerprint {m.target.fingerprint[:12]}), not for '{target.name}' "
                            f"(fingerprint {target.fingerprint()[:12]})")
    return m


def artifact_target(manifest: Manifest):
    """The Target stored in ``manifest``, checked against its fingerprint (:meth:`TargetInfo.load`)."""
    return manifest.target.load()


def load_runtime(directory, hal, mode: str = "aux"):
    """(manifest, Runtime) for a verified artifact on ``hal`` (a :class:`~dlavm.devlink.DeviceHAL`)."""
    from dlavm.runtime.runtime import Runtime
    root = Path(directory)
    m = verify_artifact(root)
    return m, Runtime(m, lambda rel: (root / rel).read_bytes(), hal, mode)


__all__ = ["ArtifactError", "verify_artifact", "artifact_target", "load_runtime"]
