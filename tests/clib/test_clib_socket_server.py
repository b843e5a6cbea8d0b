"""The simulator behind the socket protocol: SocketDevice (Python) against
hw_models.server gives what the in-process Simulator gives, errors arrive with
the simulator's message, malformed requests get error replies, and the server
CLI works."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

from clib_testing import ServerThread
from dlavm.devlink import DeviceHAL, HALError
from dlavm.devlink.protocol import MAGIC, NO_TIMEOUT, Op, Status
from dlavm.devlink.socket_client import ConnectionLostError, RemoteDeviceError, SocketDevice
from dlavm.target import asm, isa
from hw_models import Simulator
from hw_models.server import RecordingHAL

SRAM, DDR = 0x1800000000, 0x1000000000   # tiny target regions


@pytest.fixture
def remote(sim_server):
    with SocketDevice("127.0.0.1", sim_server.port) as dev:
        yield dev


def test_socket_device_is_a_device_hal(remote):
    assert isinstance(remote, DeviceHAL) and remote.target == "tiny"
    assert remote.read_reg(isa.reg("ID")) == isa.DEVICE_ID
    assert remote.read_reg(isa.reg("VERSION")) == isa.ISA_VERSION


def _patched_stream_program(dev: DeviceHAL, a: np.ndarray) -> np.ndarray:
    """test_sim_hal's driver pattern: pre-pack, patch the count word, run, read."""
    dev.write_array(SRAM, a)
    dev.write_mem(SRAM + 128, np.zeros(64, np.float16))
    prog = [isa.make("nop"), isa.make("eltwise", fn="add", a=SRAM, b=SRAM, dst=SRAM + 128, count=8)]
    dev.write_mem(DDR, isa.encode_stream(prog))
    dev.write_mem(DDR + isa.INSN_BYTES + isa.op_format("eltwise").field_offset("count"), np.array([24], "<u4"))
    dev.run_stream(DDR, len(prog))
    dev.wait()
    assert dev.read_reg(isa.reg("STATUS")) == 0
    assert "count=24" in asm.disassemble(dev.read_mem(DDR, 2 * isa.INSN_BYTES)).splitlines()[1]
    return dev.read_array(SRAM + 128, np.float16, 64)


def test_a_patched_stream_gives_the_in_process_result_stats_and_trace(remote):
    a = np.random.default_rng(5).standard_normal(64).astype(np.float16)
    local = Simulator("tiny")
    got, want = _patched_stream_program(remote, a), _patched_stream_program(local, a)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:24], (a[:24].astype(np.float32) * 2).astype(np.float16))
    assert remote.stats() == json.loads(json.dumps(local.stats()))   # same cycles, counters, channels
    assert remote.trace() == json.loads(json.dumps(local.trace()))
    assert remote.cycles() == local.cycles()


def test_push_counters_and_reset(remote):
    remote.write_mem(SRAM, np.zeros(4096, np.float16))
    remote.push(isa.make("eltwise", a=SRAM, b=SRAM, dst=SRAM, count=4096))
    assert remote.read_reg(isa.reg("STATUS")) & (1 << isa.WAIT_UNITS.index("sfu"))
    with pytest.raises(TimeoutError, match="timeout of 1 cycles"):
        remote.wait(timeout_cycles=1)
    remote.wait()
    assert remote.read_reg(isa.reg("RETIRED")) == 1
    remote.reset()
    assert remote.read_reg(isa.reg("RETIRED")) == 0 and remote.stats()["instructions"] == 0


def _error_of(dev: DeviceHAL, call) -> HALError:
    with pytest.raises(HALError) as info:
        call(dev)
    return info.value


@pytest.mark.parametrize("kind,call", [
    ("AddressError", lambda d: d.read_mem(SRAM + (1 << 20) - 2, 4)),
    ("UndefinedRegisterError", lambda d: d.write_reg(isa.reg("ID"), 1)),
    ("UndefinedRegisterError", lambda d: d.read_reg(0x3F0)),
    ("UnalignedAccessError", lambda d: d.read_reg(0x2)),
    ("UninitializedReadError", lambda d: d.read_mem(SRAM, 2)),
    ("IllegalInstructionError", lambda d: d.push([0xFF] + [0] * 15)),
    ("HazardError", lambda d: (d.write_mem(SRAM, bytes(128)),
                               d.push(isa.make("eltwise", a=SRAM, b=SRAM, dst=SRAM, count=64)),
                               d.read_mem(SRAM, 4))),
])
def test_device_errors_carry_the_simulators_message(remote, kind, call):
    err = _error_of(remote, call)
    local = _error_of(Simulator("tiny"), call)
    assert isinstance(err, RemoteDeviceError) and err.kind == kind == type(local).__name__
    assert str(err) == str(local)
    assert remote.read_reg(isa.reg("ID")) == isa.DEVICE_ID   # the connection survives


def test_large_copies_are_split_at_the_message_limit():
    srv = ServerThread("tiny", max_message=4096)
    try:
        with SocketDevice("127.0.0.1", srv.port) as dev:
            assert dev.max_message == 4096
            data = np.random.default_rng(0).bytes(20_000)
            dev.write_mem(SRAM + 3, data)
            assert dev.read_mem(SRAM + 3, len(data)) == data
        assert srv.server.simulator.read_mem(SRAM + 3, len(data)) == data
    finally:
        srv.stop()


def _raw_call(sock: socket.socket, body: bytes) -> tuple[int, bytes]:
    sock.sendall(struct.pack("<I", len(body)) + body)
    (n,) = struct.unpack("<I", sock.recv(4, socket.MSG_WAITALL))
    reply = sock.recv(n, socket.MSG_WAITALL)
    return reply[0], reply[1:]


@pytest.mark.parametrize("body,status,text", [
    (bytes([99]), Status.BAD_REQUEST, "unknown request op 99"),
    (bytes([Op.READ_REG]) + b"\x00\x00", Status.BAD_REQUEST, "READ_REG payload is 2 bytes, expected 4"),
    (bytes([Op.WRITE_MEM]) + b"\x00", Status.BAD_REQUEST, "WRITE_MEM payload is 1 bytes"),
    (bytes([Op.STATS]) + b"x", Status.BAD_REQUEST, "STATS payload is 1 bytes, expected 0"),
    (bytes([Op.HELLO]) + struct.pack("<IH", 0x1234, 1), Status.BAD_REQUEST, "bad HELLO magic 0x1234"),
    (bytes([Op.HELLO]) + struct.pack("<IH", MAGIC, 9), Status.BAD_REQUEST, "protocol version 9 is not supported"),
    (bytes([Op.READ_MEM]) + struct.pack("<QQ", SRAM, 1 << 40), Status.BAD_REQUEST, "exceeds the message limit"),
    (bytes([Op.WAIT]) + struct.pack("<Q", NO_TIMEOUT), Status.OK, ""),
    (bytes([Op.WAIT]) + struct.pack("<Q", 0), Status.TIMEOUT, "timeout of 0 cycles"),
])
def test_malformed_requests_get_error_replies(sim_server, body, status, text):
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=10) as s:
        got_status, payload = _raw_call(s, body)
        assert got_status == status and text in payload.decode(errors="replace")
        # Still serving on the same connection.
        assert _raw_call(s, bytes([Op.READ_REG]) + struct.pack("<I", 0)) == (Status.OK, struct.pack("<I", isa.DEVICE_ID))


def test_random_requests_never_crash_the_server(sim_server):
    rng = np.random.default_rng(99)
    statuses = set()
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=30) as s:
        for _ in range(300):
            op = int(rng.integers(0, 12))
            payload = rng.bytes(int(rng.choice([0, 1, 4, 8, 9, 16, 17, 40])))
            status, _ = _raw_call(s, bytes([op]) + payload)
            statuses.add(Status(status))
        assert _raw_call(s, bytes([Op.READ_REG]) + struct.pack("<I", 0))[0] == Status.OK
    assert {Status.BAD_REQUEST, Status.DEVICE_ERROR} <= statuses and Status.INTERNAL not in statuses


def test_an_oversized_or_empty_message_is_answered_and_the_next_client_served(sim_server):
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=10) as s:
        assert _raw_call(s, b"")[0] == Status.BAD_REQUEST   # length 0: answered, connection closed
        assert s.recv(1) == b""
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=10) as s:
        s.sendall(struct.pack("<I", 0xFFFFFFFF))
        (n,) = struct.unpack("<I", s.recv(4, socket.MSG_WAITALL))
        reply = s.recv(n, socket.MSG_WAITALL)
        assert reply[0] == Status.BAD_REQUEST and b"outside 1.." in reply
    with SocketDevice("127.0.0.1", sim_server.port) as dev:   # the server lives on
        assert dev.read_reg(isa.reg("ID")) == isa.DEVICE_ID


def test_connecting_to_nothing_is_a_clear_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionLostError, match=f"cannot connect to device server 127.0.0.1:{port}"):
        SocketDevice("127.0.0.1", port, timeout=5)


def test_server_cli_writes_the_port_serves_once_and_records(tmp_path):
    port_file, record = tmp_path / "port", tmp_path / "log.json"
    proc = subprocess.Popen([sys.executable, "-m", "hw_models.server", "--target", "tiny", "--port", "0",
                             "--port-file", str(port_file), "--once", "--record", str(record)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(port_file.read_text())
        assert f"listening on 127.0.0.1:{port}" in line
        with SocketDevice("127.0.0.1", port) as dev:
            dev.write_reg(isa.reg("AUX_COUNT"), 7)
            assert dev.read_reg(isa.reg("AUX_COUNT")) == 7
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert json.loads(record.read_text()) == [["write_reg", isa.reg("AUX_COUNT"), 7],
                                              ["read_reg", isa.reg("AUX_COUNT")]]


def test_recording_hal_logs_calls_in_order():
    log = []
    dev = RecordingHAL(Simulator("tiny"), log)
    dev.write_mem(SRAM, b"\x00" * 64)
    dev.run_stream(DDR, 0)
    dev.wait()
    assert [e[0] for e in log] == ["write_mem"] + ["write_reg"] * 4 + ["wait"]
    assert log[1:5] == [["write_reg", isa.reg("AUX_BASE_LO"), 0], ["write_reg", isa.reg("AUX_BASE_HI"), 0x10],
                        ["write_reg", isa.reg("AUX_COUNT"), 0], ["write_reg", isa.reg("AUX_START"), 1]]
