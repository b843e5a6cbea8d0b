"""Shared support of the serving tests (doc/serve.md): one tiny LLM artifact with a bundled byte-level
BPE tokenizer and a chat template (tests/llm/hf_fixture.py's Llama: vocab 256, hidden 64, 2 layers,
compiled for the 'tiny' target with a context of 64), the `dlavm-server` executable linked for it
(`make -C clib server`, release or ASan/UBSan flavour), a simulator device server, a running
`dlavm-server`, and raw serving-protocol frames.

Everything is real: the server binary, sockets on 127.0.0.1, the simulator device server.
Everything is built once per test process and cached here::

    from tests.serve.serve_support import llm_artifact, server_exe, device_server, serving, connect
    with device_server() as uri, serving(uri) as (host, port, proc):
        sock = connect(host, port)                  # HELLO sent, WELCOME read: sock.welcome
        send_json(sock, GENERATE, {"id": 1, "prompt": "the compiler", "max_new_tokens": 4})
        ftype, payload = recv_frame(sock)
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.driver_support import sim_server
from tests.clib.clib_build import CLIB, ROOT, SANITIZER_EXIT_CODE, flavour_flags, sanitizer_env

# --- the wire, restated from doc/serve.md (the tests check the server against the document, so they
# do not import the implementation's constants)
HELLO, GENERATE, CANCEL, HEALTH, STATS = 1, 2, 3, 4, 5
WELCOME, TOKEN, DONE, ERROR, HEALTH_OK, STATS_OK = 129, 130, 131, 132, 133, 134
PROTOCOL = 1
#: the environment variable dlavm-server takes its token from when no option gives one
TOKEN_ENV = "DLAVM_SERVE_TOKEN"

MODEL = "llama"            # the artifact's model name (the checkpoint folder's name)
MAX_CTX = 64
VOCAB = 256
TARGET = "tiny"
BOS_ID, EOS_IDS = 1, [2]   # tests/llm/hf_fixture.py's tokenizer_config
#: a prompt in the tokenizer's training text (encodes to few tokens)
PROMPT = "the compiler maps each layer"

_WORK: Path | None = None
_LOCK = threading.Lock()


def work_dir() -> Path:
    """A private folder of this test process, removed at exit (artifacts, executables, logs)."""
    global _WORK
    with _LOCK:
        if _WORK is None:
            _WORK = Path(tempfile.mkdtemp(prefix="dlavm-serve-tests-"))
            atexit.register(shutil.rmtree, _WORK, True)
    return _WORK


def need_gxx() -> None:
    if shutil.which("g++") is None or shutil.which("make") is None:
        pytest.skip("g++ and make are needed to build dlavm-server")


@functools.lru_cache(maxsize=None)
def llm_artifact(tokenizer: bool = True) -> Path:
    """The tiny LLM artifact (compiled once per process): ``<dir>/llama`` with its generated driver
    (``driver/llama.cc``, ``driver/llama_llm.cc``) and, with ``tokenizer``, the bundled
    ``tokenizer.json`` (BOS 1, EOS [2], add_bos true) and chat template; without, token ids only."""
    from dlavm.llm import compile_llm
    from tests.llm.hf_fixture import write_checkpoint
    base = work_dir() / ("with-tok" if tokenizer else "no-tok")
    ckpt = write_checkpoint(base / "hf")
    if not tokenizer:
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (ckpt / f).unlink()
    cm = compile_llm(f"hf:{ckpt}", target=TARGET, weights="int8", max_seq=MAX_CTX)
    return Path(cm.save(base / "art" / MODEL))


def _make_lock():
    (CLIB / "build").mkdir(exist_ok=True)
    return open(CLIB / "build" / ".make.lock", "w")


@functools.lru_cache(maxsize=None)
def server_exe(flavour: str = "release", tokenizer: bool = True) -> Path:
    """`make -C clib server ARTIFACT=... OUT=...` for :func:`llm_artifact`: the -O2 release build, or
    ``asan`` (clib/build-asan, AddressSanitizer + UndefinedBehaviorSanitizer; run it with
    :func:`server_env`). Serialised with other builds of clib by the lock file tests/clib uses."""
    need_gxx()
    art = llm_artifact(tokenizer)
    out = work_dir() / "bin" / f"dlavm-server-{flavour}-{'tok' if tokenizer else 'ids'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-C", str(CLIB), "server", f"ARTIFACT={art}", f"OUT={out}"]
    if flavour == "asan":
        cmd += ["BUILD=build-asan", "CXXFLAGS=" + " ".join(flavour_flags("asan"))]
    elif flavour != "release":
        raise ValueError(f"flavour {flavour!r} is not release or asan")
    with _make_lock() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"building dlavm-server ({flavour}) failed:\n{res.stdout}{res.stderr}"
    return out


def server_env(flavour: str = "release", extra: dict | None = None) -> dict:
    """The environment to run a server of ``flavour`` in (the sanitizer options of clib/Makefile, a
    finding exiting with SANITIZER_EXIT_CODE), without a token from the test's own environment
    (``$DLAVM_SERVE_TOKEN``), then with ``extra``."""
    env = sanitizer_env() if flavour == "asan" else dict(os.environ)
    env.pop(TOKEN_ENV, None)
    return {**env, **(extra or {})}


@contextlib.contextmanager
def device_server(target: str = TARGET):
    """``python -m hw_models.server`` on an ephemeral 127.0.0.1 port; yields its ``sim://`` URI (use
    :func:`device_process` to get the process too)."""
    with device_process(target) as (uri, _):
        yield uri


@contextlib.contextmanager
def device_process(target: str = TARGET, port: int = 0):
    """As :func:`device_server`, yielding ``(uri, process)`` (to kill or restart the device); ``port``
    0 picks a free one, another number reuses one (a restarted device at the same address)."""
    d = work_dir() / "dev"
    d.mkdir(exist_ok=True)
    with sim_server(d, target, port=port) as served:
        yield served


@contextlib.contextmanager
def frozen(device_proc: subprocess.Popen):
    """Stop the device server process (SIGSTOP) for the block, then let it go on (SIGCONT): a request
    that has started stays running, whatever the machine's speed, so what the server does meanwhile
    (queueing, busy, cancel, health) is observed deterministically."""
    device_proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        device_proc.send_signal(signal.SIGCONT)


class Served:
    """A running dlavm-server: unpacks as ``(host, port, process)``; ``log`` is the file its stderr
    goes to (read it with :meth:`log_text`), ``returncode`` is set once it stopped."""

    def __init__(self, host: str, port: int, process: subprocess.Popen, log: Path, flavour: str):
        self.host, self.port, self.process, self.log, self.flavour = host, port, process, log, flavour
        self.returncode: int | None = None

    def __iter__(self):
        return iter((self.host, self.port, self.process))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait: the exit code (0 for a clean stop; SANITIZER_EXIT_CODE for a finding)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"dlavm-server did not stop within {timeout} s of SIGTERM:\n"
                                     f"{self.log_text()[-4000:]}") from None
        self.returncode = self.process.returncode
        return self.returncode

    def assert_clean_stop(self) -> None:
        """Stop it and check: exit code 0, no sanitizer report, no crash line in the log."""
        rc = self.stop()
        log = self.log_text()
        assert rc == 0, f"dlavm-server exited with {rc} (sanitizer finding: {SANITIZER_EXIT_CODE}):\n{log[-6000:]}"
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "terminate called"):
            assert bad not in log, log[-6000:]


def start_server(device_uri: str, *args: str, flavour: str = "release", tokenizer: bool = True,
                 artifact: Path | None = None, exe: Path | None = None, wait: bool = True,
                 env: dict | None = None, pass_fds: tuple = ()):
    """Start dlavm-server (``--port 0 --port-file``) with extra ``args`` (and ``env``, variables added
    to :func:`server_env`'s; ``pass_fds``, file descriptors it inherits); returns a :class:`Served`
    once it listens (``wait``), or the Served of a process that may be exiting (``wait=False``)."""
    exe = exe or server_exe(flavour, tokenizer)
    artifact = artifact or llm_artifact(tokenizer)
    d = work_dir() / "run"
    d.mkdir(exist_ok=True)
    stamp = time.monotonic_ns()
    port_file, log = d / f"port-{stamp}", d / f"server-{stamp}.log"
    argv = [str(exe), "--artifact", str(artifact), "--device", device_uri, "--port", "0",
            "--port-file", str(port_file), *map(str, args)]
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=server_env(flavour, env), pass_fds=pass_fds)
    served = Served("127.0.0.1", 0, proc, log, flavour)
    if not wait:
        return served
    deadline = time.monotonic() + (120 if flavour == "asan" else 60)
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            served.port = int(port_file.read_text().strip())
            return served
        if proc.poll() is not None:
            raise AssertionError(f"dlavm-server exited with {proc.returncode}:\n{served.log_text()}")
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError(f"dlavm-server did not listen:\n{served.log_text()}")


@contextlib.contextmanager
def serving(device_uri: str, *args: str, flavour: str = "release", tokenizer: bool = True,
            check_clean: bool = True, env: dict | None = None, pass_fds: tuple = ()):
    """A running dlavm-server for ``device_uri`` (``env``, ``pass_fds``: as :func:`start_server`); yields
    a :class:`Served` (``host, port, proc = ...``). On exit it is stopped with SIGTERM and, with
    ``check_clean``, must exit 0 with a clean log."""
    served = start_server(device_uri, *args, flavour=flavour, tokenizer=tokenizer, env=env, pass_fds=pass_fds)
    try:
        yield served
    except BaseException:
        served.stop()
        raise
    if check_clean:
        served.assert_clean_stop()
    else:
        served.stop()


def run_server_once(*argv: str, flavour: str = "release", tokenizer: bool = True,
                    timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the executable with ``argv`` (and ``env`` added to :func:`server_env`'s) to completion (for
    refused start-ups): its CompletedProcess."""
    return subprocess.run([str(server_exe(flavour, tokenizer)), *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=server_env(flavour, env))


# --- raw frames

def frame(ftype: int, payload: bytes | dict | None = b"") -> bytes:
    """One frame: u32 length (type byte + payload), type, payload (a dict: compact JSON)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, separators=(",", ":")).encode()
    payload = payload or b""
    return struct.pack("<IB", 1 + len(payload), ftype) + payload


def send_frame(sock: socket.socket, ftype: int, payload: bytes | dict | None = b"") -> None:
    sock.sendall(frame(ftype, payload))


def send_json(sock: socket.socket, ftype: int, obj: dict) -> None:
    sock.sendall(frame(ftype, obj))


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes from ``sock``, None when the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, timeout: float | None = 60.0) -> tuple[int, bytes] | None:
    """``(type, payload)`` of the next frame, None when the server closed the connection (also mid-frame
    or reset). A frame longer than 16 MiB fails the test."""
    if timeout is not None:
        sock.settimeout(timeout)
    try:
        head = recv_exact(sock, 4)
        if head is None:
            return None
        (n,) = struct.unpack("<I", head)
        assert 1 <= n <= 16 << 20, f"server sent a frame length of {n}"
        body = recv_exact(sock, n)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if body is None:
        return None
    return body[0], body[1:]


def recv_json(sock: socket.socket, timeout: float | None = 60.0) -> tuple[int, dict | tuple] | None:
    """As :func:`recv_frame` with the payload decoded: a dict for JSON frames, ``(id, token_id, text)``
    for TOKEN, {} for an empty payload."""
    got = recv_frame(sock, timeout)
    if got is None:
        return None
    ftype, payload = got
    if ftype == TOKEN:
        rid, tid = struct.unpack_from("<II", payload)
        return ftype, (rid, tid, payload[8:].decode("utf-8"))
    return ftype, (json.loads(payload) if payload else {})


def closed(sock: socket.socket, timeout: float = 30.0) -> bool:
    """True when the server closes the connection within ``timeout`` (pending frames are skipped)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if recv_frame(sock, max(0.01, end - time.monotonic())) is None:
            return True
    return False


class Sock(socket.socket):
    """A socket that can carry attributes (``welcome``: the WELCOME a :func:`connect` got)."""

    welcome: dict | None = None


def raw_connect(host: str, port: int, timeout: float = 60.0) -> Sock:
    """A TCP connection to the server, nothing sent."""
    family, stype, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = Sock(family, stype, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(addr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def connect(host: str, port: int, token: str | None = None, timeout: float = 60.0) -> Sock:
    """A connection that sent HELLO and read WELCOME (kept as ``sock.welcome``, a dict)."""
    sock = raw_connect(host, port, timeout)
    hello = {"protocol": PROTOCOL} if token is None else {"protocol": PROTOCOL, "token": token}
    send_json(sock, HELLO, hello)
    got = recv_json(sock, timeout)
    assert got is not None and got[0] == WELCOME, got
    sock.welcome = got[1]
    return sock


def generate(sock: socket.socket, request: dict, timeout: float = 120.0) -> tuple[list, dict]:
    """Send GENERATE ``request`` and read its frames to the end: ``(tokens, end)``, ``tokens`` the
    TOKEN tuples ``(id, token_id, text)``, ``end`` the DONE dict or the ERROR dict (``end["frame"]``
    says which: "DONE" / "ERROR")."""
    send_json(sock, GENERATE, request)
    tokens = []
    while True:
        got = recv_json(sock, timeout)
        assert got is not None, "the server closed the connection during a request"
        ftype, body = got
        if ftype == TOKEN:
            tokens.append(body)
        elif ftype in (DONE, ERROR):
            return tokens, {**body, "frame": "DONE" if ftype == DONE else "ERROR"}
        else:
            raise AssertionError(f"unexpected frame type {ftype} during a request: {body}")
