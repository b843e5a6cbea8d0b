"""Open an artifact directory: verify it once, then run its verified bytes with :class:`~dlavm.runtime.runtime.Runtime`.

:func:`load_verified` refuses, with :class:`ArtifactError` naming the file
or field, an artifact that fails :func:`dlavm.artifact.load_artifact`
(manifest checksum, format, version, every field, memory map, file checks),
whose ISA major version differs from this runtime's, or (given a target)
that was compiled for another target. It returns the files' checked bytes,
which are what the runtime runs (a file changed after loading is not seen). Needs ``dlavm.target`` and
``dlavm.artifact`` only; the device is the caller's HAL
(``dlavm.sim_device.open_simulator`` opens the simulator on a development
host).
"""
from __future__ import annotations

from dlavm.artifact import ArtifactError, Manifest, VerifiedArtifact, load_artifact
from dlavm.target.isa import ISA_VERSION


def load_verified(directory, target=None) -> VerifiedArtifact:
    """The verified artifact (manifest and checked file bytes), see the module docstring."""
    art = load_artifact(directory)
    m = art.manifest
    isa = f"{ISA_VERSION >> 16}.{ISA_VERSION & 0xFFFF}"
    major, minor = (int(x) for x in m.isa_version.split(".")[:2])
    if major != ISA_VERSION >> 16 or minor > ISA_VERSION & 0xFFFF:  # a newer minor may use fields we lack
        raise ArtifactError(f"artifact {directory}: built for ISA {m.isa_version}, this runtime speaks ISA {isa}")
    if target is not None and target.fingerprint() != m.target.fingerprint:
        raise ArtifactError(f"artifact {directory}: compiled for target '{m.target.name}' "
                            f"(fingerprint {m.target.fingerprint[:12]}), not for '{target.name}' "
                            f"(fingerprint {target.fingerprint()[:12]})")
    return art


def verify_artifact(directory, target=None) -> Manifest:
    """The typed manifest of a verified artifact (:func:`load_verified`)."""
    return load_verified(directory, target).manifest


def artifact_target(manifest: Manifest):
    """The Target stored in ``manifest``, checked against its fingerprint (:meth:`TargetInfo.load`)."""
    return manifest.target.load()


def load_runtime(directory, hal, mode: str = "aux"):
    """(manifest, Runtime) for a verified artifact on ``hal`` (a :class:`~dlavm.devlink.DeviceHAL`)."""
    from dlavm.runtime.runtime import Runtime
    art = load_verified(directory)
    return art.manifest, Runtime(art.manifest, art.read, hal, mode)


__all__ = ["ArtifactError", "load_verified", "verify_artifact", "artifact_target", "load_runtime"]
