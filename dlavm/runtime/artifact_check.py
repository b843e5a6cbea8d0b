"""Verify a compiled artifact directory before running it.

The Python twin of ``dlavm::Artifact::open`` (clib/src/artifact.cc): the
same rules, in the same order, with the same messages (a JSON syntax error's
detail aside), so a deployment refuses a damaged artifact the same way
whichever runtime loads it. Standard library only (no torch, no compiler).

Rules: DIR/manifest.json exists and holds a JSON object without duplicate
keys; ``"format"`` is ``"dlavm-artifact"``; ``"version"`` is the integer 1;
``"files"`` is an object ``{relative path: sha256 hex}`` whose paths stay
inside DIR (no absolute path, ``.``/``..``/empty component, backslash, nor
manifest.json itself); every listed file exists and matches its digest.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

ARTIFACT_FORMAT = "dlavm-artifact"
ARTIFACT_VERSION = 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ArtifactError(ValueError):
    """The artifact is missing, damaged or of another format; the message names the file or field."""


def _refuse(directory: str, why: str) -> ArtifactError:
    return ArtifactError(f"artifact {directory}: {why}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f'duplicate key "{k}"')
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _inside(rel: str) -> bool:
    if not rel or rel.startswith("/") or "\\" in rel or rel == "manifest.json" or rel.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _read_checked(directory: str, rel: str, digest: str) -> bytes:
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
        raise _refuse(directory, f'file "{rel}" is missing')
    data = Path(path).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise _refuse(directory, f'file "{rel}" does not match its sha256 (manifest {digest}, file {got})')
    return data


def verify_artifact(directory: str | os.PathLike) -> dict[str, Any]:
    """Check the artifact at ``directory`` (rules above) and return its manifest.

    Raises :class:`ArtifactError` naming the first violation.
    """
    d = os.fspath(directory)
    mpath = os.path.join(d, "manifest.json")
    if not os.path.isfile(mpath):
        raise _refuse(d, "manifest.json not found")
    try:
        manifest = json.loads(Path(mpath).read_bytes(), object_pairs_hook=_no_duplicates,
                              parse_constant=_no_constants)
    except ValueError as exc:
        raise _refuse(d, f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _refuse(d, "manifest.json must hold a JSON object")

    if "format" not in manifest:
        raise _refuse(d, 'manifest.json has no "format"')
    fmt = manifest["format"]
    if not isinstance(fmt, str):
        raise _refuse(d, f'"format" must be the string "{ARTIFACT_FORMAT}"')
    if fmt != ARTIFACT_FORMAT:
        raise _refuse(d, f'"format" is "{fmt}", expected "{ARTIFACT_FORMAT}"')

    if "version" not in manifest:
        raise _refuse(d, 'manifest.json has no "version"')
    version = manifest["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _refuse(d, f'"version" must be the integer {ARTIFACT_VERSION}')
    if version != ARTIFACT_VERSION:
        raise _refuse(d, f'"version" is {version}, this runtime reads version {ARTIFACT_VERSION}')

    if "files" not in manifest:
        raise _refuse(d, 'manifest.json has no "files"')
    files = manifest["files"]
    if not isinstance(files, dict):
        raise _refuse(d, '"files" must be an object {path: sha256}')
    for rel, digest in files.items():
        if not _inside(rel):
            raise _refuse(d, f'"files": path "{rel}" must be a relative path inside the artifact')
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise _refuse(d, f'"files": the sha256 of "{rel}" must be 64 lowercase hex digits')
    for rel, digest in files.items():
        _read_checked(d, rel, digest)
    return manifest


def read_artifact_file(directory: str | os.PathLike, manifest: dict[str, Any], rel: str) -> bytes:
    """The bytes of a file listed in ``manifest``, re-read and checked against its sha256."""
    d = os.fspath(directory)
    if rel not in manifest["files"]:
        raise _refuse(d, f'file "{rel}" is not listed in manifest.json')
    return _read_checked(d, rel, manifest["files"][rel])


__all__ = ["verify_artifact", "read_artifact_file", "ArtifactError", "ARTIFACT_FORMAT", "ARTIFACT_VERSION"]
