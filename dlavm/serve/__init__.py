"""Serving a compiled LLM over sockets (doc/serve.md): the serving protocol, its Python client, the
build of the ``dlavm-server`` executable for an artifact, and the OpenAI-compatible gateway.

``from dlavm.serve import Client`` loads the standard library only (the client runs on hosts without
numpy or torch); :mod:`dlavm.serve.build` and :mod:`dlavm.serve.gateway` are imported by name.
"""
from __future__ import annotations

from .client import (BadRequestError, BusyError, Client, Completion, ConnectionLostError, ContextError,
                     DeviceError, FrameTooLargeError, InternalError, ProtocolError, ServeError, ServeTimeoutError,
                     Token, TokenStream, UnauthorizedError)

__all__ = ["Client", "Completion", "Token", "TokenStream", "ServeError", "ProtocolError", "FrameTooLargeError",
           "UnauthorizedError", "BadRequestError", "ContextError", "BusyError", "DeviceError", "InternalError",
           "ConnectionLostError", "ServeTimeoutError"]
