"""The serving protocol (doc/serve.md, "The serving protocol"): wire constants, frames and payloads.

The one Python definition of the wire; ``clib/include/dlavm/serve_protocol.h``
repeats the numbers for the C++ server (a test compares the two). Standard
library only: the client (:mod:`dlavm.serve.client`) runs on hosts without
numpy or torch.

Every frame, both directions: ``u32 len`` (little-endian, the bytes that
follow, ``1 .. max_frame``), ``u8 type``, ``len - 1`` bytes of payload: a
UTF-8 JSON object, empty, or (TOKEN) ``u32 id, u32 token_id, text``.
"""
from __future__ import annotations

import enum
import ipaddress
import json
import socket
import struct
from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20        # bytes after the length field (the server's --max-frame default)
MIN_MAX_FRAME = 4096               # the smallest --max-frame a server accepts
MAX_MAX_FRAME = 1 << 30            # the largest --max-frame a server accepts
MAX_JSON_DEPTH = 16                # nesting of a JSON payload
MAX_ID = 0xFFFF_FFFF               # request ids and token ids are u32
MAX_SEED = (1 << 63) - 1           # a seed is 0 .. 2^63-1
MAX_STOP_STRINGS = 16              # GENERATE "stop": at most this many strings ...
MAX_STOP_BYTES = 256               # ... each of 1 .. this many UTF-8 bytes
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_PORT = 7070                # `dlavm serve`'s port when none is given
#: The environment variable holding the model server's shared secret (HELLO's token), read by
#: dlavm-server, the gateway and the dlavm commands when no option gives it (`ps` shows a command line).
TOKEN_ENV = "DLAVM_SERVE_TOKEN"

LENGTH = struct.Struct("<I")       # the length field
TOKEN_HEAD = struct.Struct("<II")  # TOKEN payload: request id, token id; the text piece follows


class FrameType(enum.IntEnum):
    HELLO = 1
    GENERATE = 2
    CANCEL = 3
    HEALTH = 4
    STATS = 5
    WELCOME = 129
    TOKEN = 130
    DONE = 131
    ERROR = 132
    HEALTH_OK = 133
    STATS_OK = 134


#: ERROR kinds (doc/serve.md "ERROR kinds"), and whether the server closes the connection after it.
ERROR_KINDS = ("bad_frame", "too_large", "unauthorized", "bad_request", "context", "busy", "device", "internal")
#: DONE stop reasons.
STOP_REASONS = ("max_new_tokens", "eos", "stop", "context", "cancelled")
#: HEALTH_OK status values.
HEALTH_STATUSES = ("ok", "device_down")

#: GENERATE's keys (no other key is accepted by the server).
GENERATE_KEYS = ("id", "prompt", "prompt_ids", "add_bos", "max_new_tokens", "temperature", "top_k", "top_p",
                 "seed", "stop", "eos_ids")
#: The keys of each JSON payload the server sends, with the JSON types each value may have
#: (``None``: JSON null). A payload with a key missing, another key or a value of another type is malformed.
_INT, _NUM, _STR, _BOOL, _LIST, _DICT, _NULL = "int", "number", "string", "bool", "list", "object", "null"
REPLY_SHAPES = {
    FrameType.WELCOME: {"protocol": (_INT,), "model": (_STR,), "target": (_STR,), "max_ctx": (_INT,),
                        "vocab": (_INT,), "max_frame": (_INT,), "max_queue": (_INT,), "tokenizer": (_BOOL,),
                        "bos_id": (_INT, _NULL), "eos_ids": (_LIST,), "add_bos": (_BOOL,),
                        "bos_token": (_STR, _NULL), "eos_token": (_STR, _NULL), "chat_template": (_STR, _NULL)},
    FrameType.DONE: {"id": (_INT,), "stop_reason": (_STR,), "prompt_tokens": (_INT,), "new_tokens": (_INT,),
                     "text_tail": (_STR,), "seed": (_INT, _NULL), "sim_ms": (_NUM, _NULL), "host_ms": (_NUM,),
                     "queue_ms": (_NUM,)},
    FrameType.ERROR: {"id": (_INT, _NULL), "kind": (_STR,), "message": (_STR,)},
    FrameType.HEALTH_OK: {"status": (_STR,), "queue": (_INT,), "running": (_BOOL,)},
}


class FrameError(ConnectionError):
    """A frame this end cannot accept (length outside its limit, truncated, malformed payload).

    The byte stream cannot be trusted afterwards: the connection must be closed."""


def encode_frame(ftype: int, payload: bytes = b"") -> bytes:
    """One frame: u32 length of (type byte + payload), type byte, payload."""
    return LENGTH.pack(1 + len(payload)) + bytes([int(ftype)]) + payload


def encode_json(ftype: int, obj: dict | None) -> bytes:
    """A frame whose payload is ``obj`` as compact UTF-8 JSON (``None``: an empty payload).

    ValueError for a value JSON cannot carry (NaN, infinity)."""
    if obj is None:
        return encode_frame(ftype)
    return encode_frame(ftype, json.dumps(obj, ensure_ascii=False, allow_nan=False,
                                          separators=(",", ":")).encode("utf-8"))


def encode_token(request_id: int, token_id: int, text: str) -> bytes:
    """A TOKEN frame."""
    return encode_frame(FrameType.TOKEN, TOKEN_HEAD.pack(request_id, token_id) + text.encode("utf-8"))


def decode_token(payload: bytes) -> tuple[int, int, str]:
    """``(request id, token id, text)`` of a TOKEN payload; :class:`FrameError` when it is shorter than
    8 bytes or its text is not UTF-8 (the server sends whole characters only)."""
    if len(payload) < TOKEN_HEAD.size:
        raise FrameError(f"TOKEN frame of {len(payload)} payload bytes: it needs at least {TOKEN_HEAD.size} "
                         "(u32 request id, u32 token id)")
    rid, tid = TOKEN_HEAD.unpack_from(payload)
    try:
        text = payload[TOKEN_HEAD.size:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError(f"TOKEN frame of request {rid}: its text is not UTF-8 ({e.reason} at byte "
                         f"{e.start})") from None
    return rid, tid, text


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f'duplicate key "{k}"')
        out[k] = v
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _depth(v, level: int = 1) -> int:
    if isinstance(v, dict):
        return max([level] + [_depth(x, level + 1) for x in v.values()])
    if isinstance(v, list):
        return max([level] + [_depth(x, level + 1) for x in v])
    return level


def decode_json(payload: bytes, what: str) -> dict:
    """The JSON object of a payload (``what`` names the frame for messages); :class:`FrameError` when it
    is not UTF-8 JSON holding one object, has a duplicate key, NaN/Infinity or nests deeper than
    :data:`MAX_JSON_DEPTH`."""
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FrameError(f"{what} payload is not a UTF-8 JSON object: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(obj, dict):
        raise FrameError(f"{what} payload is a JSON {type(obj).__name__}, not an object")
    if _depth(obj) > MAX_JSON_DEPTH:
        raise FrameError(f"{what} payload nests deeper than {MAX_JSON_DEPTH}")
    return obj


def _json_type(v: Any) -> str:
    if v is None:
        return _NULL
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, int):
        return _INT
    if isinstance(v, float):
        return _NUM
    if isinstance(v, str):
        return _STR
    if isinstance(v, list):
        return _LIST
    return _DICT


def check_shape(obj: dict, ftype: FrameType) -> dict:
    """``obj`` if it has exactly the keys of :data:`REPLY_SHAPES` for ``ftype``, each of an allowed JSON
    type (an int is also a number); else :class:`FrameError` naming the key."""
    shape = REPLY_SHAPES[ftype]
    name = ftype.name
    for k in obj:
        if k not in shape:
            raise FrameError(f"{name} frame has the unknown key {k!r}")
    for k, types in shape.items():
        if k not in obj:
            raise FrameError(f"{name} frame lacks the key {k!r}")
        t = _json_type(obj[k])
        if t not in types and not (t == _INT and _NUM in types):
            raise FrameError(f"{name} frame: {k!r} is a JSON {t}, not {' or '.join(types)}")
    return obj


def read_frame(sock: socket.socket, limit: int) -> tuple[int, bytes] | None:
    """``(type, payload)`` of the next frame, or None when the peer closed cleanly before it.

    The length field is checked against ``1 .. limit`` before a byte of the body
    is read (:class:`FrameError`); a peer that closes mid-frame raises
    :class:`FrameError` too. Every read is bounded by the socket's timeout
    (``TimeoutError``). Reads the body in chunks of at most 1 MiB, so memory
    grows only with bytes that arrived."""
    head = _recv_exact(sock, LENGTH.size, allow_eof=True)
    if head is None:
        return None
    (n,) = LENGTH.unpack(head)
    if not 1 <= n <= limit:
        raise FrameError(f"frame of {n} bytes is outside 1..{limit} (the frame limit)")
    body = _recv_exact(sock, n, allow_eof=False)
    return body[0], body[1:]


def _recv_exact(sock: socket.socket, n: int, allow_eof: bool) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            if got == 0 and allow_eof:
                return None
            raise FrameError(f"connection closed after {got} of {n} bytes of a frame")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


__all__ = ["PROTOCOL_VERSION", "DEFAULT_MAX_FRAME", "MIN_MAX_FRAME", "MAX_MAX_FRAME", "MAX_JSON_DEPTH", "MAX_ID", "MAX_SEED",
           "MAX_STOP_STRINGS", "MAX_STOP_BYTES", "DEFAULT_MAX_NEW_TOKENS", "DEFAULT_PORT", "TOKEN_ENV", "FrameType",
           "ERROR_KINDS", "STOP_REASONS", "HEALTH_STATUSES", "GENERATE_KEYS", "REPLY_SHAPES", "FrameError",
           "encode_frame", "encode_json", "encode_token", "decode_token", "decode_json", "check_shape",
           "read_frame"]


def parse_address(value: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address); ValueError naming the rule."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT with a port in [1, 65535] (e.g. 127.0.0.1:7070)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost`` or a loopback address): the servers listen
    elsewhere only with a shared secret (doc/serve.md, "Security")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
