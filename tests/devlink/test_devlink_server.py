"""The device server's deadlines and concurrency (doc/socket.md, "Clients, deadlines and BUSY"):
a client that trickles or stalls holds only its own connection, and only until the frame
deadline; clients are served concurrently on one device, one request at a time; a request that
cannot get the device in time, or a client past the client limit, gets BUSY instead of silence.

Every server listens on 127.0.0.1, every socket has a timeout and every loop a bound.
"""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from device_server_testing import ServerThread, hello_body, hung_up, raw_call, recv_reply, trickling
from dlavm.devlink.hal import DeviceHAL
from dlavm.devlink.protocol import PROTOCOL_VERSION, Op, Status, parse_error_payload
from dlavm.devlink.socket_client import DeviceBusyError, SocketDevice
from dlavm.target import isa

SRAM, DDR = 0x1800000000, 0x1000000000   # the tiny target's SRAM (1 MiB) and DDR (4 MiB)


def _error_text(reply) -> tuple[int, str, str]:
    status, payload = reply
    kind, message = parse_error_payload(payload)
    return status, kind, message


# ---------------------------------------------------------------- frame deadline

def test_a_trickling_client_does_not_block_another_client():
    # A sends its HELLO one byte every 0.2 s (2.2 s in all); its frame deadline is 1 s.
    with ServerThread(frame_timeout=1.0, idle_timeout=60) as srv, \
            trickling(srv.port, struct.pack("<I", 7) + hello_body(), pause=0.2) as (slow, state):
        time.sleep(0.3)
        assert state["sent"] >= 1                      # A is mid-frame
        start = time.monotonic()
        with SocketDevice("127.0.0.1", srv.port, timeout=10) as dev:
            dev.write_mem(SRAM, bytes(range(64)))
            assert dev.read_mem(SRAM, 64) == bytes(range(64))
            assert dev.read_reg(isa.reg("ID")) == isa.DEVICE_ID
        served = time.monotonic() - start
        assert served < 0.9, f"the second client waited {served:.2f} s behind the trickling one"
        assert state["sent"] < 11                      # ... while A was still trickling
        # A is cut off at its frame deadline with a reply that says why.
        slow.settimeout(10)
        status, kind, message = _error_text(recv_reply(slow, 4096))
        assert (status, kind) == (Status.BAD_REQUEST, "ProtocolError")
        assert "not complete within the frame deadline of 1 s after its first byte" in message
        assert hung_up(slow)


@pytest.mark.parametrize("sent, arrived", [
    (struct.pack("<I", 5) + bytes([Op.READ_REG]) + b"\x00\x00", "7 of 9 bytes arrived"),
    (b"\x05\x00", "2 of the 4 length bytes arrived"),
])
def test_a_client_that_stalls_mid_frame_is_dropped_at_the_frame_deadline(sent, arrived):
    # The idle timeout (60 s) would never fire here: only the frame deadline (0.5 s) can.
    with ServerThread(frame_timeout=0.5, idle_timeout=60) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(sent)
            start = time.monotonic()
            status, kind, message = _error_text(recv_reply(s, 4096))
            waited = time.monotonic() - start
            assert hung_up(s)
        assert (status, kind) == (Status.BAD_REQUEST, "ProtocolError")
        assert message == f"message not complete within the frame deadline of 0.5 s after its first byte: {arrived}"
        assert 0.4 <= waited < 5.0
        with SocketDevice("127.0.0.1", srv.port, timeout=10) as dev:   # the server serves on
            assert dev.read_reg(isa.reg("ID")) == isa.DEVICE_ID


def test_a_silent_client_is_dropped_at_the_idle_timeout():
    with ServerThread(frame_timeout=5.0, idle_timeout=0.5) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        start = time.monotonic()
        assert hung_up(s)                                          # closed without a reply
        assert 0.4 <= time.monotonic() - start < 5.0


def test_a_large_message_within_the_deadline_is_served():
    # The deadline bounds a message, not a read: 3 MiB in many reads arrives whole.
    data = np.random.default_rng(3).bytes(3 << 20)
    with ServerThread(frame_timeout=30.0) as srv, SocketDevice("127.0.0.1", srv.port, timeout=30) as dev:
        dev.write_mem(DDR, data)
        assert dev.read_mem(DDR, len(data)) == data


# ---------------------------------------------------------------- existing error handling

def test_malformed_and_oversized_frames_keep_their_error_replies():
    with ServerThread(max_message=4096) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            status, kind, message = _error_text(raw_call(s, bytes([Op.READ_REG]) + b"\x00"))
            assert (status, kind, message) == (Status.BAD_REQUEST, "ProtocolError",
                                               "READ_REG payload is 1 bytes, expected 4")
            assert raw_call(s, bytes([Op.READ_REG]) + struct.pack("<I", 0)) == (
                Status.OK, struct.pack("<I", isa.DEVICE_ID))             # the connection is still usable
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(struct.pack("<I", 4097))
            status, kind, message = _error_text(recv_reply(s, 4096))
            assert (status, message) == (Status.BAD_REQUEST,
                                         "message of 4097 bytes is outside 1..4096 (the message limit)")
            assert hung_up(s)                                            # answered, then closed


def test_an_old_client_is_refused_by_version():
    with ServerThread() as srv, socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        status, kind, message = _error_text(raw_call(s, hello_body(version=1)))
        assert (status, kind, message) == (
            Status.BAD_REQUEST, "ProtocolError",
            f"protocol version 1 is not supported: this device server speaks version {PROTOCOL_VERSION} "
            f"(doc/socket.md, 'Versions')")


# ---------------------------------------------------------------- concurrency

def test_concurrent_clients_with_interleaved_requests_get_their_own_results():
    clients, rounds = 4, 60
    errors: list[str] = []
    start = threading.Barrier(clients, timeout=30)

    def client(k: int, port: int) -> None:
        rng = np.random.default_rng(k)
        base = SRAM + k * 0x10000
        try:
            with SocketDevice("127.0.0.1", port, timeout=30, max_message=4096) as dev:
                start.wait()
                for r in range(rounds):
                    data = rng.bytes(int(rng.integers(1, 6000)))   # some split into several WRITE_MEMs
                    dev.write_mem(base, data)
                    if dev.read_mem(base, len(data)) != data:
                        errors.append(f"client {k} round {r}: read back other data")
                    if dev.read_reg(isa.reg("ID")) != isa.DEVICE_ID:
                        errors.append(f"client {k} round {r}: wrong ID register")
        except Exception as exc:   # noqa: BLE001 - reported below with the client's number
            errors.append(f"client {k}: {type(exc).__name__}: {exc}")

    with ServerThread(record=True, busy_timeout=30.0) as srv:
        threads = [threading.Thread(target=client, args=(k, srv.port)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        log = srv.server.recorded()
    # Every request reached the one device exactly once (chunks counted per request).
    assert sum(1 for e in log if e[0] == "read_reg") == clients * rounds
    assert len({e[1] // 0x10000 for e in log if e[0] == "write_mem"}) == clients


def test_clients_share_the_one_device():
    with ServerThread() as srv, SocketDevice("127.0.0.1", srv.port) as a, SocketDevice("127.0.0.1", srv.port) as b:
        a.write_mem(SRAM, b"shared")
        assert b.read_mem(SRAM, 6) == b"shared"
        b.write_reg(isa.reg("AUX_COUNT"), 5)
        assert a.read_reg(isa.reg("AUX_COUNT")) == 5


class SlowWait(DeviceHAL):
    """A device whose wait() takes ``seconds`` of wall time (a long simulated run)."""

    def __init__(self, inner: DeviceHAL, seconds: float):
        self.inner, self.seconds = inner, seconds
        self.waiting = threading.Event()

    def write_reg(self, addr, value):
        self.inner.write_reg(addr, value)

    def read_reg(self, addr):
        return self.inner.read_reg(addr)

    def write_mem(self, addr, data):
        self.inner.write_mem(addr, data)

    def read_mem(self, addr, nbytes):
        return self.inner.read_mem(addr, nbytes)

    def wait(self, timeout_cycles=None):
        self.waiting.set()
        time.sleep(self.seconds)
        self.inner.wait(timeout_cycles)

    def stats(self):
        return self.inner.stats()

    def trace(self):
        return self.inner.trace()


def test_a_request_that_cannot_get_the_device_in_time_gets_busy():
    with ServerThread(busy_timeout=0.2) as srv:
        slow = srv.server.device = SlowWait(srv.server.device, 2.0)
        with SocketDevice("127.0.0.1", srv.port, timeout=30) as a, \
                SocketDevice("127.0.0.1", srv.port, timeout=30) as b:   # HELLO needs no device: no wait
            holder = threading.Thread(target=a.wait)
            holder.start()
            assert slow.waiting.wait(10)
            started = time.monotonic()
            with pytest.raises(DeviceBusyError, match=r"device busy: another client's WAIT has held it for "
                                                      r"[0-9.]+ s; this READ_REG waited 0.2 s \(the busy timeout\) "
                                                      r"and did not run: send it again") as info:
                b.read_reg(isa.reg("ID"))
            assert info.value.status == Status.BUSY and info.value.kind == "DeviceBusyError"
            assert time.monotonic() - started < 1.5
            # A malformed request is refused at once, busy device or not.
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                assert raw_call(s, hello_body())[0] == Status.OK
                t0 = time.monotonic()
                assert raw_call(s, bytes([Op.READ_REG]))[0] == Status.BAD_REQUEST
                assert time.monotonic() - t0 < 0.2
            # With a retry policy the same request runs once the device is free.
            retrying = SocketDevice("127.0.0.1", srv.port, timeout=30, busy_retry=10)
            with retrying:
                assert retrying.read_reg(isa.reg("ID")) == isa.DEVICE_ID
            assert time.monotonic() - started >= 1.0            # it waited for A's WAIT to end
            holder.join(timeout=30)
            assert b.read_reg(isa.reg("ID")) == isa.DEVICE_ID    # B's connection survived its BUSY


def test_a_client_past_the_client_limit_gets_busy_and_may_retry():
    with ServerThread(max_clients=1) as srv:
        first = SocketDevice("127.0.0.1", srv.port, timeout=10)
        started = time.monotonic()
        with pytest.raises(DeviceBusyError, match=r"the device server already serves 1 clients \(its client "
                                                  r"limit\); connect again later"):
            SocketDevice("127.0.0.1", srv.port, timeout=10)
        assert time.monotonic() - started < 1.0
        threading.Timer(0.5, first.close).start()
        with SocketDevice("127.0.0.1", srv.port, timeout=10, busy_retry=10) as second:   # gets in once A left
            assert second.read_reg(isa.reg("ID")) == isa.DEVICE_ID
        assert time.monotonic() - started >= 0.5


def test_a_client_answered_busy_may_ask_again_at_once_and_gets_busy_again():
    # The refusal slot is free once the BUSY reply is sent: asking again at once (while the server
    # still reads what the refused client sends after it) is answered BUSY, never reset.
    with ServerThread(max_clients=1) as srv, SocketDevice("127.0.0.1", srv.port, timeout=10):
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as refused:
                assert raw_call(refused, hello_body())[0] == Status.BUSY
                refused.sendall(b"\0" * 64)          # keeps the server's hang-up reading for a while
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as again:
                assert raw_call(again, hello_body())[0] == Status.BUSY


def test_past_twice_the_client_limit_a_connection_is_closed_at_once():
    with ServerThread(max_clients=1, idle_timeout=30, frame_timeout=30) as srv, \
            SocketDevice("127.0.0.1", srv.port, timeout=10) as served, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as waiting:   # silent: holds the BUSY slot
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as third:
            started = time.monotonic()
            assert hung_up(third) and time.monotonic() - started < 2.0
        assert raw_call(waiting, hello_body())[0] == Status.BUSY   # the second still gets its BUSY
        assert served.read_reg(isa.reg("ID")) == isa.DEVICE_ID


@pytest.mark.parametrize("option, value, message", [
    ("frame_timeout", 0, "frame_timeout 0 must be a positive, finite number of seconds"),
    ("idle_timeout", float("inf"), "idle_timeout inf must be a positive, finite number of seconds"),
    ("busy_timeout", -1.0, "busy_timeout -1.0 must be a positive, finite number of seconds"),
    ("max_clients", 0, "max_clients 0 must be an integer of at least 1"),
])
def test_server_options_are_checked(option, value, message):
    from hw_models.server import SimServer
    with pytest.raises(ValueError, match=f"^{message}$"):
        SimServer("tiny", **{option: value})


@pytest.mark.parametrize("option, value, message", [
    ("timeout", 0, "timeout 0 must be a finite number of seconds above 0"),
    ("busy_retry", float("nan"), "busy_retry nan must be a finite number of seconds of at least 0"),
])
def test_client_options_are_checked(option, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        SocketDevice("127.0.0.1", 1, **{option: value})


def test_server_cli_refuses_a_bad_deadline():
    res = subprocess.run([sys.executable, "-m", "hw_models.server", "--target", "tiny", "--frame-timeout", "nan"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith(
        "error: frame_timeout nan must be a positive, finite number of seconds")
