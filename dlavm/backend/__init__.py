"""Backends: AUX streams + patch tables, artifact writer, compile report (doc/backend.md)."""
from .build import Build, build_module
from .stream import Stream, StreamError, build_stream

__all__ = ["Build", "build_module", "Stream", "StreamError", "build_stream"]
