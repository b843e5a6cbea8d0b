"""A TCP server that puts a :class:`~hw_models.Simulator` behind the device
socket protocol (doc/socket.md), so the C++ runtime's ``sim://`` backend and
:class:`dlavm.devlink.socket_client.SocketDevice` drive the simulator like a
board.

Clients are served concurrently, each connection by its own thread, and
share the one device (as a board would) until one sends RESET. The device
runs one request at a time: a request that cannot start within the busy
timeout gets a BUSY reply instead of silence, and so does a client beyond
the client limit. A message must arrive whole within the frame deadline of
its first byte, so a client that trickles or stalls holds only its own
connection, and only until the deadline. Every request gets a reply; a
malformed one gets a BAD_REQUEST reply and the server carries on. With
``record=True`` the server keeps the host-access log of
:class:`RecordingHAL` (the "trace-level check": compare it with the log of an
in-process run).

    python -m hw_models.server --target tiny --port 0 --port-file port.txt [--once]
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlavm.devlink.hal import DeviceHAL, HALError
from dlavm.devlink.protocol import (DEFAULT_MAX_MESSAGE, MAGIC, MIN_MAX_MESSAGE, NO_TIMEOUT, PROTOCOL_VERSION,
                                    FrameLengthError, FrameTimeoutError, Op, Status, error_payload, frame,
                                    read_frame)
from hw_models.simulator import Simulator

DEFAULT_IDLE_TIMEOUT = 600.0   # s a client may stay silent between messages
DEFAULT_FRAME_TIMEOUT = 60.0   # s a message may take from its first byte to its last
DEFAULT_BUSY_TIMEOUT = 1.0     # s a request waits for the device before it is answered BUSY
DEFAULT_MAX_CLIENTS = 8        # connections served at once; more are answered BUSY

# Request payload layouts (doc/socket.md, "Requests"); WRITE_MEM is "<Q" followed by the data.
REQUEST_FORMATS: dict[Op, str] = {Op.HELLO: "<IH", Op.WRITE_REG: "<II", Op.READ_REG: "<I", Op.READ_MEM: "<QQ",
                                  Op.WAIT: "<Q", Op.STATS: "", Op.RESET: "", Op.TRACE: ""}


class BadRequest(Exception):
    """A request the protocol does not allow (answered with BAD_REQUEST)."""


class DeviceBusy(Exception):
    """The device or the server is taken by other clients; the request did not run (answered with BUSY)."""


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


def _positive_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} {value!r} must be a positive, finite number of seconds")
    return float(value)


_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}


def _hang_up(conn: socket.socket, seconds: float = 1.0, most: int = 1 << 20) -> None:
    """Close our side after a final reply, reading (and dropping) what the client still sends for a
    moment: closing with unread bytes makes the kernel reset the connection, which can destroy the
    reply before the client reads it."""
    try:
        conn.shutdown(socket.SHUT_WR)
        end, dropped = time.monotonic() + seconds, 0
        while dropped < most and (left := end - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                return
            dropped += len(chunk)
    except OSError:
        pass


class SimServer:
    """Serves one simulator on ``host:port`` (port 0: the OS picks; see :attr:`port`).

    ``sim_options`` go to :class:`~hw_models.Simulator` (``check_uninit``,
    ``check_hazards``, ...). ``max_message`` bounds a request or reply (bytes
    after the length field). Each connection is served by its own thread, at
    most ``max_clients`` at once; the device runs one request at a time.
    Deadlines (seconds): ``idle_timeout`` drops a client silent between
    messages, ``frame_timeout`` drops one whose message is not complete that
    long after its first byte (and bounds sending a reply), ``busy_timeout``
    is how long a request waits for the device before it gets BUSY.
    """

    def __init__(self, target: str = "vcu128", host: str = "127.0.0.1", port: int = 0, *,
                 functional: bool = True, record: bool = False, max_message: int = DEFAULT_MAX_MESSAGE,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT, max_clients: int = DEFAULT_MAX_CLIENTS,
                 **sim_options: Any):
        if max_message < MIN_MAX_MESSAGE:
            raise ValueError(f"max_message {max_message} is below the protocol's minimum of {MIN_MAX_MESSAGE} bytes")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ValueError(f"max_clients {max_clients!r} must be an integer of at least 1")
        self.idle_timeout = _positive_seconds("idle_timeout", idle_timeout)
        self.frame_timeout = _positive_seconds("frame_timeout", frame_timeout)
        self.busy_timeout = _positive_seconds("busy_timeout", busy_timeout)
        self.max_clients = max_clients
        self.sim_args = dict(target=target, functional=functional, **sim_options)
        self.max_message = max_message
        self.log: list[list[Any]] | None = [] if record else None
        self.device: DeviceHAL = self._fresh_device()
        self.target_name = self.simulator.target.name   # what HELLO announces
        self._device_lock = threading.Lock()            # one request on the device at a time
        self._running: tuple[str, float] | None = None  # (op, monotonic start) of the request on the device
        self._guard = threading.Lock()                  # guards the three fields below
        self._clients: set[socket.socket] = set()       # connections being served
        self._refused: set[socket.socket] = set()       # connections past the client limit, being answered BUSY
        self._workers: list[threading.Thread] = []
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
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

    def recorded(self) -> list[list[Any]]:
        """A copy of the host-access log (``record=True``), taken between two requests."""
        if self.log is None:
            raise ValueError("this server does not record (construct it with record=True)")
        with self._device_lock:
            return list(self.log)

    # ------------------------------------------------------------ lifecycle
    def serve(self, once: bool = False) -> None:
        """Accept clients until :meth:`close` (or, with ``once``, until the
        first served client disconnects), each served by its own thread.
        On return every connection is closed and the threads have finished
        (a thread still running a device request is waited for up to
        ``frame_timeout`` seconds)."""
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError as exc:
                    if self._stop.is_set():
                        break
                    if exc.errno in _TRANSIENT_ACCEPT_ERRORS:   # out of descriptors or memory: others may leave
                        time.sleep(0.1)
                        continue
                    raise
                self._start_worker(conn, once)
        finally:
            self._listener.close()
            self.close()
            with self._guard:
                workers = list(self._workers)
            end = time.monotonic() + self.frame_timeout
            for worker in workers:
                worker.join(timeout=max(0.0, end - time.monotonic()))

    def _start_worker(self, conn: socket.socket, once: bool) -> None:
        with self._guard:
            self._workers = [w for w in self._workers if w.is_alive()]
            if len(self._clients) < self.max_clients:
                self._clients.add(conn)
                worker = threading.Thread(target=self._serve_client, args=(conn, once), daemon=True)
            elif len(self._refused) < self.max_clients:
                self._refused.add(conn)
                worker = threading.Thread(target=self._refuse, args=(conn,), daemon=True)
            else:
                worker = None
            if worker is not None:
                self._workers.append(worker)
        if worker is None:
            conn.close()   # past twice the client limit: not even a BUSY reply
        else:
            worker.start()

    def _serve_client(self, conn: socket.socket, once: bool) -> None:
        try:
            self.handle(conn)
        finally:
            with self._guard:
                self._clients.discard(conn)
            conn.close()
            if once:
                self._stop.set()

    def _refuse(self, conn: socket.socket) -> None:
        """Answer a connection past the client limit: BUSY to its first request, then hang up.

        The refusal slot is given back once the request is read, before the reply is sent (and
        before the hang-up reads what the client still sends, at most 1 s): a client that asks again
        at once after its BUSY gets BUSY again (or a place), never a connection closed for being
        past twice the limit."""
        try:
            conn.settimeout(min(self.idle_timeout, self.frame_timeout))
            if read_frame(conn, self.max_message, self.frame_timeout) is not None:
                with self._guard:
                    self._refused.discard(conn)
                conn.sendall(self._error(Status.BUSY, "DeviceBusyError",
                                         f"the device server already serves {self.max_clients} clients (its "
                                         f"client limit); connect again later"))
                _hang_up(conn)
        except (OSError, ConnectionError):
            pass
        finally:
            with self._guard:
                self._refused.discard(conn)
            conn.close()

    def close(self) -> None:
        """Stop serving (safe from another thread); drops every connected client."""
        self._stop.set()
        with self._guard:
            clients = [*self._clients, *self._refused]
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------ one client
    def handle(self, conn: socket.socket) -> None:
        """Answer requests on ``conn`` until it closes, idles out, misses a
        frame deadline or sends garbage it cannot skip."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stop.is_set():
                conn.settimeout(self.idle_timeout)   # between messages; read_frame applies the frame deadline
                try:
                    body = read_frame(conn, self.max_message, self.frame_timeout)
                except (FrameLengthError, FrameTimeoutError) as exc:
                    # The rest of the stream cannot be resynchronised: answer, then hang up.
                    conn.settimeout(self.frame_timeout)
                    conn.sendall(self._error(Status.BAD_REQUEST, "ProtocolError", str(exc)))
                    _hang_up(conn)
                    return
                if body is None:
                    return
                out = self.reply(body[0], body[1:])
                # A client that does not read its replies holds only its own connection, and not for long.
                conn.settimeout(self.frame_timeout)
                conn.sendall(out)
        except (OSError, ConnectionError):
            return   # client vanished or idled out; the others carry on

    def _error(self, status: Status, kind: str, message: str) -> bytes:
        return frame(status, error_payload(kind, message)[: self.max_message - 1])

    def reply(self, op: int, payload: bytes) -> bytes:
        """The framed reply to one request (never raises; safe from several threads)."""
        try:
            out = self.dispatch(op, payload)
            if 1 + len(out) > self.max_message:
                raise BadRequest(f"reply of {len(out)} bytes exceeds the message limit {self.max_message}")
            return frame(Status.OK, out)
        except BadRequest as exc:
            return self._error(Status.BAD_REQUEST, "ProtocolError", str(exc))
        except DeviceBusy as exc:
            return self._error(Status.BUSY, "DeviceBusyError", str(exc))
        except TimeoutError as exc:
            return self._error(Status.TIMEOUT, "TimeoutError", str(exc))
        except HALError as exc:
            return self._error(Status.DEVICE_ERROR, type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - a server bug must not take the connection down
            return self._error(Status.INTERNAL, type(exc).__name__, f"server error: {exc}")

    def dispatch(self, op: int, payload: bytes) -> bytes:
        """Run one request on the device; returns the OK payload, raises on error.

        The payload is checked before the request waits for the device, so
        a malformed request is refused at once even while the device is busy.
        """
        if op not in Op._value2member_map_:
            raise BadRequest(f"unknown request op {op}")
        op = Op(op)
        if op is Op.WRITE_MEM:
            if len(payload) < 8:
                raise BadRequest(f"WRITE_MEM payload is {len(payload)} bytes, expected 8 + data")
            args: tuple = (struct.unpack_from("<Q", payload)[0], payload[8:])
        else:
            args = _payload(payload, REQUEST_FORMATS[op], op)
        if op is Op.HELLO:
            return self._hello(*args)
        if op is Op.READ_MEM and args[1] > self.max_message - 1:
            raise BadRequest(f"READ_MEM of {args[1]} bytes exceeds the message limit {self.max_message}; split it")
        self._take_device(op)
        try:
            return self._run(op, args)
        finally:
            self._running = None
            self._device_lock.release()

    def _hello(self, magic: int, version: int) -> bytes:
        if magic != MAGIC:
            raise BadRequest(f"bad HELLO magic {magic:#x}")
        if version != PROTOCOL_VERSION:
            raise BadRequest(f"protocol version {version} is not supported: this device server speaks version "
                             f"{PROTOCOL_VERSION} (doc/socket.md, 'Versions')")
        return struct.pack("<HI", PROTOCOL_VERSION, self.max_message) + self.target_name.encode()

    def _take_device(self, op: Op) -> None:
        """Hold the device for one request (release ``_device_lock`` after it), or raise
        DeviceBusy after ``busy_timeout`` seconds."""
        if not self._device_lock.acquire(timeout=self.busy_timeout):
            running = self._running
            holder = (f"another client's {running[0]} has held it for {time.monotonic() - running[1]:.1f} s"
                      if running is not None else "another client's request holds it")
            raise DeviceBusy(f"device busy: {holder}; this {op.name} waited {self.busy_timeout:g} s (the busy "
                             f"timeout) and did not run: send it again")
        self._running = (op.name, time.monotonic())

    def _run(self, op: Op, args: tuple) -> bytes:
        dev = self.device
        if op is Op.WRITE_REG:
            dev.write_reg(*args)
            return b""
        if op is Op.READ_REG:
            return struct.pack("<I", dev.read_reg(*args))
        if op is Op.WRITE_MEM:
            dev.write_mem(*args)
            return b""
        if op is Op.READ_MEM:
            return dev.read_mem(*args)
        if op is Op.WAIT:
            (timeout,) = args
            dev.wait(None if timeout == NO_TIMEOUT else timeout)
            return b""
        if op is Op.STATS:
            return _json_bytes(dev.stats())
        if op is Op.TRACE:
            return _json_bytes(dev.trace())
        if op is Op.RESET:
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
    ap.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                    help="seconds a client may stay silent between messages (default %(default)g)")
    ap.add_argument("--frame-timeout", type=float, default=DEFAULT_FRAME_TIMEOUT,
                    help="seconds a message may take from its first byte to its last (default %(default)g)")
    ap.add_argument("--busy-timeout", type=float, default=DEFAULT_BUSY_TIMEOUT,
                    help="seconds a request waits for the device before it is answered BUSY (default %(default)g)")
    ap.add_argument("--max-clients", type=int, default=DEFAULT_MAX_CLIENTS,
                    help="connections served at once; more are answered BUSY (default %(default)d)")
    args = ap.parse_args(argv)

    def ready(port: int) -> None:
        if args.port_file:
            _write_atomic(args.port_file, f"{port}\n")
        print(f"dlavm device server: target {args.target}, listening on {args.host}:{port}", flush=True)

    try:
        server = SimServer(args.target, args.host, args.port, functional=not args.timing_only,
                           record=args.record is not None, max_message=args.max_message,
                           idle_timeout=args.idle_timeout, frame_timeout=args.frame_timeout,
                           busy_timeout=args.busy_timeout, max_clients=args.max_clients,
                           check_hazards=not args.no_hazards, check_uninit=not args.no_uninit)
    except ValueError as exc:
        ap.error(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: server.close())   # stop cleanly: the record is still written
    ready(server.port)
    try:
        server.serve(once=args.once)
    except KeyboardInterrupt:
        pass
    finally:
        if args.record:
            _write_atomic(args.record, json.dumps(server.recorded()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
