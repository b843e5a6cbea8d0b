"""Open an artifact directory: verify it, then run it with :class:`~dlavm.runtime.runtime.Runtime`.

:func:`verify_artifact` refuses, with :class:`ArtifactError` naming the file
or field, an artifact whose format, version, ISA version, target or any
file checksum does not match. Needs ``dlavm.target`` only (and the simulator
only when :func:`open_simulator` is used).
"""
from __future__ import annotations

from pathlib import Path

from dlavm.runtime.artifact_check import ArtifactError, verify_artifact as check_files
from dlavm.target.isa import ISA_VERSION


def target_fingerprint(target) -> str:
    """sha256 of the target description (``Target.fingerprint``)."""
    return target.fingerprint()


def verify_artifact(directory, target=None) -> dict:
    """The manifest of a verified artifact (see module docstring).

    Format, version, paths and checksums are checked by
    :func:`dlavm.runtime.artifact_check.verify_artifact` (the twin of the C++
    ``Artifact::open``, same rules and messages); then the ISA major version,
    and with ``target`` (a Target) the fingerprint the artifact was compiled for.
    """
    m = check_files(directory)
    isa = f"{ISA_VERSION >> 16}.{ISA_VERSION & 0xFFFF}"
    if str(m.get("isa_version", "")).split(".")[0] != isa.split(".")[0]:
        raise ArtifactError(f"artifact {directory}: built for ISA {m.get('isa_version')}, "
                            f"this runtime speaks ISA {isa}")
    if target is not None:
        want = m.get("target", {}).get("fingerprint")
        if target_fingerprint(target) != want:
            raise ArtifactError(f"artifact {directory}: compiled for target '{m.get('target', {}).get('name')}' "
                                f"(fingerprint {str(want)[:12]}), not for '{target.name}' "
                                f"(fingerprint {target_fingerprint(target)[:12]})")
    return m


def artifact_target(manifest: dict):
    """The Target stored in ``manifest``, checked against its fingerprint."""
    from dlavm.target.schema import target_from_dict
    t = target_from_dict(dict(manifest["target"]["description"]))
    if target_fingerprint(t) != manifest["target"]["fingerprint"]:
        raise ArtifactError("manifest target description does not match its fingerprint")
    return t


def open_simulator(manifest: dict, **kwargs):
    """The default HAL: an in-process ``hw_models.Simulator`` for the artifact's target.

    Imported lazily: a deployment host passes its own HAL and never needs it.
    """
    from hw_models import Simulator
    return Simulator(artifact_target(manifest), **kwargs)


def load_runtime(directory, hal=None, mode: str = "aux", **sim_kwargs):
    """(manifest, Runtime) for a verified artifact on ``hal`` (default: the simulator)."""
    from dlavm.runtime.runtime import Runtime
    root = Path(directory)
    m = verify_artifact(root)
    if hal is None:
        hal = open_simulator(m, **sim_kwargs)
    return m, Runtime(m, lambda rel: (root / rel).read_bytes(), hal, mode)


__all__ = ["ArtifactError", "verify_artifact", "target_fingerprint", "artifact_target", "open_simulator",
           "load_runtime"]
