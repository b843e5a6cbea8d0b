"""Artifact directory, format version 1 (doc/compiler.md, doc/backend.md).

:func:`write_artifact` stores a :class:`~dlavm.backend.build.Build`: every
file, then ``manifest.json`` with the sha256 of each file under ``files``.
Reading and verifying is the runtime's job (:mod:`dlavm.runtime.loader`), so a
deployment host needs no compiler.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def write_artifact(build, directory, extra_files: dict | None = None) -> Path:
    """Write ``build`` (plus ``extra_files`` {relpath: bytes}) to ``directory``; returns the path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files = dict(build.files)
    files.update(extra_files or {})
    sums = {}
    for rel, data in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    manifest = dict(build.manifest)
    manifest["files"] = sums
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return root


__all__ = ["write_artifact"]
