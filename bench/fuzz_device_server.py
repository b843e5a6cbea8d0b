#!/usr/bin/env python
"""Fuzz the device server (``python -m hw_models.server``) and measure its deadlines.

Starts the server's CLI on 127.0.0.1 (tiny target, message limit ``--max-message``, frame
deadline ``--frame-timeout``) and runs, against that one process:

* ``fuzz 1 client``: ``--frames`` malformed frames from one client (bad lengths, unknown ops,
  wrong sizes, bad HELLOs, oversized reads, random bodies, random requests, truncated frames;
  tests/devlink/device_server_testing.py), every reply checked against doc/socket.md;
* ``fuzz N clients``: the same number of frames split over ``--clients`` clients at once;
* ``trickle``: a client sending its HELLO one byte every ``--trickle-pause`` s while a second
  client makes 200 register reads: how long the second waits, and when the first is cut off;
* ``stall``: a client that sends half a frame and stops: when the server drops it;
* ``latency``: register reads per second with 1 and with ``--clients`` clients at once;
* ``throughput``: one client on a second server (vcu128 target, default message limit):
  3000 register reads and one 8 MiB copy each way (the figures of doc/socket.md).

After each phase the server process must still run and answer a well-formed client (a
"death" otherwise). Prints a table and writes ``bench/results/fuzz_device_server.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "devlink"))

from device_server_testing import FuzzCounts, fuzz_frames, hello_body, recv_reply, trickling  # noqa: E402
from dlavm.devlink.protocol import PROTOCOL_VERSION, Op, parse_error_payload  # noqa: E402
from dlavm.devlink.socket_client import SocketDevice  # noqa: E402
from dlavm.target import isa  # noqa: E402

RESULTS = ROOT / "bench" / "results"


class ServerProcess:
    """``python -m hw_models.server`` on an ephemeral 127.0.0.1 port."""

    def __init__(self, workdir: Path, *options: str):
        port_file = workdir / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "hw_models.server", "--target", "tiny", "--port", "0",
                                      "--port-file", str(port_file), *options], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the device server exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            time.sleep(0.05)
        else:
            raise RuntimeError("the device server did not start within 30 s")
        self.port = int(port_file.read_text())

    def serving(self) -> bool:
        """The process runs and answers a well-formed client."""
        if self.proc.poll() is not None:
            return False
        try:
            with SocketDevice("127.0.0.1", self.port, timeout=10, busy_retry=10) as dev:
                return dev.read_reg(isa.reg("ID")) == isa.DEVICE_ID
        except Exception:   # noqa: BLE001 - any failure means the server is not serving
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _fuzz_row(counts: FuzzCounts, clients: int, alive: bool) -> dict:
    return {"clients": clients, "frames": counts.total, "seconds": round(counts.seconds, 3),
            "frames_per_s": round(counts.total / counts.seconds) if counts.seconds else None,
            "by_kind": dict(sorted(counts.frames.items())), "replies": dict(sorted(counts.statuses.items())),
            "malformed_replies": counts.malformed_replies, "internal_errors": counts.internal_errors,
            "wrong_status": counts.wrong_status, "unexpected_hangups": counts.unexpected_hangups,
            "reconnects": counts.reconnects, "deaths": 0 if alive else 1, "problems": counts.problems}


def fuzz_phase(server: ServerProcess, frames: int, clients: int, seed: int, max_message: int) -> dict:
    results: list[FuzzCounts] = []
    errors: list[str] = []

    def one(k: int) -> None:
        try:
            results.append(fuzz_frames(server.port, frames // clients + (k < frames % clients), seed + k,
                                       max_message))
        except Exception as exc:   # noqa: BLE001 - a transport failure is a finding, reported in the row
            errors.append(f"client {k}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    total = FuzzCounts()
    for counts in results:
        total.merge(counts)
    row = _fuzz_row(total, clients, server.serving())
    row["client_failures"] = errors
    return row


def trickle_phase(server: ServerProcess, pause: float, frame_timeout: float) -> dict:
    data = struct.pack("<I", 7) + hello_body()
    with trickling(server.port, data, pause=pause) as (slow, state):
        time.sleep(pause * 1.5)
        start = time.monotonic()
        waits = []
        with SocketDevice("127.0.0.1", server.port, timeout=30) as dev:
            connected = time.monotonic() - start
            for _ in range(200):
                t = time.monotonic()
                dev.read_reg(isa.reg("ID"))
                waits.append(time.monotonic() - t)
        trickled_meanwhile = state["sent"]
        slow.settimeout(frame_timeout + 30)
        reply = recv_reply(slow, 1 << 16)
        cut_off = time.monotonic() - start + pause * 1.5
    waits.sort()
    return {"trickle_pause_s": pause, "frame_timeout_s": frame_timeout,
            "second_client_connect_ms": round(connected * 1e3, 2),
            "second_client_read_reg_p50_us": round(waits[len(waits) // 2] * 1e6, 1),
            "second_client_read_reg_max_us": round(waits[-1] * 1e6, 1),
            "trickler_bytes_sent_meanwhile": trickled_meanwhile,
            "trickler_cut_off_after_s": round(cut_off, 2),
            "trickler_told": parse_error_payload(reply[1])[1] if reply else None,
            "deaths": 0 if server.serving() else 1}


def stall_phase(server: ServerProcess) -> dict:
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
        s.sendall(struct.pack("<I", 5) + bytes([Op.READ_REG]) + b"\x00\x00")
        start = time.monotonic()
        reply = recv_reply(s, 1 << 16)
        dropped = time.monotonic() - start
    return {"dropped_after_s": round(dropped, 2), "told": parse_error_payload(reply[1])[1] if reply else None,
            "deaths": 0 if server.serving() else 1}


def latency_phase(server: ServerProcess, clients: int, calls: int = 2000) -> dict:
    out = {}
    for n in (1, clients):
        barrier = threading.Barrier(n, timeout=60)
        spans: list[float] = []

        def one() -> None:
            with SocketDevice("127.0.0.1", server.port, timeout=60, busy_retry=60) as dev:
                barrier.wait()
                t = time.monotonic()
                for _ in range(calls):
                    dev.read_reg(isa.reg("ID"))
                spans.append(time.monotonic() - t)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        out[f"{n} client{'s' if n > 1 else ''}"] = {"read_reg_us_per_call": round(sum(spans) / len(spans) / calls * 1e6, 1),
                               "requests_per_s_all_clients": round(n * calls / max(spans))}
    return out


def throughput_phase(workdir: Path, calls: int = 3000, nbytes: int = 8 << 20) -> dict:
    server = ServerProcess(workdir, "--target", "vcu128")
    try:
        data = bytes(range(256)) * (nbytes // 256)
        ddr = 0x1000000000
        with SocketDevice("127.0.0.1", server.port, timeout=60) as dev:
            t = time.perf_counter()
            for _ in range(calls):
                dev.read_reg(isa.reg("ID"))
            per_call = (time.perf_counter() - t) / calls
            t = time.perf_counter()
            dev.write_mem(ddr, data)
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            back = dev.read_mem(ddr, nbytes)
            read_s = time.perf_counter() - t
        if back != data:
            raise RuntimeError("the 8 MiB copy read back different bytes")
    finally:
        server.stop()
    return {"read_reg_us": round(per_call * 1e6, 1), "write_mb_s": round(nbytes / write_s / 1e6),
            "read_mb_s": round(nbytes / read_s / 1e6), "copy_bytes": nbytes, "calls": calls}


def format_table(doc: dict) -> str:
    lines = [f"device server fuzz (protocol {doc['protocol_version']}, message limit {doc['max_message']} B, "
             f"frame deadline {doc['frame_timeout_s']} s)",
             f"{'phase':<16}{'frames':>8}{'frames/s':>10}{'BAD_REQ':>9}{'DEV_ERR':>9}{'OK':>7}{'TIMEOUT':>9}"
             f"{'malformed':>11}{'INTERNAL':>10}{'wrong':>7}{'hangups':>9}{'deaths':>8}"]
    for name in ("fuzz_1_client", "fuzz_n_clients"):
        r = doc[name]
        rep = r["replies"]
        lines.append(f"{name:<16}{r['frames']:>8}{r['frames_per_s'] or 0:>10}{rep.get('BAD_REQUEST', 0):>9}"
                     f"{rep.get('DEVICE_ERROR', 0):>9}{rep.get('OK', 0):>7}{rep.get('TIMEOUT', 0):>9}"
                     f"{r['malformed_replies']:>11}{r['internal_errors']:>10}{r['wrong_status']:>7}"
                     f"{r['unexpected_hangups']:>9}{r['deaths']:>8}")
    t, s, lat, tp = doc["trickle"], doc["stall"], doc["latency"], doc["throughput"]
    lines += [f"trickle: a client sending 1 byte / {t['trickle_pause_s']} s; meanwhile a second client connected in "
              f"{t['second_client_connect_ms']} ms, read_reg p50 {t['second_client_read_reg_p50_us']} us "
              f"(max {t['second_client_read_reg_max_us']} us); the trickler was cut off after "
              f"{t['trickler_cut_off_after_s']} s",
              f"stall: half a frame, dropped after {s['dropped_after_s']} s: {s['told']}",
              "latency: " + "; ".join(f"{k}: {v['read_reg_us_per_call']} us/read_reg, "
                                      f"{v['requests_per_s_all_clients']} req/s in all" for k, v in lat.items()),
              f"throughput (1 client, vcu128): {tp['read_reg_us']} us per read_reg over {tp['calls']} calls, "
              f"{tp['write_mb_s']} MB/s writes, {tp['read_mb_s']} MB/s reads ({tp['copy_bytes'] >> 20} MiB copies)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20_000, help="fuzz frames per fuzz phase (default 20,000)")
    ap.add_argument("--clients", type=int, default=4, help="clients at once in the concurrent phases (default 4)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--max-message", type=int, default=4096, help="the server's message limit (default 4096)")
    ap.add_argument("--frame-timeout", type=float, default=2.0, help="the server's frame deadline (default 2 s)")
    ap.add_argument("--trickle-pause", type=float, default=0.5, help="seconds between a trickler's bytes")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_device_server.json")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.clients < 1:
        ap.error(f"--frames {args.frames} and --clients {args.clients} must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), "--max-message", str(args.max_message), "--frame-timeout",
                               str(args.frame_timeout), "--busy-timeout", "30", "--max-clients",
                               str(2 * args.clients + 2))
        try:
            doc = {"protocol_version": PROTOCOL_VERSION, "max_message": args.max_message,
                   "frame_timeout_s": args.frame_timeout, "seed": args.seed, "machine": platform.machine(),
                   "cpus": os.cpu_count(), "python": platform.python_version()}
            doc["fuzz_1_client"] = fuzz_phase(server, args.frames, 1, args.seed, args.max_message)
            doc["fuzz_n_clients"] = fuzz_phase(server, args.frames, args.clients, args.seed + 1000,
                                               args.max_message)
            doc["trickle"] = trickle_phase(server, args.trickle_pause, args.frame_timeout)
            doc["stall"] = stall_phase(server)
            doc["latency"] = latency_phase(server, args.clients)
            doc["server_exit_code"] = server.proc.poll()
        finally:
            server.stop()
        (Path(tmp) / "throughput").mkdir()
        doc["throughput"] = throughput_phase(Path(tmp) / "throughput")
    print(format_table(doc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    bad = sum(doc[p][k] for p in ("fuzz_1_client", "fuzz_n_clients")
              for k in ("malformed_replies", "internal_errors", "wrong_status", "unexpected_hangups", "deaths"))
    bad += doc["trickle"]["deaths"] + doc["stall"]["deaths"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
