"""The Python client of the device socket protocol (doc/socket.md).

:class:`SocketDevice` is a :class:`~dlavm.devlink.hal.DeviceHAL` whose device
sits behind a TCP socket: ``hw_models.server`` (the simulator) now, a board
server later. The wire constants and framing are :mod:`dlavm.devlink.protocol`.
Needs only the standard library and numpy.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import time
from typing import Any, Callable, TypeVar

import numpy as np

from dlavm.devlink.hal import DeviceHAL, HALError
from dlavm.devlink.protocol import (DEFAULT_MAX_MESSAGE, MAGIC, MIN_MAX_MESSAGE, NO_TIMEOUT, PROTOCOL_VERSION, Op,
                                    Status, negotiate_max_message, parse_error_payload, read_frame)


_FIRST_PAUSE, _LAST_PAUSE = 0.01, 0.5   # s between BUSY retries (doubling)
_T = TypeVar("_T")


def _seconds(name: str, value: float, zero_allowed: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not zero_allowed):
        raise ValueError(f"{name} {value!r} must be a finite number of seconds "
                         f"{'of at least 0' if zero_allowed else 'above 0'}")
    return float(value)


class ConnectionLostError(HALError):
    """The transport failed: no server, closed connection, timeout, garbled reply."""


class RemoteDeviceError(HALError):
    """The server answered with an error. ``kind`` names the device's exception
    class (``AddressError``, ``HazardError``, ...); ``status`` is the reply status."""

    def __init__(self, kind: str, message: str, status: Status = Status.DEVICE_ERROR):
        super().__init__(message)
        self.kind = kind
        self.status = status


class TargetMismatchError(HALError):
    """The device server implements another target than the one expected (the artifact's): its memory
    map, units and cycle counts are another device's, so nothing is run on it."""

    def __init__(self, expected: str, actual: str, where: str):
        super().__init__(f"the artifact was compiled for target '{expected}' but the device at {where} "
                         f"implements '{actual}'")
        self.expected = expected
        self.actual = actual


class DeviceBusyError(RemoteDeviceError):
    """The server answered BUSY: the device (or the server's client limit) is taken by other
    clients and the request did not run, so sending it again is safe."""

    def __init__(self, kind: str, message: str):
        super().__init__(kind, message, Status.BUSY)


class SocketDevice(DeviceHAL):
    """A device reached over the socket protocol at ``host:port``.

    Performs the HELLO handshake on construction (``target`` then names the
    device's target); a server speaking another protocol version is refused
    with :class:`ConnectionLostError`, and with ``expect_target`` (a target
    name: the artifact's) a server that announces another target is refused
    with :class:`TargetMismatchError`, before anything is written to it. The message limit is the smaller of
    ``max_message`` and the server's announced limit (:attr:`max_message`
    after the handshake): a reply announcing more is refused before its body
    is read, so a faulty or hostile server cannot make the client allocate
    more. Every call is one request/reply (large memory copies are split at
    the message limit). Device errors raise :class:`RemoteDeviceError` with
    the server's message, a WAIT past its timeout raises ``TimeoutError``,
    transport failures raise :class:`ConnectionLostError`. ``timeout``
    (seconds) bounds the wait for a reply and, separately, the time from a
    reply's first byte to its last.

    BUSY (the device is running another client's request, or the server is
    at its client limit): the request did not run. With ``busy_retry`` = 0
    (the default) it raises :class:`DeviceBusyError` at once; otherwise the
    client sends the request again (reconnecting when refused at the
    handshake), pausing 10 ms, doubling up to 0.5 s, until ``busy_retry``
    seconds after the first BUSY, then raises :class:`DeviceBusyError`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 600.0,
                 max_message: int = DEFAULT_MAX_MESSAGE, busy_retry: float = 0.0, expect_target: str | None = None):
        if max_message < MIN_MAX_MESSAGE:
            raise ValueError(f"max_message {max_message} is below the protocol's minimum of {MIN_MAX_MESSAGE} bytes")
        self.timeout = _seconds("timeout", timeout, zero_allowed=False)
        self.busy_retry = _seconds("busy_retry", busy_retry, zero_allowed=True)
        self.address = (host, int(port))
        self.expect_target = expect_target
        self.sock: socket.socket | None = None
        self._retrying_busy(lambda: self._connect(max_message))

    def _connect(self, max_message: int) -> None:
        """Connect and shake hands; closes the socket again if the handshake fails."""
        host, port = self.address
        try:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
        except OSError as exc:
            raise ConnectionLostError(f"cannot connect to device server {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.max_message = max_message
        try:
            try:
                reply = self._exchange(Op.HELLO, struct.pack("<IH", MAGIC, PROTOCOL_VERSION))
            except RemoteDeviceError as exc:
                if isinstance(exc, DeviceBusyError):
                    raise
                raise ConnectionLostError(f"device server {host}:{port} refused the handshake of protocol "
                                          f"version {PROTOCOL_VERSION}: {exc}") from None
            if len(reply) < 6:
                raise ConnectionLostError(f"short HELLO reply from {host}:{port}")
            version, announced = struct.unpack_from("<HI", reply)
            if version != PROTOCOL_VERSION:
                raise ConnectionLostError(f"device server {host}:{port} speaks protocol version {version}, this "
                                          f"client {PROTOCOL_VERSION}")
            try:
                self.max_message = negotiate_max_message(max_message, announced)
            except ValueError as exc:
                raise ConnectionLostError(f"device server {host}:{port}: {exc}") from None
            self.target = reply[6:].decode("utf-8", "replace")
            if self.expect_target is not None and self.target != self.expect_target:
                raise TargetMismatchError(self.expect_target, self.target, f"{host}:{port}")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ transport
    def _call(self, op: Op, payload: bytes = b"", data: bytes | memoryview = b"") -> bytes:
        """One request (sent again on BUSY within ``busy_retry``); returns the OK reply's payload."""
        return self._retrying_busy(lambda: self._exchange(op, payload, data))

    def _retrying_busy(self, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, repeated after a BUSY answer until ``busy_retry`` seconds past the first one."""
        pause, give_up = _FIRST_PAUSE, None
        while True:
            try:
                return attempt()
            except DeviceBusyError:
                now = time.monotonic()
                give_up = now + self.busy_retry if give_up is None else give_up
                if now >= give_up:
                    raise
                time.sleep(min(pause, give_up - now))
                pause = min(2 * pause, _LAST_PAUSE)

    def _exchange(self, op: Op, payload: bytes = b"", data: bytes | memoryview = b"") -> bytes:
        """Send op + payload (+ data, sent without copying) and return the OK reply's payload."""
        if self.sock is None:
            raise ConnectionLostError(f"device server {self.address[0]}:{self.address[1]}: connection already closed")
        try:
            self.sock.sendall(struct.pack("<IB", 1 + len(payload) + len(data), op) + payload)
            if len(data):
                self.sock.sendall(data)
            body = read_frame(self.sock, self.max_message, self.timeout)
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
        if status == Status.BUSY:
            raise DeviceBusyError(kind, message)
        raise RemoteDeviceError(kind, message, Status(status) if status in Status._value2member_map_ else status)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
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


__all__ = ["SocketDevice", "RemoteDeviceError", "DeviceBusyError", "ConnectionLostError", "TargetMismatchError"]
