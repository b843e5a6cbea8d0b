"""``dlavm serve`` as users run it (a real process: it builds dlavm-server into a fresh cache, starts a
simulator device server and the model server, forwards their logs), stopped by SIGTERM and by SIGINT
(exit 0, every child gone); a child that dies ends it with one error line; ``--host 0.0.0.0`` without
``--token`` is refused before anything starts; the token reaches dlavm-server through its environment,
never its command line; ``dlavm generate --connect`` and ``dlavm chat --connect`` (driven through
stdin) against it, their token from ``--token`` or ``$DLAVM_SERVE_TOKEN``."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlavm.serve import Client, UnauthorizedError
from tests.serve.serve_support import PROMPT, ROOT, TOKEN_ENV, llm_artifact, need_gxx

CLI = [sys.executable, "-m", "dlavm.cli.main"]


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class Serve:
    """A ``dlavm serve`` process on a free port; ``stderr`` is its log file."""

    def __init__(self, art: Path, work: Path, env: dict, *args: str):
        stamp = time.monotonic_ns()
        self.port_file, self.log = work / f"port-{stamp}", work / f"serve-{stamp}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(CLI + ["serve", str(art), "--port", "0", "--port-file", str(self.port_file),
                                                *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=env, cwd=ROOT)
        deadline = time.monotonic() + 900   # the first start builds dlavm-server (minutes on a busy machine)
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            assert self.proc.poll() is None, f"dlavm serve exited with {self.proc.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"dlavm serve did not start:\n{self.text()}"
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.children = _children(self.proc.pid)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dlavm serve did not stop within 60 s of {sig.name}:\n{self.text()}") from None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    need_gxx()
    work = tmp_path_factory.mktemp("cli-serve")
    env = dict(os.environ, DLAVM_CACHE_DIR=str(work / "cache"))
    env.pop(TOKEN_ENV, None)
    return llm_artifact(), work, env


@pytest.fixture(scope="module")
def served(setup):
    art, work, env = setup
    s = Serve(art, work, env)
    yield s
    s.stop()


def test_serve_builds_once_serves_and_stops_on_sigterm(setup):
    art, work, env = setup
    s = Serve(art, work, env)
    try:
        log = s.text()
        assert "build dlavm-server" in log and "serving model 'llama' on 127.0.0.1:" in log
        assert "device: dlavm device server: target tiny, listening on 127.0.0.1:" in log
        assert len(s.children) == 2 and all(_alive(p) for p in s.children)   # device server, dlavm-server
        with Client("127.0.0.1", s.port) as c:
            done = c.generate(PROMPT, max_new_tokens=4)
        assert done.new_tokens >= 1
    finally:
        rc = s.stop(signal.SIGTERM)
    log = s.text()
    assert rc == 0, log
    assert "dlavm-server: request " in log and "stopped (SIGTERM)" in log and "error" not in log.lower()
    assert not [p for p in s.children if _alive(p)]
    exes = list((work / "cache" / "serve").glob("*/dlavm-server"))
    assert len(exes) == 1


def test_sigint_stops_everything_and_a_second_start_uses_the_cache(setup):
    art, work, env = setup
    s = Serve(art, work, env)
    rc = s.stop(signal.SIGINT)
    log = s.text()
    assert rc == 0 and "stopped (SIGINT)" in log and "cached:" in log, log
    assert not [p for p in s.children if _alive(p)]


def test_a_dying_child_ends_serve_with_one_error_line(setup):
    art, work, env = setup
    s = Serve(art, work, env)
    device = next(p for p in s.children if b"hw_models.server" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(device, signal.SIGKILL)
    rc = s.proc.wait(60)
    errors = [ln for ln in s.text().splitlines() if ln.startswith("error:")]
    assert rc == 1 and errors == ["error: the device server was killed by signal 9"], s.text()
    assert not [p for p in s.children if _alive(p)]


def test_serve_on_a_given_device_starts_no_device_and_leaves_it_running(setup):
    from tests.serve.serve_support import device_process
    art, work, env = setup
    with device_process() as (uri, dev):
        s = Serve(art, work, env, "--device", uri)
        try:
            assert len(s.children) == 1 and "device:" not in s.text() and f"(device {uri})" in s.text()
            with Client("127.0.0.1", s.port) as c:
                assert c.generate(PROMPT, max_new_tokens=2).new_tokens >= 1
        finally:
            assert s.stop(signal.SIGTERM) == 0, s.text()
        assert dev.poll() is None     # not ours to stop


def test_a_port_in_use_is_one_error_line_naming_it(setup):
    import socket
    art, work, env = setup
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        res = subprocess.run(CLI + ["serve", str(art), "--port", str(port)], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=600)
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert res.returncode == 2 and len(errors) == 1 and res.stderr.splitlines()[-1] == errors[0], res.stderr
    assert errors[0].startswith("error: the model server (dlavm-server) exited with code 2: ")
    assert f"127.0.0.1:{port}" in errors[0]


def test_a_public_host_without_token_is_refused_before_anything_starts(setup):
    art, work, env = setup
    res = subprocess.run(CLI + ["serve", str(art), "--host", "0.0.0.0", "--port", "0"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--token" in res.stderr, res.stderr
    assert "build" not in res.stderr


def _environ(pid: int) -> dict:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(kv.split(b"=", 1) for kv in data.split(b"\0") if b"=" in kv)


def test_the_token_is_kept_off_every_command_line(setup):
    """``dlavm serve --token S``: S is in no child's /proc/PID/cmdline (what ``ps`` shows every user);
    dlavm-server has it in its environment and asks for it; generate and chat --connect take it from
    ``$DLAVM_SERVE_TOKEN`` as from --token."""
    art, work, env = setup
    secret = "cmdline-s3cret-7f"
    s = Serve(art, work, env, "--token", secret)
    try:
        assert len(s.children) == 2
        for pid in s.children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert secret.encode() not in cmdline, cmdline
        server = next(p for p in s.children if b"dlavm-server" in Path(f"/proc/{p}/cmdline").read_bytes())
        device = next(p for p in s.children if p != server)
        assert _environ(server).get(TOKEN_ENV.encode()) == secret.encode()
        assert TOKEN_ENV.encode() not in _environ(device)
        with pytest.raises(UnauthorizedError):
            Client("127.0.0.1", s.port)
        with Client("127.0.0.1", s.port, token=secret) as c:
            assert c.generate(PROMPT, max_new_tokens=2).new_tokens >= 1
        gen = CLI + ["generate", "--connect", f"127.0.0.1:{s.port}", "--prompt-ids", "5,6", "--max-new-tokens", "2"]
        for extra, given_env in (([], {TOKEN_ENV: secret}), (["--token", secret], {})):
            res = subprocess.run(gen + extra, capture_output=True, text=True, cwd=ROOT, timeout=300,
                                 env={**env, **given_env})
            assert res.returncode == 0 and "new tokens" in res.stderr, (extra, res.stderr)
        res = subprocess.run(gen, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
        assert res.returncode != 0 and "token" in res.stderr, res.stderr
        chat = CLI + ["chat", "--connect", f"127.0.0.1:{s.port}", "--max-new-tokens", "2"]
        res = subprocess.run(chat, input="hello\n", capture_output=True, text=True, cwd=ROOT, timeout=300,
                             env={**env, TOKEN_ENV: secret})
        assert res.returncode == 0 and res.stdout.strip(), res.stderr
        res = subprocess.run(chat, input="", capture_output=True, text=True, cwd=ROOT, timeout=300,
                             env={**env, TOKEN_ENV: "wrong"})
        assert res.returncode != 0 and "token" in res.stderr, res.stderr
    finally:
        assert s.stop(signal.SIGTERM) == 0, s.text()


def test_serve_takes_its_token_from_the_environment(setup):
    """``dlavm serve`` without --token and ``$DLAVM_SERVE_TOKEN`` set: that is its token."""
    art, work, env = setup
    s = Serve(art, work, {**env, TOKEN_ENV: "env-s3cret"})
    try:
        with pytest.raises(UnauthorizedError):
            Client("127.0.0.1", s.port)
        with Client("127.0.0.1", s.port, token="env-s3cret") as c:
            assert c.health()["status"] == "ok"
    finally:
        assert s.stop(signal.SIGTERM) == 0, s.text()
    # local generation (no --connect) ignores the variable, set for the other commands; --token is refused
    gen = CLI + ["generate", str(art), "--prompt-ids", "1,2", "--max-new-tokens", "1"]
    res = subprocess.run(gen, capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**env, TOKEN_ENV: "env-s3cret"})
    assert res.returncode == 0, res.stderr
    res = subprocess.run(gen + ["--token", "x"], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert res.returncode == 2 and "--token is the secret of --connect" in res.stderr, res.stderr


def test_generate_connect_streams_what_the_client_gets(served):
    with Client("127.0.0.1", served.port) as c:
        want = c.generate(PROMPT, max_new_tokens=6, temperature=0.7, seed=3)
    res = subprocess.run(CLI + ["generate", "--connect", f"127.0.0.1:{served.port}", "--prompt", PROMPT,
                                "--max-new-tokens", "6", "--temperature", "0.7", "--seed", "3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == PROMPT + want.text + "\n"
    assert f"stop: {want.stop_reason}" in res.stderr and f"{want.new_tokens} new tokens" in res.stderr
    ids = subprocess.run(CLI + ["generate", "--connect", f"127.0.0.1:{served.port}", "--prompt-ids", "5,6,7",
                                "--max-new-tokens", "3", "--eos-id", "2"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert ids.returncode == 0, ids.stderr
    # --chat: the prompt as one user message in the served model's chat template, without an extra BOS
    from dlavm.tokenizer.bundled import render_chat
    with Client("127.0.0.1", served.port) as c:
        info = c.info
        chat = c.generate(render_chat(info["chat_template"], [{"role": "user", "content": "hello"}],
                                      info["bos_token"], info["eos_token"]), add_bos=False, max_new_tokens=4)
    res = subprocess.run(CLI + ["generate", "--connect", f"127.0.0.1:{served.port}", "--prompt", "hello", "--chat",
                                "--max-new-tokens", "4"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and res.stdout == "hello" + chat.text + "\n", res.stderr


def test_chat_connect_through_stdin(served):
    from dlavm.tokenizer.bundled import render_chat
    with Client("127.0.0.1", served.port) as c:
        info = c.info
        first = [{"role": "user", "content": "hello"}]
        r1 = c.generate(render_chat(info["chat_template"], first, info["bos_token"], info["eos_token"]),
                        add_bos=False, max_new_tokens=5)
        second = first + [{"role": "assistant", "content": r1.text}, {"role": "user", "content": "more"}]
        r2 = c.generate(render_chat(info["chat_template"], second, info["bos_token"], info["eos_token"]),
                        add_bos=False, max_new_tokens=5)
    res = subprocess.run(CLI + ["chat", "--connect", f"127.0.0.1:{served.port}", "--max-new-tokens", "5"],
                         input="hello\nmore\n/exit\nnot sent\n", capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == r1.text + "\n" + r2.text + "\n"
    eof = subprocess.run(CLI + ["chat", "--connect", f"127.0.0.1:{served.port}", "--max-new-tokens", "2"],
                         input="", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert eof.returncode == 0 and eof.stdout == ""


def test_serve_with_the_openai_endpoint_starts_and_stops_all_three(setup):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    import json
    import re
    import urllib.request
    art, work, env = setup
    s = Serve(art, work, env, "--http-port", "0")
    try:
        m = re.search(r"OpenAI endpoint http://127\.0\.0\.1:(\d+)/v1", s.text())
        assert m, s.text()
        assert len(s.children) == 3   # device server, dlavm-server, gateway
        with urllib.request.urlopen(f"http://127.0.0.1:{m[1]}/v1/models", timeout=60) as r:
            assert [d["id"] for d in json.load(r)["data"]] == ["llama"]
    finally:
        rc = s.stop(signal.SIGTERM)
    assert rc == 0 and "stopped (SIGTERM)" in s.text(), s.text()
    assert not [p for p in s.children if _alive(p)]


def test_chat_drops_the_oldest_exchange_past_the_context(served):
    lines = ["the compiler maps each layer to the device"] * 6 + ["/reset", "hello"]
    res = subprocess.run(CLI + ["chat", "--connect", f"127.0.0.1:{served.port}", "--max-new-tokens", "6"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 7                      # every message got its reply
    assert "the oldest exchange is dropped" in res.stderr and "[conversation reset]" in res.stderr
