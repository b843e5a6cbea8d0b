#!/usr/bin/env python
"""Fuzz dlavm-server (doc/serve.md) with malformed frames, release and ASan/UBSan builds.

Starts a simulator device server and `dlavm-server` (linked for the tiny LLM artifact of
tests/serve/serve_support.py, ``--frame-timeout`` short so that stalled frames end quickly), then
sends ``--frames`` malformed frames from ``--clients`` threads at once, each from its own seeded
random generator. The kinds:

* closing (a new connection each; the server answers at most one ERROR and closes):
  ``random_bytes`` (no HELLO), ``garbage_after_hello``, ``bad_length`` (0, max_frame + 1, up to
  2^32 - 1, with or without a body), ``truncated`` (a frame cut short, then end of input),
  ``bad_json`` (mutated, non-object, duplicate keys, NaN, too deep, not UTF-8), ``bad_hello``
  (versions, types, keys, another frame first), ``bad_type`` (unknown types, HELLO twice, HEALTH with
  a payload);
* kept (many per connection): ``bad_field`` (GENERATE with a field set to a random JSON value, an
  unknown key, or a required key missing: each followed by a CANCEL of its id, so a request that
  happens to be valid ends at once) and ``bad_cancel``; HEALTH and STATS frames are sent between them
  (not counted as malformed);
* ``slow_partial``: part of a frame, then nothing (or one byte at a time): the server must answer
  ERROR bad_frame once ``--frame-timeout`` passed and close.

Every reply frame is checked against the protocol (lengths, types, TOKEN text UTF-8, JSON payloads of
the shapes of dlavm.serve.protocol, ERROR kinds and one-line messages); a ``bad_frame``, ``too_large``
or ``unauthorized`` ERROR must be the connection's last frame. Findings: a malformed reply, a
connection neither answered nor closed within ``--hang-timeout`` s of the client's end of input
(a hang), an ``internal`` ERROR, and, at the end, a server that died, does not serve a good client, or
does not exit 0 on SIGTERM with a clean log (no sanitizer report). Prints a table and writes
``bench/results/fuzz_serve.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlavm.serve.protocol import ERROR_KINDS, REPLY_SHAPES, FrameError, FrameType, check_shape  # noqa: E402
from tests.serve import serve_support as ss  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MAX_FRAME = 1 << 20
CLOSING_KINDS = ("random_bytes", "garbage_after_hello", "bad_length", "truncated", "bad_json", "bad_hello",
                 "bad_type")
KEPT_KINDS = ("bad_field", "bad_cancel")
CLOSING_ERRORS = {"bad_frame", "too_large", "unauthorized"}
GOOD_REQUEST = {"prompt_ids": [1, 2, 3], "max_new_tokens": 1, "eos_ids": []}
FIELDS = ("id", "prompt", "prompt_ids", "add_bos", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
          "stop", "eos_ids")


# ---- random inputs -------------------------------------------------------------------------------

def rand_text(rng: random.Random, n: int | None = None) -> str:
    n = rng.randint(0, 12) if n is None else n
    pools = ("abc xyz", "the compiler", "\u00e9\u00fc\u4e2d\U0001F600", "\x00\x1f\"\\/", "<s></s><unk>")
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


def rand_value(rng: random.Random, depth: int = 0):
    """A random JSON-able value (ints past int64, strings with lone surrogates, nested lists)."""
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.18:
        return rng.random() < 0.5
    if r < 0.45:
        return rng.choice([0, 1, -1, 2, 7, 63, 64, 65, 255, 256, 257, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 53) + 1,
                           (1 << 63) - 1, -(1 << 63), rng.randint(-1000, 1000), rng.randint(0, 1 << 62)])
    if r < 0.6:
        return rng.choice([0.0, -0.0, 0.5, 1.0, 1.5, -2.5, 1e-320, 1e308, 3.14159, rng.uniform(-5, 5)])
    if r < 0.8:
        s = rand_text(rng)
        return s + "\ud800" if rng.random() < 0.1 else s
    if depth < 3 and r < 0.95:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3:
        return {rand_text(rng, 3): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.randint(0, 300)


def dumps(obj) -> bytes:
    return json.dumps(obj).encode("utf-8", "surrogatepass")


def frame(ftype: int, payload: bytes = b"") -> bytes:
    return struct.pack("<IB", 1 + len(payload), ftype) + payload


def hello_frame(token: str | None) -> bytes:
    """The good HELLO (with the server's token, if it has one)."""
    return frame(1, dumps({"protocol": 1} if token is None else {"protocol": 1, "token": token}))


def bad_field_request(rng: random.Random, rid: int) -> dict:
    req = {"id": rid, **GOOD_REQUEST}
    r = rng.random()
    if r < 0.75:
        req[rng.choice(FIELDS)] = rand_value(rng)
    elif r < 0.85:
        req[rand_text(rng, rng.randint(1, 8)) or "x"] = rand_value(rng)
    elif r < 0.95:
        del req[rng.choice(list(req))]
    else:
        req.pop("prompt_ids")
        req["prompt"] = rand_text(rng, rng.randint(0, 40))
    return req


def mutate_json(rng: random.Random, text: bytes) -> bytes:
    b = bytearray(text)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.4 and b:
            del b[rng.randrange(len(b))]
        elif op < 0.7:
            b.insert(rng.randint(0, len(b)), rng.choice(b'{}[]",:0123456789.eE-+ntfa\\'))
        elif b:
            del b[rng.randrange(len(b)):]
    return bytes(b)


def closing_case(rng: random.Random, kind: str, hello: bytes) -> bytes:
    """The bytes a closing-kind connection sends (the good HELLO ``hello`` first where the kind has one)."""
    good = dumps({"id": 1, **GOOD_REQUEST})
    if kind == "random_bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == "garbage_after_hello":
        return hello + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == "bad_length":
        n = rng.choice([0, MAX_FRAME + 1, MAX_FRAME + 2, 1 << 24, 0x7FFFFFFF, 0xFFFFFFFF, rng.randint(MAX_FRAME + 1,
                                                                                                  0xFFFFFFFF)])
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 5, 200])))
        return (hello if rng.random() < 0.7 else b"") + struct.pack("<I", n) + body
    if kind == "truncated":
        f = rng.choice([frame(2, good), frame(4), frame(3, b'{"id": 1}'), hello])
        cut = rng.randint(1, len(f) - 1)
        return (hello if f is not hello else b"") + f[:cut]
    if kind == "bad_json":
        payload = rng.choice([
            mutate_json(rng, good), b"[1, 2]", b"7", b'"x"', b"null", b'{"id": 1, "id": 2}', b'{"id": NaN}',
            b'{"id": Infinity}', b"\xff\xfe{}", b'{"prompt": "\xc3"}', b"{" * 40 + b"}" * 40,
            b'{"x":' + b"[" * 20 + b"]" * 20 + b"}", b'{"id": 1} {"id": 2}', b"", b"{", b'{"id": 1e999999}',
            b'{"id": 99999999999999999999999}'])
        ftype = rng.choice([1, 2, 2, 2, 3])
        return (hello if ftype != 1 else b"") + frame(ftype, payload)
    if kind == "bad_hello":
        obj = rng.choice([{"protocol": rand_value(rng)}, {}, {"protocol": 1, "token": rand_value(rng)},
                          {"protocol": 1, "token": rand_text(rng, rng.randint(0, 20))},
                          {"protocol": 1, rand_text(rng, 4) or "k": 1}, {"protocol": 0}, {"protocol": 2}])
        if rng.random() < 0.2:
            return frame(rng.choice([2, 3, 4, 5, 129, 130, rng.randint(6, 255)]), dumps(obj))
        return frame(1, dumps(obj))
    if kind == "bad_type":
        return hello + rng.choice([frame(rng.choice([0, 6, 7, 100, 128, 129, 130, 131, 132, 133, 134, 255]),
                                         dumps({"id": 1})),
                                   hello, frame(4, b"x"), frame(5, dumps({}))])
    raise ValueError(kind)


# ---- one connection ------------------------------------------------------------------------------

class Checker:
    """Counts and findings shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = Counter()        # malformed frames sent, by kind
        self.replies = Counter()     # reply frames, by type name (ERROR by kind)
        self.connections = 0
        self.findings: list[str] = []

    def finding(self, what: str) -> None:
        with self.lock:
            if len(self.findings) < 50:
                self.findings.append(what)


def read_reply(sock: socket.socket, chk: Checker, where: str):
    """The next reply frame, checked: ``(type, body)``; None at the end of the connection. Raises
    TimeoutError past the socket's timeout."""
    try:
        head = ss.recv_exact(sock, 4)
        if head is None:
            return None
        (n,) = struct.unpack("<I", head)
        if not 1 <= n <= MAX_FRAME + (2 << 20):
            chk.finding(f"{where}: reply length {n}")
            return None
        body = ss.recv_exact(sock, n)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if body is None:
        chk.finding(f"{where}: reply cut short")
        return None
    ftype, payload = body[0], body[1:]
    try:
        ft = FrameType(ftype)
    except ValueError:
        chk.finding(f"{where}: reply of frame type {ftype}")
        return None
    if ft == FrameType.TOKEN:
        if len(payload) < 8:
            chk.finding(f"{where}: TOKEN of {len(payload)} bytes")
            return None
        try:
            text = payload[8:].decode("utf-8")
        except UnicodeDecodeError:
            chk.finding(f"{where}: TOKEN text not UTF-8: {payload[8:]!r}")
            return None
        with chk.lock:
            chk.replies["TOKEN"] += 1
        return ft, struct.unpack_from("<II", payload) + (text,)
    try:
        obj = json.loads(payload.decode("utf-8"))
        if ft in REPLY_SHAPES:
            check_shape(obj, ft)
    except (UnicodeDecodeError, ValueError, FrameError) as e:
        chk.finding(f"{where}: malformed {ft.name}: {e}: {payload[:200]!r}")
        return None
    name = ft.name
    if ft == FrameType.ERROR:
        if obj["kind"] not in ERROR_KINDS or "\n" in obj["message"]:
            chk.finding(f"{where}: ERROR {obj}")
        if obj["kind"] == "internal":
            chk.finding(f"{where}: internal error: {obj['message']}")
        name = f"ERROR {obj['kind']}"
    with chk.lock:
        chk.replies[name] += 1
    return ft, obj


def _connect(host: str, port: int, timeout: float, chk: Checker, where: str) -> socket.socket | None:
    """A new connection, counted; None (and a finding) when it cannot be made."""
    with chk.lock:
        chk.connections += 1
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        chk.finding(f"{where}: cannot connect: {e}")
        return None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drain(sock: socket.socket, chk: Checker, where: str) -> None:
    """Read replies until the server closes; a frame after a closing ERROR is a finding."""
    closing = None
    while True:
        got = read_reply(sock, chk, where)
        if got is None:
            return
        if closing is not None:
            chk.finding(f"{where}: a frame after ERROR {closing}")
        if got[0] == FrameType.ERROR and got[1]["kind"] in CLOSING_ERRORS:
            closing = got[1]["kind"]


def run_closing(host, port, rng, kind, chk, hang_timeout, hello) -> None:
    data = closing_case(rng, kind, hello)
    where = f"{kind} {data[:80]!r}"
    with chk.lock:
        chk.sent[kind] += 1
    sock = _connect(host, port, hang_timeout, chk, where)
    if sock is None:
        return
    with sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first (a refused length), the reply is still readable
        try:
            drain(sock, chk, where)
        except TimeoutError:
            chk.finding(f"{where}: hang: neither answered nor closed within {hang_timeout} s of the end of input")


def run_kept(host, port, rng, n, chk, hang_timeout, hello) -> int:
    """One connection sending up to ``n`` kept-kind frames; returns how many it sent."""
    sock = _connect(host, port, hang_timeout, chk, "kept")
    if sock is None:
        return 0
    sent = 0
    with sock:
        try:
            sock.sendall(hello)
            got = read_reply(sock, chk, "kept HELLO")
            if got is None or got[0] != FrameType.WELCOME:
                return 0
            while sent < n:
                r = rng.random()
                if r < 0.05:
                    sock.sendall(frame(rng.choice([4, 5])))
                    got = read_reply(sock, chk, "kept HEALTH/STATS")
                    if got is None or got[0] not in (FrameType.HEALTH_OK, FrameType.STATS_OK):
                        chk.finding(f"kept: HEALTH/STATS answered {got}")
                        return sent
                    continue
                if r < 0.15:
                    kind = "bad_cancel"
                    payload = rng.choice([{"id": rand_value(rng)}, {"id": 5, rand_text(rng, 3) or "k": 1}, {},
                                          {"id": rng.randint(0, 1 << 32)}])
                    data = frame(3, dumps(payload))
                else:
                    kind = "bad_field"
                    rid = rng.randint(0, (1 << 32) - 1)
                    req = bad_field_request(rng, rid)
                    rid = req.get("id")
                    cancel_id = rid if type(rid) is int and 0 <= rid < 1 << 32 else 0
                    data = frame(2, dumps(req)) + frame(3, dumps({"id": cancel_id}))
                where = f"{kind} {data[:160]!r}"
                sock.sendall(data)
                sent += 1
                with chk.lock:
                    chk.sent[kind] += 1
                if kind == "bad_cancel":
                    # a CANCEL is answered only when refused: probe with HEALTH to know where the replies end
                    sock.sendall(frame(4))
                    while True:
                        got = read_reply(sock, chk, where)
                        if got is None:
                            return sent
                        if got[0] == FrameType.HEALTH_OK:
                            break
                        if got[0] == FrameType.ERROR and got[1]["kind"] in CLOSING_ERRORS:
                            drain(sock, chk, where)
                            return sent
                    continue
                while True:  # the request's frames up to its DONE or ERROR
                    got = read_reply(sock, chk, where)
                    if got is None:
                        return sent
                    if got[0] == FrameType.ERROR and got[1]["kind"] in CLOSING_ERRORS:
                        drain(sock, chk, where)  # e.g. an integer past int64 is not JSON to the server
                        return sent
                    if got[0] in (FrameType.DONE, FrameType.ERROR):
                        break
        except TimeoutError:
            chk.finding(f"kept: hang: no reply within {hang_timeout} s")
        except OSError:
            pass
    return sent


def run_slow(host, port, rng, chk, frame_timeout, hang_timeout, hello) -> None:
    """Part of a frame, then silence (or a trickle): ERROR bad_frame after the frame timeout, then closed."""
    with chk.lock:
        chk.sent["slow_partial"] += 1
    f = frame(2, dumps({"id": 1, **GOOD_REQUEST}))
    sock = _connect(host, port, hang_timeout, chk, "slow_partial")
    if sock is None:
        return
    with sock:
        try:
            sock.sendall(hello)
            got = read_reply(sock, chk, "slow HELLO")
            if got is None or got[0] != FrameType.WELCOME:  # (a client too slow for its HELLO is refused)
                return
            if rng.random() < 0.5:
                sock.sendall(f[:rng.randint(1, len(f) - 1)])
            else:  # one byte at a time, slower than the deadline allows, until the server answers
                for i in range(len(f)):
                    sock.sendall(f[i:i + 1])
                    if select.select([sock], [], [], frame_timeout / 4)[0]:
                        break
            got = read_reply(sock, chk, "slow_partial")
            if got is None or got[0] != FrameType.ERROR or "not complete within" not in got[1]["message"]:
                chk.finding(f"slow_partial: answered {got}")
            drain(sock, chk, "slow_partial")
        except TimeoutError:
            chk.finding(f"slow_partial: hang: not closed within {hang_timeout} s")
        except OSError:
            pass


# ---- a run ---------------------------------------------------------------------------------------

def fuzz_server(host: str, port: int, frames: int, clients: int, seed: int, frame_timeout: float,
                hang_timeout: float = 30.0, slow: int = 16, token: str | None = None) -> dict:
    """Send ``frames`` malformed frames from ``clients`` threads (plus ``slow`` stalled frames);
    returns the counts and findings."""
    chk = Checker()
    hello = hello_frame(token)
    share = [frames // clients + (1 if i < frames % clients else 0) for i in range(clients)]

    def client(i: int) -> None:
        rng = random.Random(seed * 7919 + i)
        left = share[i]
        while left > 0:
            # about a third of the frames on connections of their own, the rest 10..60 to a connection
            if rng.random() < 0.94:
                run_closing(host, port, rng, rng.choice(CLOSING_KINDS), chk, hang_timeout, hello)
                left -= 1
            else:
                left -= max(1, run_kept(host, port, rng, min(left, rng.randint(10, 60)), chk, hang_timeout,
                                             hello))

    def slow_client(i: int) -> None:
        run_slow(host, port, random.Random(seed * 104729 + i), chk, frame_timeout, hang_timeout, hello)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=slow_client, args=(i,)) for i in range(slow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    return {"frames": sum(chk.sent.values()), "connections": chk.connections, "seconds": round(seconds, 2),
            "frames_per_s": round(sum(chk.sent.values()) / seconds), "by_kind": dict(sorted(chk.sent.items())),
            "replies": dict(sorted(chk.replies.items())), "findings": chk.findings}


def good_client(host: str, port: int, token: str | None = None) -> str | None:
    """None when a well-formed client is served (a text prompt, 4 tokens), else what went wrong."""
    try:
        sock = ss.connect(host, port, token=token, timeout=60)
        with sock:
            tokens, end = ss.generate(sock, {"id": 1, "prompt": ss.PROMPT, "max_new_tokens": 4, "eos_ids": []})
            if end["frame"] != "DONE" or len(tokens) != 4:
                return f"a good request got {end}"
    except (OSError, AssertionError) as e:
        return f"a good client failed: {e}"
    return None


def run(frames: int = 10000, flavour: str = "release", clients: int = 8, seed: int = 0, frame_timeout: float = 1.0,
        slow: int = 16, token: str | None = None, quiet: bool = True) -> dict:
    """One fuzz run against a fresh server of ``flavour`` (with ``--token token`` unless None): the result
    document (``ok`` when no finding)."""
    with ss.device_server() as uri:
        args = ["--frame-timeout", str(frame_timeout)] + ([] if token is None else ["--token", token])
        srv = ss.start_server(uri, *args, flavour=flavour)
        try:
            res = fuzz_server(srv.host, srv.port, frames, clients, seed, frame_timeout, slow=slow, token=token)
            alive = srv.process.poll() is None
            res["server_alive"] = alive
            if not alive:
                res["findings"].append(f"the server died with exit code {srv.process.returncode}")
            else:
                bad = good_client(srv.host, srv.port, token)
                res["good_client_served"] = bad is None
                if bad:
                    res["findings"].append(bad)
        finally:
            rc = srv.stop()
        log = srv.log_text()
        res["exit_code"] = rc
        res["log_lines"] = log.count("\n")
        if rc != 0:
            res["findings"].append(f"exit code {rc} on SIGTERM (sanitizer finding: {ss.SANITIZER_EXIT_CODE})")
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "terminate called"):
            if marker in log:
                i = log.index(marker)
                res["findings"].append(f"log: {log[max(0, i - 200):i + 2000]}")
    res.update(flavour=flavour, token=token is not None, seed=seed, clients=clients, frame_timeout_s=frame_timeout,
               ok=not res["findings"])
    if not quiet:
        print(f"{flavour}{' --token' if token else ''}: {res['frames']} malformed frames over {res['connections']} connections in "
              f"{res['seconds']} s ({res['frames_per_s']}/s), {len(res['findings'])} findings")
        for k, v in res["by_kind"].items():
            print(f"  {k:22s} {v}")
        for k, v in res["replies"].items():
            print(f"  reply {k:16s} {v}")
        for f in res["findings"][:20]:
            print(f"  FINDING {f}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100000, help="malformed frames per build (default 100000)")
    ap.add_argument("--clients", type=int, default=8, help="client threads at once (default 8)")
    ap.add_argument("--slow", type=int, default=32, help="stalled-frame connections (default 32)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frame-timeout", type=float, default=1.0, help="the server's --frame-timeout (default 1)")
    ap.add_argument("--flavour", choices=("release", "asan", "both"), default="both")
    ap.add_argument("--token", help="run the server with --token TOKEN (the fuzz's good HELLO carries it)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_serve.json")
    args = ap.parse_args(argv)
    flavours = ("release", "asan") if args.flavour == "both" else (args.flavour,)
    runs = [run(args.frames, f, args.clients, args.seed, args.frame_timeout, args.slow, args.token, quiet=False)
            for f in flavours]
    doc = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "max_frame": MAX_FRAME, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
