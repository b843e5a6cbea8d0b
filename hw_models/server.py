"""A TCP server that puts a :class:`~hw_models.Simulator` behind the device
socket protocol (doc/socket.md), so the C++ runtime's ``sim://`` backend and
:class:`dlavm.devlink.socket_client.SocketDevice` drive the simulator like a
board.

One client at a time; clients connect one after another and share the
device state (as a board would) until one sends RESET. Every request gets a
reply; a malformed one gets a BAD_REQUEST reply and the server carries on.
With ``record=True`` the server keeps the host-access log of
:class:`RecordingHAL` (the "trace-level check": compare it with the log of an
in-process run).

    python -m hw_models.server --target tiny --port 0 --port-file port.txt [--once]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlavm.devlink.hal import DeviceHAL, HALError
from dlavm.devlink.protocol import (DEFAULT_MAX_MESSAGE, MAGIC, MIN_MAX_MESSAGE, NO_TIMEOUT, PROTOCOL_VERSION,
                                    FrameLengthError, Op, Status, error_payload, frame, read_frame)
from hw_models.simulator import Simulator


class BadRequest(Exception):
    """A request the protocol does not allow (answered with BAD_REQUEST)."""


class RecordingHAL(DeviceHAL):
    """Forwards every HAL call to ``inner`` and appends it to ``log``.

    Entries (JSON-friendly lists): ``["write_reg", addr, value]``,
    ``["read_reg", addr]``, ``["write_mem", addr, nbytes, sha256hex]``,
    ``["read_mem", addr, nbytes]``, ``["wait", timeout_cycles]``,
    ``["reset"]`` (by the server). A call is logged before it runs, so a
    failing call is in the log too.
    """

    def __init__(self, inner: DeviceHAL, log: list | None = None):
        self.inner = inner
        self.log: list[list[Any]] = [] if log is None else log

    def write_reg(self, addr: int, value: int) -> None:
        self.log.append(["write_reg", int(addr), int(value)])
        self.inner.write_reg(addr, value)

    def read_reg(self, addr: int) -> int:
        self.log.append(["read_reg", int(addr)])
        return self.inner.read_reg(addr)

    def write_mem(self, addr: int, data) -> None:
        raw = memoryview(data if isinstance(data, (bytes, bytearray, memoryview))
                         else np.ascontiguousarray(data).view(np.uint8)).cast("B")
        self.log.append(["write_mem", int(addr), len(raw), hashlib.sha256(raw).hexdigest()])
        self.inner.write_mem(addr, data)

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        self.log.append(["read_mem", int(addr), int(nbytes)])
        return self.inner.read_mem(addr, nbytes)

    def wait(self, timeout_cycles: int | None = None) -> None:
        self.log.append(["wait", timeout_cycles])
        self.inner.wait(timeout_cycles)

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def trace(self) -> dict[str, Any] | None:
        return self.inner.trace()


def _payload(payload: bytes, fmt: str, op: Op) -> tuple:
    if len(payload) != struct.calcsize(fmt):
        raise BadRequest(f"{op.name} payload is {len(payload)} bytes, expected {struct.calcsize(fmt)}")
    return struct.unpack(fmt, payload)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)).encode()


class SimServer:
    """Serves one simulator on ``host:port`` (port 0: the OS picks; see :attr:`port`).

    ``sim_options`` go to :class:`~hw_models.Simulator` (``check_uninit``,
    ``check_hazards``, ...). ``max_message`` bounds a request or reply (bytes
    after the length field); ``idle_timeout`` (s) drops a silent client.
    """

    def __init__(self, target: str = "vcu128", host: str = "127.0.0.1", port: int = 0, *,
                 functional: bool = True, record: bool = False, max_message: int = DEFAULT_MAX_MESSAGE,
                 idle_timeout: float = 600.0, **sim_options: Any):
        if max_message < MIN_MAX_MESSAGE:
            raise ValueError(f"max_message {max_message} is below the protocol's minimum of {MIN_MAX_MESSAGE} bytes")
        self.sim_args = dict(target=target, functional=functional, **sim_options)
        self.max_message = max_message
        self.idle_timeout = idle_timeout
        self.log: list[list[Any]] | None = [] if record else None
        self.device: DeviceHAL = self._fresh_device()
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self._conn: socket.socket | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def simulator(self) -> Simulator:
        return self.device.inner if isinstance(self.device, RecordingHAL) else self.device

    def _fresh_device(self) -> DeviceHAL:
        sim = Simulator(**self.sim_args)
        return sim if self.log is None else RecordingHAL(sim, self.log)

    # ------------------------------------------------------------ lifecycle
    def serve(self, once: bool = False) -> None:
        """Accept clients one after another until :meth:`close` (or, with
        ``once``, until the first client disconnects)."""
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                self._conn = conn
                try:
                    self.handle(conn)
                finally:
                    self._conn = None
                    conn.close()
                if once:
                    break
        finally:
            self._listener.close()

    def close(self) -> None:
        """Stop serving (safe from another thread); drops a connected client."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------ one client
    def handle(self, conn: socket.socket) -> None:
        """Answer requests on ``conn`` until it closes, times out or sends garbage it cannot skip."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(self.idle_timeout)
        try:
            while not self._stop.is_set():
                try:
                    body = read_frame(conn, self.max_message)
                except FrameLengthError as exc:
                    # The body cannot be skipped safely: answer, then hang up.
                    conn.sendall(self._error(Status.BAD_REQUEST, "ProtocolError", str(exc)))
                    return
                if body is None:
                    return
                conn.sendall(self.reply(body[0], body[1:]))
        except (OSError, ConnectionError):
            return   # client vanished or idled out; the next one may connect

    def _error(self, status: Status, kind: str, message: str) -> bytes:
        return frame(status, error_payload(kind, message)[: self.max_message - 1])

    def reply(self, op: int, payload: bytes) -> bytes:
        """The framed reply to one request (never raises)."""
        try:
            out = self.dispatch(op, payload)
            if 1 + len(out) > self.max_message:
                raise BadRequest(f"reply of {len(out)} bytes exceeds the message limit {self.max_message}")
            return frame(Status.OK, out)
        except BadRequest as exc:
            return self._error(Status.BAD_REQUEST, "ProtocolError", str(exc))
        except TimeoutError as exc:
            return self._error(Status.TIMEOUT, "TimeoutError", str(exc))
        except HALError as exc:
            return self._error(Status.DEVICE_ERROR, type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - a server bug must not take the connection down
            return self._error(Status.INTERNAL, type(exc).__name__, f"server error: {exc}")

    def dispatch(self, op: int, payload: bytes) -> bytes:
        """Run one request on the device; returns the OK payload, raises on error."""
        if op not in Op._value2member_map_:
            raise BadRequest(f"unknown request op {op}")
        op = Op(op)
        dev = self.device
        if op is Op.HELLO:
            magic, version = _payload(payload, "<IH", op)
            if magic != MAGIC:
                raise BadRequest(f"bad HELLO magic {magic:#x}")
            if version != PROTOCOL_VERSION:
                raise BadRequest(f"protocol version {version} is not supported (server speaks {PROTOCOL_VERSION})")
            return struct.pack("<HI", PROTOCOL_VERSION, self.max_message) + self.simulator.target.name.encode()
        if op is Op.WRITE_REG:
            addr, value = _payload(payload, "<II", op)
            dev.write_reg(addr, value)
            return b""
        if op is Op.READ_REG:
            (addr,) = _payload(payload, "<I", op)
            return struct.pack("<I", dev.read_reg(addr))
        if op is Op.WRITE_MEM:
            if len(payload) < 8:
                raise BadRequest(f"WRITE_MEM payload is {len(payload)} bytes, expected 8 + data")
            (addr,) = struct.unpack_from("<Q", payload)
            dev.write_mem(addr, payload[8:])
            return b""
        if op is Op.READ_MEM:
            addr, n = _payload(payload, "<QQ", op)
            if n > self.max_message - 1:
                raise BadRequest(f"READ_MEM of {n} bytes exceeds the message limit {self.max_message}; split it")
            return dev.read_mem(addr, n)
        if op is Op.WAIT:
            (timeout,) = _payload(payload, "<Q", op)
            dev.wait(None if timeout == NO_TIMEOUT else timeout)
            return b""
        if op is Op.STATS:
            _payload(payload, "", op)
            return _json_bytes(dev.stats())
        if op is Op.TRACE:
            _payload(payload, "", op)
            return _json_bytes(dev.trace())
        if op is Op.RESET:
            _payload(payload, "", op)
            if self.log is not None:
                self.log.append(["reset"])
            self.device = self._fresh_device()
            return b""
        raise BadRequest(f"request op {op.name} is not served")  # pragma: no cover - every Op is handled


def serve(target: str = "vcu128", host: str = "127.0.0.1", port: int = 0, functional: bool = True,
          ready: Callable[[int], None] | None = None, once: bool = False, **options: Any) -> SimServer:
    """Serve until closed (or, with ``once``, until the first client leaves).

    ``ready(port)`` is called once the socket listens. ``options`` go to
    :class:`SimServer`. Returns the server (its ``log`` when ``record=True``).
    """
    server = SimServer(target, host, port, functional=functional, **options)
    if ready is not None:
        ready(server.port)
    server.serve(once=once)
    return server


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw_models.server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="vcu128", help="target name or description file (default vcu128)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    ap.add_argument("--port-file", type=Path, help="write the chosen port here once listening")
    ap.add_argument("--once", action="store_true", help="exit after the first client disconnects")
    ap.add_argument("--timing-only", action="store_true", help="simulate timing only (no numerics)")
    ap.add_argument("--no-hazards", action="store_true", help="do not check for missing wait bits")
    ap.add_argument("--no-uninit", action="store_true", help="allow reads of never-written memory")
    ap.add_argument("--record", type=Path, help="write the host-access log (JSON) here on exit")
    ap.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE)
    ap.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before a silent client is dropped")
    args = ap.parse_args(argv)

    def ready(port: int) -> None:
        if args.port_file:
            _write_atomic(args.port_file, f"{port}\n")
        print(f"dlavm device server: target {args.target}, listening on {args.host}:{port}", flush=True)

    server = SimServer(args.target, args.host, args.port, functional=not args.timing_only,
                       record=args.record is not None, max_message=args.max_message,
                       idle_timeout=args.idle_timeout, check_hazards=not args.no_hazards,
                       check_uninit=not args.no_uninit)
    signal.signal(signal.SIGTERM, lambda *_: server.close())   # stop cleanly: the record is still written
    ready(server.port)
    try:
        server.serve(once=args.once)
    except KeyboardInterrupt:
        pass
    finally:
        if args.record:
            _write_atomic(args.record, json.dumps(server.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
