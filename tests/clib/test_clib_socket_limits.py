"""The C++ socket client against malicious servers on 127.0.0.1: a reply longer than the negotiated
message limit (the smaller of the server's announced limit and the client's own, doc/runtime_cpp.md)
is refused with a ConnectionError before any buffer of that size is allocated, a reply trickled byte
by byte is given up at its deadline, and a refused handshake releases its connection."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from clib_testing import run_program
from dlavm.devlink.protocol import PROTOCOL_VERSION

CLIENT_MAX = 64 << 20        # protocol::kDefaultMaxMessage (test_cpp_constants_match... keeps it equal)


def _recv_exact(conn, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def _hello_then_request(conn, announced_max: int, target: bytes) -> None:
    """Answer the client's HELLO announcing ``announced_max``, then read its next request."""
    (n,) = struct.unpack("<I", _recv_exact(conn, 4))
    _recv_exact(conn, n)
    hello = bytes([0]) + struct.pack("<HI", PROTOCOL_VERSION, announced_max) + target
    conn.sendall(struct.pack("<I", len(hello)) + hello)
    (n,) = struct.unpack("<I", _recv_exact(conn, 4))
    _recv_exact(conn, n)


class _ScriptedServer:
    """A one-thread server on 127.0.0.1 that plays the script of ``_serve`` (defined by each subclass)."""

    join_timeout = 10

    def _start(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.close()
        self.thread.join(timeout=self.join_timeout)


class LyingServer(_ScriptedServer):
    """Answers HELLO announcing ``announced_max``, then answers the next request with a frame header
    announcing ``reply_len`` bytes, sends ``sent`` bytes of it and waits for the client to hang up."""

    def __init__(self, announced_max: int, reply_len: int, sent: int = 16):
        self.announced_max, self.reply_len, self.sent = announced_max, reply_len, sent
        self._start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            try:
                _hello_then_request(conn, self.announced_max, b"evil")
                conn.sendall(struct.pack("<I", self.reply_len) + b"\0" * self.sent)
                conn.recv(1)                                   # until the client closes
            except (ConnectionError, OSError):
                pass


@pytest.mark.parametrize("announced_max, reply_len, limit", [
    (0xFFFFFFFF, 0xF0000000, CLIENT_MAX),   # the server lifts its limit: the client's holds
    (0xFFFFFFFF, CLIENT_MAX + 1, CLIENT_MAX),
    (4096, 4097, 4096),                               # the server's own smaller limit holds too
])
def test_a_reply_past_the_negotiated_limit_is_refused(cpp_programs, announced_max, reply_len, limit):
    constants = dict(line.split() for line in run_program(cpp_programs["rt_tool"], "constants").stdout.splitlines())
    assert (int(constants["DEFAULT_MAX_MESSAGE"]), int(constants["PROTOCOL_VERSION"])) == (CLIENT_MAX,
                                                                                           PROTOCOL_VERSION)
    srv = LyingServer(announced_max, reply_len)
    try:
        res = run_program(cpp_programs["rt_tool"], "device", f"sim://127.0.0.1:{srv.port}?timeout_s=20",
                          "read", 0, 8, check_rc=3, timeout=60)
    finally:
        srv.close()
    assert res.stdout.strip() == (f"DeviceError ConnectionError: device server 127.0.0.1:{srv.port}: reply length "
                                  f"{reply_len} is outside 1..{limit} (the negotiated message limit); "
                                  f"refusing to read it")


class WrongVersionServer(_ScriptedServer):
    """Serves ``n`` clients one after the other: answers each HELLO with protocol version 99, then
    waits until that client hangs up before accepting the next."""

    def __init__(self, n: int):
        self.n, self.served = n, 0
        self._start()

    def _serve(self):
        for _ in range(self.n):
            conn, _ = self.sock.accept()
            with conn:
                (n,) = struct.unpack("<I", _recv_exact(conn, 4))
                _recv_exact(conn, n)
                hello = bytes([0]) + struct.pack("<HI", 99, 4096) + b"future"
                conn.sendall(struct.pack("<I", len(hello)) + hello)
                while conn.recv(4096):                             # until the client closes
                    pass
            self.served += 1


def test_a_refused_handshake_releases_the_connection(cpp_programs):
    srv = WrongVersionServer(3)
    try:
        res = run_program(cpp_programs["reopen_device"], f"sim://127.0.0.1:{srv.port}?timeout_s=5", 3, timeout=60)
    finally:
        srv.close()
    want = (f"DeviceError ProtocolError: device server 127.0.0.1:{srv.port} speaks protocol version 99, "
            f"this client {PROTOCOL_VERSION}")
    assert res.stdout.splitlines() == [want] * 3 and srv.served == 3


class TricklingServer(_ScriptedServer):
    """Answers HELLO at once, then sends its reply to the next request one byte every ``gap`` seconds
    (at most ``limit`` bytes, then waits for the client to hang up)."""

    join_timeout = 30

    def __init__(self, gap: float, limit: int = 64):
        self.gap, self.limit, self.sent = gap, limit, 0
        self._start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            try:
                _hello_then_request(conn, 4096, b"slow")
                reply = struct.pack("<I", 9) + bytes([0]) + b"\0" * 8
                for b in reply[:self.limit]:
                    conn.sendall(bytes([b]))
                    self.sent += 1
                    time.sleep(self.gap)
                conn.recv(1)
            except (ConnectionError, OSError):
                pass


def test_a_trickled_reply_is_given_up_at_its_deadline(cpp_programs):
    """Each byte comes within the per-read timeout (0.6 s < 1 s), but the 13-byte reply as a whole
    would take 7.8 s: the client gives up one second after its first byte."""
    srv = TricklingServer(gap=0.6)
    try:
        res = run_program(cpp_programs["rt_tool"], "device", f"sim://127.0.0.1:{srv.port}?timeout_s=1",
                          "read", 0, 8, check_rc=3, timeout=60)
    finally:
        srv.close()
    assert res.stdout.strip() == (f"DeviceError ConnectionError: device server 127.0.0.1:{srv.port}: reply not "
                                  f"complete within 1 s of its first byte")
    assert srv.sent < 13
