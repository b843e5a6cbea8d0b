"""The errors of reading an artifact."""
from __future__ import annotations


class ArtifactError(ValueError):
    """An artifact directory is missing, damaged or of another format; the message names the file or field."""


class ManifestError(ArtifactError):
    """A manifest breaks the schema: one line naming the source, the field path and the rule."""


__all__ = ["ArtifactError", "ManifestError"]
