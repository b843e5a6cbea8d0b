"""The one error of DevProc: refused input (a pipeline, a saved library, a value), one line."""
from __future__ import annotations


class DevprocError(ValueError):
    """A pipeline, a saved pipeline or an input DevProc refuses; the message is one line naming where."""
