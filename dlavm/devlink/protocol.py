"""The device socket protocol (doc/socket.md): wire constants and framing.

One definition for both Python ends: the client
(:mod:`dlavm.devlink.socket_client`) and the simulator's server
(``hw_models.server``). ``clib/include/dlavm/protocol.h`` repeats the numbers
for C++ (a test compares the two). Needs only the standard library.
"""
from __future__ import annotations

import enum
import socket
import struct
import time

MAGIC = 0x4D564C44            # "DLVM" little-endian
PROTOCOL_VERSION = 2            # 2: BUSY status, per-frame deadline, concurrent clients (doc/socket.md)
DEFAULT_MAX_MESSAGE = 64 << 20  # bytes after the 4-byte length field
MIN_MAX_MESSAGE = 64            # the smallest message limit either end may announce or accept
NO_TIMEOUT = 0xFFFF_FFFF_FFFF_FFFF


class Op(enum.IntEnum):
    HELLO = 1
    WRITE_REG = 2
    READ_REG = 3
    WRITE_MEM = 4
    READ_MEM = 5
    WAIT = 6
    STATS = 7
    RESET = 8
    TRACE = 9


class Status(enum.IntEnum):
    OK = 0
    DEVICE_ERROR = 1   # the device refused the operation
    BAD_REQUEST = 2    # malformed message, unknown op, wrong size, version mismatch
    TIMEOUT = 3        # WAIT exceeded its timeout
    INTERNAL = 4       # the server failed unexpectedly
    BUSY = 5           # the device (or the server) is taken by other clients; the request did not run


class FrameLengthError(ConnectionError):
    """A length field outside ``1..limit``. The body is not read (it cannot be
    skipped safely), so the connection is unusable afterwards."""

    def __init__(self, length: int, limit: int):
        super().__init__(f"message of {length} bytes is outside 1..{limit} (the message limit)")
        self.length = length
        self.limit = limit


class FrameTimeoutError(ConnectionError):
    """A message that did not arrive whole within the frame deadline of its first byte.

    The rest of it may still arrive, so the stream cannot be resynchronised:
    the connection is unusable afterwards."""

    def __init__(self, received: int, expected: int, seconds: float):
        what = f"{received} of {expected} bytes" if expected > 4 else f"{received} of the 4 length bytes"
        super().__init__(f"message not complete within the frame deadline of {seconds:g} s after its first "
                         f"byte: {what} arrived")
        self.received = received
        self.expected = expected
        self.seconds = seconds


def read_frame(sock: socket.socket, limit: int, frame_timeout: float | None = None) -> bytes | None:
    """The next message's body (head byte + payload); None if the peer closed cleanly before it.

    The wait for the message's first byte is bounded by the socket's timeout
    (the idle timeout; ``TimeoutError``). With ``frame_timeout`` (seconds) the
    whole message must then arrive within that time of its first byte,
    however slowly it trickles in, or :class:`FrameTimeoutError` is raised
    (the socket's timeout is restored afterwards). The length field is
    checked against ``limit`` before a byte of the body is read: a peer
    cannot make this end allocate more than ``limit`` bytes. Raises
    :class:`FrameLengthError` for a length outside ``1..limit`` and
    ConnectionError if the peer closes mid-message. Reads in chunks of at
    most 1 MiB, so memory grows only with bytes actually received.
    """
    first = sock.recv(4)
    if not first:
        return None
    deadline = None if frame_timeout is None else time.monotonic() + frame_timeout
    own_timeout = sock.gettimeout()
    parts, got = [first], len(first)
    expected = 4

    def fill(upto: int) -> None:    # inside a message the deadline, not the idle timeout, bounds the reads
        nonlocal got
        while got < upto:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FrameTimeoutError(got, expected, frame_timeout)
                sock.settimeout(left)
            try:
                chunk = sock.recv(min(upto - got, 1 << 20))
            except socket.timeout:
                if deadline is None:
                    raise
                raise FrameTimeoutError(got, expected, frame_timeout) from None
            if not chunk:
                raise ConnectionError(f"connection closed after {got} of {expected} message bytes")
            parts.append(chunk)
            got += len(chunk)

    try:
        fill(4)
        head = b"".join(parts)
        (n,) = struct.unpack_from("<I", head)
        if not 1 <= n <= limit:
            raise FrameLengthError(n, limit)
        expected = 4 + n
        parts[:] = [head[4:]]
        fill(expected)
    finally:
        if deadline is not None:
            sock.settimeout(own_timeout)
    return b"".join(parts)


def frame(head: int, payload: bytes = b"") -> bytes:
    """One message: u32 length of (head byte + payload), head byte, payload."""
    return struct.pack("<IB", 1 + len(payload), head) + payload


def error_payload(kind: str, message: str) -> bytes:
    """An error reply's payload: u16 kind length, kind, message (doc/socket.md)."""
    k = kind.encode()[:0xFFFF]
    return struct.pack("<H", len(k)) + k + message.encode("utf-8", "replace")


def parse_error_payload(payload: bytes) -> tuple[str, str]:
    """(kind, message) of an error payload; a malformed one is kind ``DeviceError`` with the raw text."""
    if len(payload) >= 2:
        (k,) = struct.unpack_from("<H", payload)
        if 2 + k <= len(payload):
            return payload[2:2 + k].decode("utf-8", "replace"), payload[2 + k:].decode("utf-8", "replace")
    return "DeviceError", payload.decode("utf-8", "replace")


def negotiate_max_message(own: int, announced: int) -> int:
    """The message limit a connection uses: the smaller of this end's and the peer's.

    Raises ValueError (naming both values) when the peer announces less than
    :data:`MIN_MAX_MESSAGE`: every request must fit, and a memory copy split
    into zero-byte chunks would never finish.
    """
    if announced < MIN_MAX_MESSAGE:
        raise ValueError(f"the peer announces a message limit of {announced} bytes, below the protocol's "
                         f"minimum of {MIN_MAX_MESSAGE}")
    return min(own, announced)


__all__ = ["MAGIC", "PROTOCOL_VERSION", "DEFAULT_MAX_MESSAGE", "MIN_MAX_MESSAGE", "NO_TIMEOUT", "Op", "Status",
           "FrameLengthError", "FrameTimeoutError", "read_frame", "frame", "error_payload", "parse_error_payload",
           "negotiate_max_message"]
