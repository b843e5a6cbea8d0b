"""Helpers for the device server's tests and bench/fuzz_device_server.py: a server on
127.0.0.1 served from a thread, raw protocol calls, and a malformed-frame fuzzer that checks
every reply against doc/socket.md.

Every loop here is bounded by a count and every socket by a timeout.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import random
import socket
import struct
import threading
import time
from typing import Iterator

from dlavm.devlink.protocol import MAGIC, NO_TIMEOUT, PROTOCOL_VERSION, Op, Status, parse_error_payload

# Kinds of frame the fuzzer sends, and the reply each must get ("any": any well-formed reply but INTERNAL).
# "hangs up" kinds end the connection: the server answers a bad length field and closes; a truncated
# frame is followed by the fuzzer closing its side.
EXPECTED_STATUS = {
    "bad_length": Status.BAD_REQUEST,       # length 0 or above the message limit: answered, then closed
    "unknown_op": Status.BAD_REQUEST,       # op outside 1..9
    "wrong_size": Status.BAD_REQUEST,       # a known op with a payload of the wrong size
    "bad_hello": Status.BAD_REQUEST,        # bad magic or another protocol version
    "oversized_read": Status.BAD_REQUEST,   # READ_MEM of more than a message can carry
    "random_body": "any",                   # a well-framed body of random bytes
    "random_request": "any",                # a well-formed request with random field values
    "truncated": None,                      # part of a frame, then the fuzzer hangs up: no reply
}
FRAME_KINDS = tuple(EXPECTED_STATUS)
_SIZES = {Op.HELLO: 6, Op.WRITE_REG: 8, Op.READ_REG: 4, Op.READ_MEM: 16, Op.WAIT: 8, Op.STATS: 0, Op.RESET: 0,
          Op.TRACE: 0}
_REGION = 0x1800000000   # the tiny target's SRAM: random requests hit it often enough to succeed sometimes


class ServerThread:
    """A hw_models.server.SimServer on 127.0.0.1 served from a daemon thread (``with`` stops it)."""

    def __init__(self, target: str = "tiny", **options):
        from hw_models.server import SimServer
        self.server = SimServer(target, "127.0.0.1", 0, **options)
        self.port = self.server.port
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.close()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the device server did not stop within 30 s"

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def recv_reply(sock: socket.socket, limit: int) -> tuple[int, bytes] | None:
    """(status, payload) of the next reply, or None if the server closed the connection first.

    Raises AssertionError for a reply the protocol does not allow (length outside 1..limit).
    """
    head = sock.recv(4, socket.MSG_WAITALL)
    if not head:
        return None
    assert len(head) == 4, f"reply length field cut after {len(head)} bytes"
    (n,) = struct.unpack("<I", head)
    assert 1 <= n <= limit, f"reply of {n} bytes is outside 1..{limit}"
    body = sock.recv(n, socket.MSG_WAITALL)
    assert len(body) == n, f"reply body cut after {len(body)} of {n} bytes"
    return body[0], body[1:]


def hung_up(sock: socket.socket) -> bool:
    """True when the server closed the connection (cleanly, or reset because this end sent more)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_call(sock: socket.socket, body: bytes, limit: int = 1 << 26) -> tuple[int, bytes] | None:
    """Send one framed request (head byte + payload) and read its reply."""
    sock.sendall(struct.pack("<I", len(body)) + body)
    return recv_reply(sock, limit)


def hello_body(version: int = PROTOCOL_VERSION, magic: int = MAGIC) -> bytes:
    return bytes([Op.HELLO]) + struct.pack("<IH", magic, version)


def malformed_frame(rng: random.Random, kind: str, max_message: int) -> tuple[bytes, int | None]:
    """The bytes of one frame of ``kind`` and, for a well-framed request, its op (None otherwise)."""
    if kind == "bad_length":
        n = rng.choice([0, max_message + 1, max_message + rng.randrange(1, 1 << 20), 0xFFFFFFFF])
        return struct.pack("<I", n) + bytes(rng.randrange(0, 16)), None
    if kind == "unknown_op":
        op = rng.choice([0, *range(10, 256)])
        return _framed(bytes([op]) + rng.randbytes(rng.randrange(0, 32))), op
    if kind == "wrong_size":
        op = rng.choice([o for o in _SIZES])
        size = rng.choice([s for s in range(0, 24) if s != _SIZES[op]])
        return _framed(bytes([op]) + rng.randbytes(size)), op
    if kind == "bad_hello":
        if rng.random() < 0.5:
            return _framed(hello_body(magic=rng.choice([0, 0x12345678, MAGIC ^ (1 << rng.randrange(32))]))), Op.HELLO
        version = rng.choice([v for v in (0, 1, PROTOCOL_VERSION + 1, 0xFFFF) if v != PROTOCOL_VERSION])
        return _framed(hello_body(version=version)), Op.HELLO
    if kind == "oversized_read":
        return _framed(bytes([Op.READ_MEM]) + struct.pack("<QQ", _REGION, max_message + rng.randrange(0, 1 << 40))), \
            Op.READ_MEM
    if kind == "random_body":
        body = rng.randbytes(rng.randrange(1, 48))
        return _framed(body), body[0]
    if kind == "random_request":
        op, payload = _random_request(rng)
        return _framed(bytes([op]) + payload), op
    if kind == "truncated":
        op, payload = _random_request(rng)
        whole = _framed(bytes([op]) + payload)
        return whole[:rng.randrange(1, len(whole))], None
    raise ValueError(f"unknown frame kind {kind!r}; known: {', '.join(FRAME_KINDS)}")


def _framed(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def _addr(rng: random.Random) -> int:
    return rng.choice([_REGION + rng.randrange(0, 1 << 21), rng.randrange(0, 1 << 64), 0, (1 << 64) - 1])


def _random_request(rng: random.Random) -> tuple[int, bytes]:
    """A well-formed request with random fields. No RESET: it would wipe what other clients wrote."""
    op = rng.choice([Op.WRITE_REG, Op.READ_REG, Op.WRITE_MEM, Op.READ_MEM, Op.WAIT, Op.STATS, Op.TRACE, Op.HELLO])
    reg = rng.choice([rng.randrange(0, 0x100, 4), rng.randrange(0, 1 << 32)])
    if op == Op.WRITE_REG:
        return op, struct.pack("<II", reg, rng.choice([0, 1, rng.randrange(0, 1 << 32)]))
    if op == Op.READ_REG:
        return op, struct.pack("<I", reg)
    if op == Op.WRITE_MEM:
        return op, struct.pack("<Q", _addr(rng)) + rng.randbytes(rng.randrange(0, 64))
    if op == Op.READ_MEM:
        return op, struct.pack("<QQ", _addr(rng), rng.randrange(0, 256))
    if op == Op.WAIT:
        return op, struct.pack("<Q", rng.choice([0, 1, 1000, NO_TIMEOUT]))
    if op == Op.HELLO:
        return op, struct.pack("<IH", MAGIC, PROTOCOL_VERSION)
    return op, b""


def reply_problem(op: int | None, request: bytes, status: int, payload: bytes) -> str | None:
    """What is wrong with the reply to a well-framed request (``request``: its head byte + payload;
    None: nothing)."""
    if status not in Status._value2member_map_:
        return f"unknown status {status}"
    if status != Status.OK:
        if len(payload) < 2 or 2 + struct.unpack_from("<H", payload)[0] > len(payload):
            return f"malformed error payload {payload[:32]!r}"
        return None
    if op == Op.READ_REG and len(payload) != 4:
        return f"READ_REG reply of {len(payload)} bytes"
    if op == Op.READ_MEM and len(payload) != struct.unpack_from("<Q", request, 9)[0]:
        return f"READ_MEM reply of {len(payload)} bytes"
    if op in (Op.WRITE_REG, Op.WRITE_MEM, Op.WAIT, Op.RESET) and payload:
        return f"{Op(op).name} reply with a payload"
    if op in (Op.STATS, Op.TRACE):
        try:
            json.loads(payload)
        except ValueError:
            return f"{Op(op).name} reply is not JSON"
    if op == Op.HELLO and (len(payload) < 6 or struct.unpack_from("<H", payload)[0] != PROTOCOL_VERSION):
        return "HELLO reply without this protocol's version"
    return None


@dataclasses.dataclass
class FuzzCounts:
    """What a fuzz run saw (per frame kind and per reply status)."""
    frames: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    wrong_status: int = 0        # a reply other than the kind's EXPECTED_STATUS
    malformed_replies: int = 0   # a reply doc/socket.md does not allow
    internal_errors: int = 0     # INTERNAL: a server bug
    unexpected_hangups: int = 0  # the server closed a connection it should have kept
    reconnects: int = 0
    problems: list = dataclasses.field(default_factory=list)   # the first few, for the message
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.frames.values())

    def note(self, problem: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(problem)

    def merge(self, other: "FuzzCounts") -> None:
        self.frames.update(other.frames)
        self.statuses.update(other.statuses)
        for name in ("wrong_status", "malformed_replies", "internal_errors", "unexpected_hangups", "reconnects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for p in other.problems:
            self.note(p)
        self.seconds = max(self.seconds, other.seconds)


def fuzz_frames(port: int, count: int, seed: int, max_message: int, timeout: float = 30.0) -> FuzzCounts:
    """Send ``count`` fuzz frames to the server on 127.0.0.1:``port`` (its message limit is
    ``max_message``) and check every reply; reconnects after each frame that ends a connection."""
    rng = random.Random(seed)
    counts = FuzzCounts()
    start = time.monotonic()
    sock = None
    try:
        for i in range(count):
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                counts.reconnects += 1
            kind = FRAME_KINDS[i % len(FRAME_KINDS)] if i < len(FRAME_KINDS) else rng.choice(FRAME_KINDS)
            data, op = malformed_frame(rng, kind, max_message)
            counts.frames[kind] += 1
            sock.sendall(data)
            if kind == "truncated":
                sock.close()
                sock = None
                continue
            try:
                reply = recv_reply(sock, max_message)
            except AssertionError as exc:
                counts.malformed_replies += 1
                counts.note(f"{kind} {data[:24].hex()}: {exc}")
                sock.close()
                sock = None
                continue
            if reply is None:
                counts.unexpected_hangups += 1
                counts.note(f"{kind} {data[:24].hex()}: connection closed without a reply")
                sock.close()
                sock = None
                continue
            status, payload = reply
            counts.statuses[Status(status).name if status in Status._value2member_map_ else str(status)] += 1
            problem = None if op is None else reply_problem(op, data[4:], status, payload)
            if problem is not None:
                counts.malformed_replies += 1
                counts.note(f"{kind} {data[:24].hex()}: {problem}")
            if status == Status.INTERNAL:
                counts.internal_errors += 1
                counts.note(f"{kind} {data[:24].hex()}: INTERNAL {parse_error_payload(payload)}")
            want = EXPECTED_STATUS[kind]
            if want != "any" and status != want:
                counts.wrong_status += 1
                counts.note(f"{kind} {data[:24].hex()}: status {status}, expected {want!r}")
            if kind == "bad_length":
                # The server hangs up after answering a length it cannot skip.
                if not hung_up(sock):
                    counts.unexpected_hangups += 1   # (it kept a connection it should have closed)
                    counts.note(f"{kind}: the server kept the connection open")
                sock.close()
                sock = None
    finally:
        if sock is not None:
            sock.close()
    counts.seconds = time.monotonic() - start
    return counts


@contextlib.contextmanager
def trickling(port: int, data: bytes, pause: float, timeout: float = 30.0) -> Iterator[tuple[socket.socket, dict]]:
    """A client on ``port`` whose thread sends ``data`` one byte every ``pause`` s.

    Yields ``(sock, state)``: read the server's answer from ``sock``; ``state["sent"]`` counts the
    bytes sent so far. The thread stops at the end of ``data``, when a send fails (the server hung
    up) or when the ``with`` block ends; the socket is closed then.
    """
    state = {"sent": 0}
    done = threading.Event()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def run() -> None:
        try:
            for byte in data:
                if done.wait(pause):
                    return
                sock.sendall(bytes([byte]))
                state["sent"] += 1
        except OSError:
            return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sock, state
    finally:
        done.set()
        thread.join(timeout=timeout)
        sock.close()
