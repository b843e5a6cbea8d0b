"""The device socket protocol (doc/socket.md) and its Python client.

:class:`SocketDevice` is a :class:`~dlavm.runtime.hal.DeviceHAL` whose device
sits behind a TCP socket: ``hw_models.server`` (the simulator) now, a board
server later. The wire constants and framing live here, once, for both ends
of the Python side; ``clib/include/dlavm/protocol.h`` repeats them for C++
(a test compares the two). Needs only the standard library and numpy.
"""
from __future__ import annotations

import enum
import json
import socket
import struct
from typing import Any

import numpy as np

from dlavm.runtime.hal import DeviceHAL, HALError

MAGIC = 0x4D564C44            # "DLVM" little-endian
PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE = 64 << 20  # bytes after the 4-byte length field
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


class ConnectionLostError(HALError):
    """The transport failed: no server, closed connection, timeout, garbled reply."""


class RemoteDeviceError(HALError):
    """The server answered with an error. ``kind`` names the device's exception
    class (``AddressError``, ``HazardError``, ...); ``status`` is the reply status."""

    def __init__(self, kind: str, message: str, status: Status = Status.DEVICE_ERROR):
        super().__init__(message)
        self.kind = kind
        self.status = status


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; None if the peer closed before the first byte.

    Raises ConnectionError if it closes part-way.
    """
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def frame(head: int, payload: bytes = b"") -> bytes:
    """One message: u32 length of (head byte + payload), head byte, payload."""
    return struct.pack("<IB", 1 + len(payload), head) + payload


def error_payload(kind: str, message: str) -> bytes:
    k = kind.encode()[:0xFFFF]
    return struct.pack("<H", len(k)) + k + message.encode("utf-8", "replace")


def parse_error_payload(payload: bytes) -> tuple[str, str]:
    if len(payload) >= 2:
        (k,) = struct.unpack_from("<H", payload)
        if 2 + k <= len(payload):
            return payload[2:2 + k].decode("utf-8", "replace"), payload[2 + k:].decode("utf-8", "replace")
    return "DeviceError", payload.decode("utf-8", "replace")


class SocketDevice(DeviceHAL):
    """A device reached over the socket protocol at ``host:port``.

    Performs the HELLO handshake on construction (``target`` then names the
    device's target). Every call is one request/reply (large memory copies
    are split at the server's message limit). Device errors raise
    :class:`RemoteDeviceError` with the server's message, a WAIT past its
    timeout raises ``TimeoutError``, transport failures raise
    :class:`ConnectionLostError`. ``timeout`` (seconds) bounds every reply.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 600.0):
        self.address = (host, int(port))
        try:
            self.sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as exc:
            raise ConnectionLostError(f"cannot connect to device server {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.max_message = DEFAULT_MAX_MESSAGE
        reply = self._call(Op.HELLO, struct.pack("<IH", MAGIC, PROTOCOL_VERSION))
        if len(reply) < 6:
            raise ConnectionLostError(f"short HELLO reply from {host}:{port}")
        version, self.max_message = struct.unpack_from("<HI", reply)
        if version != PROTOCOL_VERSION:
            raise ConnectionLostError(f"device server speaks protocol {version}, this client {PROTOCOL_VERSION}")
        self.target = reply[6:].decode()

    # ------------------------------------------------------------ transport
    def _call(self, op: Op, payload: bytes = b"", data: bytes | memoryview = b"") -> bytes:
        """Send op + payload (+ data, sent without copying) and return the OK reply's payload."""
        try:
            self.sock.sendall(struct.pack("<IB", 1 + len(payload) + len(data), op) + payload)
            if len(data):
                self.sock.sendall(data)
            head = recv_exact(self.sock, 4)
            if head is None:
                raise ConnectionError("connection closed by the server")
            (n,) = struct.unpack("<I", head)
            if not 1 <= n <= self.max_message:
                raise ConnectionError(f"reply of {n} bytes is outside 1..{self.max_message}")
            body = recv_exact(self.sock, n)
            if body is None:
                raise ConnectionError("connection closed by the server")
        except (OSError, ConnectionError) as exc:
            self.close()
            raise ConnectionLostError(f"device server {self.address[0]}:{self.address[1]}: {exc}") from None
        status = body[0]
        if status == Status.OK:
            return body[1:]
        kind, message = parse_error_payload(body[1:])
        if status == Status.TIMEOUT:
            raise TimeoutError(message)
        raise RemoteDeviceError(kind, message, Status(status) if status in Status._value2member_map_ else status)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "SocketDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ HAL
    def write_reg(self, addr: int, value: int) -> None:
        if not (0 <= addr <= 0xFFFFFFFF and 0 <= value <= 0xFFFFFFFF):
            raise RemoteDeviceError("UndefinedRegisterError",
                                    f"register write {addr:#x} <- {value}: address and value must fit in 32 bits")
        self._call(Op.WRITE_REG, struct.pack("<II", addr, value))

    def read_reg(self, addr: int) -> int:
        if not 0 <= addr <= 0xFFFFFFFF:
            raise RemoteDeviceError("UndefinedRegisterError", f"register address {addr:#x} does not fit in 32 bits")
        reply = self._call(Op.READ_REG, struct.pack("<I", addr))
        return struct.unpack("<I", reply)[0]

    @staticmethod
    def _check_addr(addr: int, nbytes: int) -> None:
        if not (0 <= addr and 0 <= nbytes and addr + nbytes <= 1 << 64):
            raise RemoteDeviceError("AddressError", f"host access of {nbytes} bytes at {addr:#x} is outside "
                                    "the 64-bit address space")

    def write_mem(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = memoryview(data if isinstance(data, (bytes, bytearray, memoryview))
                         else np.ascontiguousarray(data).view(np.uint8)).cast("B")
        self._check_addr(addr, len(buf))
        chunk = self.max_message - 9
        done = 0
        while True:
            n = min(len(buf) - done, chunk)
            self._call(Op.WRITE_MEM, struct.pack("<Q", addr + done), buf[done:done + n])
            done += n
            if done >= len(buf):
                return

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        self._check_addr(addr, nbytes)
        chunk = self.max_message - 1
        parts, done = [], 0
        while True:
            n = min(nbytes - done, chunk)
            part = self._call(Op.READ_MEM, struct.pack("<QQ", addr + done, n))
            if len(part) != n:
                raise ConnectionLostError(f"READ_MEM reply has {len(part)} bytes, expected {n}")
            parts.append(part)
            done += n
            if done >= nbytes:
                return b"".join(parts)

    def wait(self, timeout_cycles: int | None = None) -> None:
        self._call(Op.WAIT, struct.pack("<Q", NO_TIMEOUT if timeout_cycles is None else timeout_cycles))

    def stats(self) -> dict[str, Any]:
        return json.loads(self._call(Op.STATS))

    def trace(self) -> dict[str, Any] | None:
        return json.loads(self._call(Op.TRACE))

    def reset(self) -> None:
        """Return the device to its power-on state."""
        self._call(Op.RESET)


__all__ = ["SocketDevice", "RemoteDeviceError", "ConnectionLostError", "Op", "Status", "MAGIC",
           "PROTOCOL_VERSION", "DEFAULT_MAX_MESSAGE", "NO_TIMEOUT"]
