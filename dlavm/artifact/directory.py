"""An artifact directory: ``manifest.json`` read by :func:`~dlavm.artifact.read_manifest`, files checked.

:func:`open_artifact` refuses, with :class:`~dlavm.artifact.errors.ArtifactError`
naming the file or field, a directory whose manifest breaks the schema
(messages ``artifact DIR: manifest.json: FIELD: RULE``), one whose listed file
is missing or does not match its sha256, or a stream file whose size is not
its ``count`` entries. ``dlavm::Artifact::open`` (clib/src/artifact.cc)
applies the same rules with the same messages to the fields it reads.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dlavm.target.isa import INSN_BYTES

from .errors import ArtifactError
from .reader import read_manifest
from .schema import Manifest


def _refuse(directory: str, why: str) -> ArtifactError:
    return ArtifactError(f"artifact {directory}: {why}")


def _read_checked(directory: str, rel: str, digest: str) -> bytes:
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
        raise _refuse(directory, f'file "{rel}" is missing')
    data = Path(path).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise _refuse(directory, f'file "{rel}" does not match its sha256 (manifest {digest}, file {got})')
    return data


def open_artifact(directory: str | os.PathLike) -> Manifest:
    """The manifest of the artifact at ``directory`` after every check (module docstring)."""
    d = os.fspath(directory)
    mpath = os.path.join(d, "manifest.json")
    if not os.path.isfile(mpath):
        raise _refuse(d, "manifest.json not found")
    m = read_manifest(Path(mpath).read_bytes(), source=f"artifact {d}: manifest.json")
    sizes = {}
    for rel, digest in m.files.items():
        sizes[rel] = len(_read_checked(d, rel, digest))
    for name, s in m.streams.items():
        if sizes[s.file] != s.count * INSN_BYTES:
            raise _refuse(d, f"manifest.json: streams.{name}.file: holds {sizes[s.file]} bytes, "
                             f"its count ({s.count}) needs {s.count * INSN_BYTES}")
    return m


def read_artifact_file(directory: str | os.PathLike, manifest: Manifest, rel: str) -> bytes:
    """The bytes of a file listed in ``manifest``, re-read and checked against its sha256."""
    d = os.fspath(directory)
    if rel not in manifest.files:
        raise _refuse(d, f'file "{rel}" is not listed in manifest.json')
    return _read_checked(d, rel, manifest.files[rel])


__all__ = ["open_artifact", "read_artifact_file"]
