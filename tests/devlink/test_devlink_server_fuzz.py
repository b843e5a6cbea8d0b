"""The device server survives a quick fuzz loop of malformed frames (bad lengths, unknown ops,
wrong sizes, bad HELLOs, oversized reads, random bodies, random requests, truncated frames),
from one client and from several at once: every reply is well-formed, malformed requests get
BAD_REQUEST, nothing is an INTERNAL error, and a well-formed client is served afterwards.
bench/fuzz_device_server.py runs the same fuzzer longer against the server's CLI."""
from __future__ import annotations

import threading

from device_server_testing import FRAME_KINDS, FuzzCounts, ServerThread, fuzz_frames
from dlavm.devlink.socket_client import SocketDevice
from dlavm.target import isa

LIMIT = 4096   # a small message limit makes oversized lengths cheap to probe


def _assert_clean(counts: FuzzCounts, frames: int) -> None:
    assert counts.total == frames and set(counts.frames) == set(FRAME_KINDS)
    assert (counts.malformed_replies, counts.internal_errors, counts.wrong_status, counts.unexpected_hangups) == \
        (0, 0, 0, 0), counts.problems
    assert counts.statuses["BAD_REQUEST"] > 0 and counts.statuses["OK"] > 0 and counts.statuses["DEVICE_ERROR"] > 0


def _assert_serving(port: int) -> None:
    with SocketDevice("127.0.0.1", port, timeout=10) as dev:
        assert dev.read_reg(isa.reg("ID")) == isa.DEVICE_ID


def test_the_server_survives_a_thousand_malformed_frames():
    with ServerThread(max_message=LIMIT, frame_timeout=5.0) as srv:
        counts = fuzz_frames(srv.port, 1200, seed=16, max_message=LIMIT)
        _assert_clean(counts, 1200)
        _assert_serving(srv.port)


def test_the_server_survives_fuzzing_clients_at_once():
    results: list[FuzzCounts] = []
    errors: list[str] = []

    def fuzzer(seed: int, port: int) -> None:
        try:
            results.append(fuzz_frames(port, 300, seed=seed, max_message=LIMIT))
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(f"fuzzer {seed}: {type(exc).__name__}: {exc}")

    with ServerThread(max_message=LIMIT, frame_timeout=5.0, busy_timeout=30.0) as srv:
        threads = [threading.Thread(target=fuzzer, args=(seed, srv.port)) for seed in (1, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads) and errors == []
        total = FuzzCounts()
        for counts in results:
            total.merge(counts)
        _assert_clean(total, 900)
        _assert_serving(srv.port)
