"""The socket client against misbehaving servers: it never allocates what a peer merely
announces (every reply is bounded by the negotiated message limit, the smaller of the client's
and the server's, checked before the body is read), a reply must arrive whole within the
client's timeout of its first byte, and a server of another protocol version is refused with a
clear message and the connection released. Each test talks to a scripted server on 127.0.0.1
that serves one connection and stops by itself."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from dlavm.devlink.protocol import (DEFAULT_MAX_MESSAGE, MIN_MAX_MESSAGE, PROTOCOL_VERSION, FrameLengthError,
                                    FrameTimeoutError, Op, Status, error_payload, frame, negotiate_max_message,
                                    read_frame)
from dlavm.devlink.socket_client import ConnectionLostError, SocketDevice

GIB = 1 << 30


class ScriptedServer:
    """Accepts one client on 127.0.0.1 and answers its n-th request with ``replies[n]`` (raw bytes).

    After the script it waits (at most ``linger`` s) for the client to hang up, then stops;
    ``requests`` records the ops it received.
    """

    def __init__(self, replies: list[bytes], linger: float = 10.0):
        self.replies = replies
        self.linger = linger
        self.requests: list[int] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(linger)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(self.linger)
            try:
                for reply in self.replies:
                    body = read_frame(conn, DEFAULT_MAX_MESSAGE)
                    if body is None:
                        return
                    self.requests.append(body[0])
                    conn.sendall(reply)
                while conn.recv(1 << 16):   # until the client hangs up
                    pass
            except OSError:
                pass
        self.listener.close()

    def join(self) -> None:
        self.thread.join(timeout=self.linger + 5)
        assert not self.thread.is_alive()


def hello_reply(max_message: int, target: str = "tiny") -> bytes:
    return frame(Status.OK, struct.pack("<HI", PROTOCOL_VERSION, max_message) + target.encode())


def test_a_reply_longer_than_the_negotiated_limit_is_refused_before_its_body_is_read():
    # The server announces a 4 GiB limit, then a 1 GiB reply whose body never comes.
    srv = ScriptedServer([hello_reply(0xFFFF_FFFF), struct.pack("<I", GIB) + b"\x00" * 64])
    dev = SocketDevice("127.0.0.1", srv.port, timeout=30)
    assert dev.max_message == DEFAULT_MAX_MESSAGE          # the client's own limit wins
    with pytest.raises(ConnectionLostError, match=f"message of {GIB} bytes is outside 1..{DEFAULT_MAX_MESSAGE}"):
        dev.read_reg(0)
    # the server never sends the body: the match above proves the length alone was refused
    srv.join()
    assert srv.requests == [Op.HELLO, Op.READ_REG]


def test_a_hello_reply_is_bounded_by_the_clients_own_limit():
    srv = ScriptedServer([struct.pack("<I", 0xFFFF_FFFF)])
    with pytest.raises(ConnectionLostError, match=f"outside 1..{4096}"):
        SocketDevice("127.0.0.1", srv.port, timeout=30, max_message=4096)
    srv.join()


def test_the_client_uses_the_smaller_of_its_and_the_servers_limit():
    srv = ScriptedServer([hello_reply(1 << 20)])
    with SocketDevice("127.0.0.1", srv.port, timeout=30, max_message=4096) as dev:
        assert dev.max_message == 4096 and dev.target == "tiny"
    srv.join()
    srv = ScriptedServer([hello_reply(1000)])
    with SocketDevice("127.0.0.1", srv.port, timeout=30) as dev:
        assert dev.max_message == 1000
    srv.join()


def test_a_server_announcing_a_tiny_limit_is_refused():
    # A 9-byte limit would split a memory copy into zero-byte chunks forever.
    srv = ScriptedServer([hello_reply(9)])
    with pytest.raises(ConnectionLostError, match=f"message limit of 9 bytes, below the protocol's minimum of "
                                                  f"{MIN_MAX_MESSAGE}"):
        SocketDevice("127.0.0.1", srv.port, timeout=30)
    srv.join()


def test_a_client_limit_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="max_message 32 is below the protocol's minimum of 64 bytes"):
        SocketDevice("127.0.0.1", 1, max_message=32)


def test_negotiation_and_framing_rules():
    assert negotiate_max_message(DEFAULT_MAX_MESSAGE, 0xFFFF_FFFF) == DEFAULT_MAX_MESSAGE
    assert negotiate_max_message(4096, MIN_MAX_MESSAGE) == MIN_MAX_MESSAGE
    with pytest.raises(ValueError, match="below the protocol's minimum"):
        negotiate_max_message(4096, MIN_MAX_MESSAGE - 1)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("<I", 0))
        with pytest.raises(FrameLengthError, match="message of 0 bytes is outside 1..64"):
            read_frame(b, 64)
        a.sendall(frame(Status.OK, b"xyz"))
        assert read_frame(b, 64) == bytes([Status.OK]) + b"xyz"
        a.close()
        assert read_frame(b, 64) is None


def test_a_server_of_another_protocol_version_is_refused_and_the_connection_released():
    srv = ScriptedServer([frame(Status.OK, struct.pack("<HI", 1, 4096) + b"tiny")])
    with pytest.raises(ConnectionLostError, match=f"^device server 127.0.0.1:{srv.port} speaks protocol version 1, "
                                                  f"this client {PROTOCOL_VERSION}$"):
        SocketDevice("127.0.0.1", srv.port, timeout=30)
    srv.thread.join(timeout=3)          # the client hung up at once (the server lingers 10 s otherwise)
    assert not srv.thread.is_alive()


def test_an_old_server_refusing_the_handshake_is_a_clear_error():
    old = frame(Status.BAD_REQUEST, error_payload("ProtocolError", f"protocol version {PROTOCOL_VERSION} is not "
                                                                   f"supported (server speaks 1)"))
    srv = ScriptedServer([old])
    with pytest.raises(ConnectionLostError, match=f"^device server 127.0.0.1:{srv.port} refused the handshake of "
                                                  f"protocol version {PROTOCOL_VERSION}: protocol version "
                                                  f"{PROTOCOL_VERSION} is not supported \\(server speaks 1\\)$"):
        SocketDevice("127.0.0.1", srv.port, timeout=30)
    srv.thread.join(timeout=3)
    assert not srv.thread.is_alive()


def _trickle(sock: socket.socket, data: bytes, pause: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(pause):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_a_frame_must_arrive_within_its_deadline_however_it_trickles():
    # Each byte comes within the socket's 1 s timeout, but the frame takes 10 x 0.1 s > 0.5 s.
    a, b = socket.socketpair()
    stop = threading.Event()
    sender = threading.Thread(target=_trickle, args=(a, frame(Status.OK, b"hello"), 0.1, stop))
    with a, b:
        b.settimeout(1.0)
        sender.start()
        try:
            with pytest.raises(FrameTimeoutError, match=r"^message not complete within the frame deadline of 0.5 s "
                                                        r"after its first byte: [0-9] of 10 bytes arrived$"):
                read_frame(b, 64, frame_timeout=0.5)
            assert b.gettimeout() == 1.0           # the socket's own timeout is restored
        finally:
            stop.set()
            sender.join(timeout=5)


def test_the_frame_deadline_starts_at_the_first_byte():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.2)
        with pytest.raises(TimeoutError) as info:      # nothing arrives: the idle timeout, not the deadline
            read_frame(b, 64, frame_timeout=5.0)
        assert not isinstance(info.value, FrameTimeoutError)
        a.sendall(frame(Status.OK, b"late but whole"))
        assert read_frame(b, 64, frame_timeout=5.0) == bytes([Status.OK]) + b"late but whole"


def test_the_client_bounds_a_trickling_reply_by_its_timeout():
    class TricklingServer(ScriptedServer):
        def _serve(self) -> None:
            conn, _ = self.listener.accept()
            stop = threading.Event()
            with conn:
                conn.settimeout(self.linger)
                read_frame(conn, DEFAULT_MAX_MESSAGE)
                conn.sendall(hello_reply(4096))
                read_frame(conn, DEFAULT_MAX_MESSAGE)
                _trickle(conn, frame(Status.OK, struct.pack("<I", 7)), 0.15, stop)   # 9 bytes over 1.35 s
                stop.set()
            self.listener.close()

    srv = TricklingServer([])
    dev = SocketDevice("127.0.0.1", srv.port, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ConnectionLostError, match="not complete within the frame deadline of 0.5 s"):
        dev.read_reg(0)
    assert time.monotonic() - start < 1.2
    srv.join()
