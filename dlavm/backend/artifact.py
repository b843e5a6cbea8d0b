"""Artifact directory (doc/backend.md "Artifact"): every file plus ``manifest.json``.

:func:`write_artifact` stores a :class:`~dlavm.backend.build.Build`: every
file, then the typed manifest (:class:`dlavm.artifact.Manifest`) with the
sha256 of each file under ``files``, then ``manifest.sha256`` (the
``sha256sum`` line of ``manifest.json``), so that the manifest itself is
checked when read. Reading and verifying is
:func:`dlavm.artifact.open_artifact`'s job, so a deployment host needs no
compiler.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dlavm.artifact import MANIFEST_SUM, manifest_sum_text, read_manifest

from .build import checksums


def write_artifact(build, directory, extra_files: dict | None = None) -> Path:
    """Write ``build`` (plus ``extra_files`` {relpath: bytes}) to ``directory``; returns the path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files = dict(build.files)
    files.update(extra_files or {})
    for rel, data in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    sums = dict(build.manifest.files)
    sums.update(checksums(extra_files or {}))
    manifest = dataclasses.replace(build.manifest, files=dict(sorted(sums.items())))
    text = manifest.dumps()
    read_manifest(text, source=f"the manifest written to {root}")  # the writer only writes what readers accept
    data = text.encode()
    (root / "manifest.json").write_bytes(data)
    (root / MANIFEST_SUM).write_text(manifest_sum_text(data))
    return root


__all__ = ["write_artifact"]
