"""dlavm-server speaks the serving protocol of doc/serve.md: raw frames on real sockets against the
real executable (linked for a tiny LLM artifact with a bundled tokenizer) and a simulator device
server. Every frame type, every ERROR kind a client can cause, the security rules, the frame limit,
the context refusal before device work, stop strings, text and token-id prompts, and start-up
refusals (one `error:` line, exit code 2)."""
from __future__ import annotations

import json
import os
import signal
import struct

import pytest

from tests.serve.serve_support import (BOS_ID, CANCEL, DONE, EOS_IDS, ERROR, GENERATE, HEALTH, HEALTH_OK, HELLO,
                                       MAX_CTX, MODEL, PROMPT, STATS, STATS_OK, TARGET, TOKEN, TOKEN_ENV, VOCAB,
                                       WELCOME,
                                       closed, connect, device_process, frame, frozen, generate,
                                       llm_artifact, need_gxx, raw_connect, recv_json, run_server_once,
                                       send_frame, send_json, serving, start_server)

ERROR_KINDS = {"bad_frame", "too_large", "unauthorized", "bad_request", "context", "busy", "device", "internal"}


@pytest.fixture(scope="module")
def device_and_process():
    need_gxx()
    with device_process() as served:
        yield served            # (uri, process): freeze the process to hold a request running


@pytest.fixture(scope="module")
def device(device_and_process):
    return device_and_process[0]


@pytest.fixture(scope="module")
def server(device):
    with serving(device) as served:
        yield served


@pytest.fixture(scope="module")
def hf_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(llm_artifact() / "tokenizer" / "tokenizer.json"))


@pytest.fixture(scope="module")
def python_model():
    from dlavm.compiler import load
    return load(llm_artifact())


def stats(sock) -> dict:
    send_frame(sock, STATS)
    ftype, body = recv_json(sock)
    assert ftype == STATS_OK
    return body


def health(sock) -> dict:
    send_frame(sock, HEALTH)
    ftype, body = recv_json(sock)
    assert ftype == HEALTH_OK
    return body


def refused(sock, kind: str, *fragments: str, still_open: bool = True) -> dict:
    """The next frame is ERROR ``kind`` whose message has ``fragments``; then the connection is kept
    (HEALTH answered) or closed."""
    got = recv_json(sock)
    assert got is not None, "the server closed the connection without an ERROR"
    ftype, body = got
    assert ftype == ERROR, (ftype, body)
    assert set(body) == {"id", "kind", "message"} and body["kind"] == kind, body
    assert "\n" not in body["message"]
    for f in fragments:
        assert f in body["message"], body["message"]
    if still_open:
        assert health(sock)["status"] == "ok"
    else:
        assert closed(sock)
    return body


def text_of(tokens, end) -> str:
    return "".join(t[2] for t in tokens) + end["text_tail"]


# --- HELLO / WELCOME, HEALTH, STATS

def test_welcome_describes_the_model(server):
    sock = connect(server.host, server.port)
    w = sock.welcome
    art = llm_artifact()
    assert w == {"protocol": 1, "model": MODEL, "target": TARGET, "max_ctx": MAX_CTX, "vocab": VOCAB,
                 "max_frame": 1 << 20, "max_queue": 64, "tokenizer": True, "bos_id": BOS_ID, "eos_ids": EOS_IDS,
                 "add_bos": True, "bos_token": "<s>", "eos_token": "</s>",
                 "chat_template": (art / "tokenizer" / "chat_template.jinja").read_text()}
    assert health(sock) == {"status": "ok", "queue": 0, "running": False}
    s = stats(sock)
    assert set(s) == {"uptime_s", "requests", "completed", "cancelled", "errors", "prompt_tokens", "new_tokens",
                      "sim_ms", "host_ms", "host_overhead_ms", "queue", "connections", "device_reconnects"}
    assert set(s["errors"]) == ERROR_KINDS and s["connections"] >= 1 and s["device_reconnects"] == 0


# --- GENERATE

def test_text_prompt_streams_the_reply_of_the_python_runtime(server, hf_tokenizer, python_model):
    sock = connect(server.host, server.port)
    tokens, end = generate(sock, {"id": 7, "prompt": PROMPT, "max_new_tokens": 12, "eos_ids": []})
    prompt = [BOS_ID, *hf_tokenizer.encode(PROMPT, add_special_tokens=False).ids]     # add_bos: WELCOME's
    ids = [t[1] for t in tokens]
    assert ids == list(python_model.generate(prompt, 12))
    assert all(t[0] == 7 for t in tokens)
    assert end["frame"] == "DONE" and end["id"] == 7 and end["stop_reason"] == "max_new_tokens"
    assert (end["prompt_tokens"], end["new_tokens"]) == (len(prompt), 12)
    assert text_of(tokens, end) == hf_tokenizer.decode(ids, skip_special_tokens=True)
    assert isinstance(end["seed"], int) and end["sim_ms"] > 0 and end["host_ms"] > 0 and end["queue_ms"] >= 0
    tokens2, end2 = generate(sock, {"id": 8, "prompt": PROMPT, "max_new_tokens": 12, "eos_ids": [],
                                    "add_bos": False})
    assert [t[1] for t in tokens2] == list(python_model.generate(prompt[1:], 12))
    assert end2["prompt_tokens"] == len(prompt) - 1


def test_ids_prompt_eos_and_context(server, python_model):
    sock = connect(server.host, server.port)
    prompt = [5, 9, 33, 4]
    tokens, end = generate(sock, {"id": 1, "prompt_ids": prompt, "max_new_tokens": 6, "eos_ids": None})
    want = list(python_model.generate(prompt, 6))
    assert [t[1] for t in tokens] == want[:len(tokens)]
    # stop at a chosen EOS: the token is sent, then DONE eos
    tokens, end = generate(sock, {"id": 2, "prompt_ids": prompt, "max_new_tokens": 6, "eos_ids": [want[2]]})
    assert [t[1] for t in tokens] == want[:want.index(want[2]) + 1] and end["stop_reason"] == "eos"
    # the KV cache fills up: stop_reason context
    long = [(7 * i) % VOCAB for i in range(MAX_CTX - 3)]
    tokens, end = generate(sock, {"id": 3, "prompt_ids": long, "max_new_tokens": 10, "eos_ids": []})
    assert end["stop_reason"] == "context" and end["new_tokens"] == len(tokens) == 4
    # a whole-context prompt still gives its one token
    tokens, end = generate(sock, {"id": 4, "prompt_ids": long + [1, 2, 3], "max_new_tokens": 5, "eos_ids": []})
    assert len(tokens) == 1 and end["stop_reason"] == "context"


def test_sampling_is_reproducible_from_the_reported_seed(server):
    sock = connect(server.host, server.port)
    req = {"prompt_ids": [3, 4, 5], "max_new_tokens": 10, "temperature": 0.9, "top_k": 50, "top_p": 0.95,
           "eos_ids": []}
    t1, e1 = generate(sock, {"id": 1, **req})
    t2, e2 = generate(sock, {"id": 2, **req, "seed": e1["seed"]})
    assert 0 <= e1["seed"] < 2 ** 63 and e2["seed"] == e1["seed"]
    assert [t[1] for t in t1] == [t[1] for t in t2]


def test_stop_strings_end_the_reply_before_them(server, hf_tokenizer):
    sock = connect(server.host, server.port)
    req = {"prompt": PROMPT, "max_new_tokens": 24, "eos_ids": []}
    tokens, end = generate(sock, {"id": 1, **req})
    full = text_of(tokens, end)
    assert len(full) > 12
    stop = full[len(full) // 2:len(full) // 2 + 3]
    cut = full[:full.index(stop)]
    tokens, end = generate(sock, {"id": 2, **req, "stop": ["never in the text \u00e9", stop]})
    assert end["stop_reason"] == "stop" and text_of(tokens, end) == cut and end["new_tokens"] == len(tokens)
    assert len(tokens) < 24
    # text that might begin a stop string is held back until it cannot: the reply is the same without one
    tokens, end = generate(sock, {"id": 3, **req, "stop": [full[-1] + "\u00e9"]})
    assert end["stop_reason"] == "max_new_tokens" and text_of(tokens, end) == full


def test_cancel_a_running_request_and_an_unknown_id(server, device_and_process):
    sock = connect(server.host, server.port)
    send_json(sock, CANCEL, {"id": 99})                               # no such request: ignored
    send_json(sock, GENERATE, {"id": 5, "prompt_ids": [1, 2], "max_new_tokens": MAX_CTX - 2, "eos_ids": []})
    ftype, tok = recv_json(sock)
    assert ftype == TOKEN and tok[0] == 5
    with frozen(device_and_process[1]):                              # still running when CANCEL arrives
        send_json(sock, CANCEL, {"id": 5})
        send_frame(sock, HEALTH)          # answered after the CANCEL was taken (one reader per connection)
        n = 1
        while (got := recv_json(sock))[0] == TOKEN:
            n += 1
        assert got[0] == HEALTH_OK
    while True:
        ftype, body = recv_json(sock)
        if ftype != TOKEN:
            break
        n += 1
    assert ftype == DONE and body["stop_reason"] == "cancelled" and body["new_tokens"] == n < MAX_CTX - 2
    assert health(sock)["running"] is False


def test_one_request_at_a_time_per_connection(server):
    sock = connect(server.host, server.port)
    send_json(sock, GENERATE, {"id": 1, "prompt_ids": [1, 2], "max_new_tokens": 20, "eos_ids": []})
    send_json(sock, GENERATE, {"id": 2, "prompt_ids": [1, 2], "max_new_tokens": 2})
    frames = []
    while not frames or frames[-1][0] != DONE:
        frames.append(recv_json(sock))
    errors = [b for f, b in frames if f == ERROR]
    assert len(errors) == 1 and errors[0]["id"] == 2 and errors[0]["kind"] == "bad_request"
    assert "request 1 is still queued or running" in errors[0]["message"]
    assert frames[-1][1]["id"] == 1 and frames[-1][1]["new_tokens"] == 20


@pytest.mark.parametrize("request_, fragments", [
    ({"id": 1, "prompt_ids": [1], "temprature": 1}, ["unknown key \"temprature\""]),
    ({"prompt_ids": [1]}, ["id: missing"]),
    ({"id": -1, "prompt_ids": [1]}, ["id: -1", "0..4294967295"]),
    ({"id": 2 ** 32, "prompt_ids": [1]}, ["id: 4294967296"]),
    ({"id": 1.5, "prompt_ids": [1]}, ["id: 1.5"]),
    ({"id": 1}, ["neither"]),
    ({"id": 1, "prompt": "a", "prompt_ids": [1]}, ["both"]),
    ({"id": 1, "prompt": 5}, ["prompt: 5 is not a string"]),
    ({"id": 1, "prompt_ids": []}, ["prompt_ids: [] is empty"]),
    ({"id": 1, "prompt_ids": "1,2"}, ["prompt_ids: \"1,2\" is not a list"]),
    ({"id": 1, "prompt_ids": [1, VOCAB]}, [f"prompt_ids[1]: {VOCAB} is outside [0, {VOCAB})"]),
    ({"id": 1, "prompt_ids": [1, True]}, ["prompt_ids[1]: true is not an integer"]),
    ({"id": 1, "prompt": "", "add_bos": False}, ["encodes to no tokens"]),
    ({"id": 1, "prompt": "x", "add_bos": 1}, ["add_bos: 1 is not true or false"]),
    ({"id": 1, "prompt_ids": [1], "max_new_tokens": 0}, ["max_new_tokens: 0", f"1..{MAX_CTX}"]),
    ({"id": 1, "prompt_ids": [1], "max_new_tokens": MAX_CTX + 1}, [f"max_new_tokens: {MAX_CTX + 1}"]),
    ({"id": 1, "prompt_ids": [1], "max_new_tokens": "4"}, ["max_new_tokens: \"4\""]),
    ({"id": 1, "prompt_ids": [1], "temperature": -0.5}, ["temperature: -0.5", ">= 0"]),
    ({"id": 1, "prompt_ids": [1], "top_k": VOCAB + 1}, [f"top_k: {VOCAB + 1}", f"0..{VOCAB}"]),
    ({"id": 1, "prompt_ids": [1], "top_p": 0}, ["top_p: 0", "(0, 1]"]),
    ({"id": 1, "prompt_ids": [1], "top_p": 1.5}, ["top_p: 1.5"]),
    ({"id": 1, "prompt_ids": [1], "seed": -3}, ["seed: -3"]),
    ({"id": 1, "prompt_ids": [1], "seed": "7"}, ["seed: \"7\""]),
    ({"id": 1, "prompt_ids": [1], "stop": "x"}, ["stop: \"x\" is not a list"]),
    ({"id": 1, "prompt_ids": [1], "stop": [""]}, ["stop[0]: \"\"", "1..256 bytes"]),
    ({"id": 1, "prompt_ids": [1], "stop": ["x" * 257]}, ["stop[0]:"]),
    ({"id": 1, "prompt_ids": [1], "stop": ["a"] * 17}, ["stop: 17 strings; at most 16"]),
    ({"id": 1, "prompt_ids": [1], "stop": ["\ud800"]}, ["stop[0]:", "UTF-8"]),
    ({"id": 1, "prompt_ids": [1], "eos_ids": [-1]}, ["eos_ids[0]: -1"]),
    ({"id": 1, "prompt_ids": [1], "eos_ids": 2}, ["eos_ids: 2 is not null or a list"]),
])
def test_bad_request_names_the_field_value_and_rule(server, request_, fragments):
    sock = connect(server.host, server.port)
    send_frame(sock, GENERATE, json.dumps(request_).encode())
    body = refused(sock, "bad_request", *fragments)
    assert body["id"] == (request_["id"] if isinstance(request_.get("id"), int) and 0 <= request_["id"] < 2 ** 32
                          else None)


def test_context_is_refused_before_device_work(server):
    sock = connect(server.host, server.port)
    before = stats(sock)
    send_json(sock, GENERATE, {"id": 3, "prompt_ids": [1] * (MAX_CTX + 1)})
    body = refused(sock, "context", f"the prompt has {MAX_CTX + 1} tokens", f"maximum context is {MAX_CTX}")
    assert body["id"] == 3
    send_json(sock, GENERATE, {"id": 4, "prompt": "the " * (MAX_CTX + 1), "add_bos": False})
    refused(sock, "context", "maximum context")
    send_json(sock, GENERATE, {"id": 5, "prompt": "x" * 100000})      # refused unencoded: longer than any prompt
    refused(sock, "context", "100000 bytes")
    after = stats(sock)
    assert after["requests"] == before["requests"] and after["host_ms"] == before["host_ms"]
    assert after["errors"]["context"] == before["errors"]["context"] + 3


# --- frames: every refusal closes the connection after one ERROR

def _hello() -> bytes:
    return frame(HELLO, {"protocol": 1})


@pytest.mark.parametrize("data, kind, fragment", [
    (frame(GENERATE, {"id": 1, "prompt_ids": [1]}), "bad_frame", "the first frame must be HELLO"),
    (frame(HELLO, {"protocol": 2}), "bad_frame", "protocol version 2 is not supported: this server speaks version 1"),
    (frame(HELLO, {"protocol": "1"}), "bad_frame", "not an integer"),
    (frame(HELLO, {"protocol": 1, "user": "x"}), "bad_frame", "unknown key \"user\""),
    (frame(HELLO, b"\xff\xfe"), "bad_frame", "not UTF-8"),
    (_hello() + frame(HELLO, {"protocol": 1}), "bad_frame", "HELLO again"),
    (_hello() + frame(77), "bad_frame", "unknown frame type 77"),
    (_hello() + frame(WELCOME, {}), "bad_frame", "unknown frame type 129"),
    (_hello() + frame(GENERATE, b"{\"id\": 1,"), "bad_frame", "not JSON"),
    (_hello() + frame(GENERATE, b"[1, 2]"), "bad_frame", "a JSON array, not an object"),
    (_hello() + frame(GENERATE, b"{\"id\": 1, \"id\": 2}"), "bad_frame", "duplicate"),
    (_hello() + frame(GENERATE, ("{\"a\":" + "[" * 15 + "1" + "]" * 15 + "}").encode()), "bad_frame", "deeper than 16"),
    (_hello() + frame(GENERATE, b""), "bad_frame", "not JSON"),
    (_hello() + frame(CANCEL, b"7"), "bad_frame", "not an object"),
    (_hello() + frame(HEALTH, b"{}"), "bad_frame", "HEALTH carries no payload"),
    (_hello() + struct.pack("<I", 0), "bad_frame", "a frame length of 0"),
    (struct.pack("<I", 0), "bad_frame", "a frame length of 0"),
    (_hello() + struct.pack("<I", (1 << 20) + 1), "too_large", "above this server's limit of 1048576"),
    (struct.pack("<I", 0xFFFFFFFF), "too_large", "4294967295 bytes"),
])
def test_bad_frames_are_answered_and_closed(server, data, kind, fragment):
    sock = raw_connect(server.host, server.port)
    sock.sendall(data)
    if data.startswith(_hello()):
        assert recv_json(sock)[0] == WELCOME
    body = refused(sock, kind, fragment, still_open=False)
    assert body["id"] is None


def test_nesting_of_16_levels_is_accepted(server):
    sock = connect(server.host, server.port)
    send_frame(sock, GENERATE, ("{\"id\": 1, \"x\":" + "[" * 14 + "1" + "]" * 14 + "}").encode())
    refused(sock, "bad_request", "unknown key \"x\"")


def test_cancel_with_bad_fields_is_a_bad_request(server):
    sock = connect(server.host, server.port)
    send_json(sock, CANCEL, {"id": "x"})
    refused(sock, "bad_request", "id: \"x\"")
    send_json(sock, CANCEL, {"id": 1, "why": 2})
    refused(sock, "bad_request", "unknown key \"why\"")


def test_a_frame_too_large_is_refused_before_its_body(device):
    with serving(device, "--max-frame", "4096") as srv:
        sock = connect(srv.host, srv.port)
        assert sock.welcome["max_frame"] == 4096
        big = frame(GENERATE, b"{\"id\":1,\"prompt_ids\":[" + b"1," * 2100 + b"1]}")
        sock.sendall(big[:4])                                          # the length alone is answered
        n = len(big) - 4
        refused(sock, "too_large", f"a frame of {n} bytes is above this server's limit of 4096", still_open=False)
        sock = connect(srv.host, srv.port)
        sock.sendall(big)                                              # its body is never read
        refused(sock, "too_large", f"{n} bytes", still_open=False)
        sock = connect(srv.host, srv.port)                             # 4096 is within the limit
        base = b"{\"id\":1,\"prompt_ids\":[1],\"max_new_tokens\":2"
        send_frame(sock, GENERATE, base + b" " * (4095 - len(base) - 1) + b"}")
        while (got := recv_json(sock))[0] != DONE:
            assert got[0] == TOKEN
        assert got[1]["new_tokens"] == 2


# --- security, limits, deadlines

def test_token_is_required_and_checked(device):
    with serving(device, "--token", "s3cret") as srv:
        for hello in ({"protocol": 1}, {"protocol": 1, "token": "s3cre"}, {"protocol": 1, "token": "s3cret!"},
                      {"protocol": 1, "token": 5}):
            sock = raw_connect(srv.host, srv.port)
            send_json(sock, HELLO, hello)
            refused(sock, "unauthorized", still_open=False)
        sock = raw_connect(srv.host, srv.port)
        send_json(sock, HEALTH, {})
        refused(sock, "bad_frame", "the first frame must be HELLO", still_open=False)
        sock = connect(srv.host, srv.port, token="s3cret")
        assert health(sock)["status"] == "ok"


def _token_is(srv, secret: str | None, *wrong: str | None) -> None:
    """``srv`` answers HELLO with ``secret`` (None: no token) and refuses each of ``wrong``."""
    for token in wrong:
        sock = raw_connect(srv.host, srv.port)
        send_json(sock, HELLO, {"protocol": 1} if token is None else {"protocol": 1, "token": token})
        refused(sock, "unauthorized", still_open=False)
    sock = connect(srv.host, srv.port, token=secret)
    assert health(sock)["status"] == "ok"


def test_the_token_from_a_file_or_the_environment(device, tmp_path):
    """--token-file: the file's first line without its line end (the rest of the file is not the secret);
    it wins over $DLAVM_SERVE_TOKEN, which is the token when no option gives one; --token wins over the
    variable; an empty variable is no token."""
    f = tmp_path / "token"
    f.write_text(" s3cret file\nsecond line\n")
    with serving(device, "--token-file", f, env={TOKEN_ENV: "from-env"}) as srv:
        _token_is(srv, " s3cret file", None, "from-env", "second line", " s3cret file\n", "s3cret file")
    with serving(device, env={TOKEN_ENV: "from-env"}) as srv:
        _token_is(srv, "from-env", None, "from-env ", "s3cret")
    with serving(device, "--token", "from-option", env={TOKEN_ENV: "from-env"}) as srv:
        _token_is(srv, "from-option", None, "from-env")
    with serving(device, env={TOKEN_ENV: ""}) as srv:
        _token_is(srv, None)
    # a pipe (--token-file <(...) in a shell), the secret ended by "\r\n"; the whole file of 4096 bytes
    read, write = os.pipe()
    os.write(write, b"piped\r\n" + b"x" * (4096 - 7))
    os.close(write)
    try:
        with serving(device, "--token-file", f"/dev/fd/{read}", pass_fds=(read,)) as srv:
            _token_is(srv, "piped", None, "piped\r", "from-env")
    finally:
        os.close(read)


def _refused_token_file(tmp_path):
    """Token files the server refuses: (argv, env, fragments of the one error line)."""
    def write(name: str, data: bytes):
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)
    rows = [
        (["--token-file", write("empty", b"")], {}, ["--token-file \"", "empty\"", "the file's first line) is empty"]),
        (["--token-file", write("blank-first", b"\nsecret\n")], {}, ["blank-first", "is empty"]),
        (["--token-file", write("crlf-only", b"\r\n")], {}, ["crlf-only", "is empty"]),
        (["--token-file", write("big", b"s" * 4097)], {}, ["big\"", "more than 4096 bytes"]),
        (["--token-file", write("big-lines", b"secret\n" + b"#" * 4096)], {}, ["big-lines", "more than 4096 bytes"]),
        (["--token-file", str(tmp_path / "absent")], {}, ["absent\"", "cannot be read", "No such file"]),
        (["--token-file", str(tmp_path)], {}, ["cannot be read", "a directory"]),
        (["--token-file", ""], {}, ["--token-file is empty"]),
        (["--token", "a", "--token-file", write("both", b"b\n")], {}, ["--token and --token-file", "both\"",
                                                                     "give one of them"]),
        (["--token-file", write("both2", b"b\n"), "--token=a"], {TOKEN_ENV: "c"}, ["--token and --token-file"]),
        (["--token-file", write("env-too", b""), ], {TOKEN_ENV: "c"}, ["env-too", "is empty"]),
    ]
    if os.geteuid() != 0:   # root reads any file
        locked = write("locked", b"secret\n")
        os.chmod(locked, 0)
        rows.append((["--token-file", locked], {}, ["locked\"", "cannot be read", "Permission denied"]))
    return rows


def test_token_file_refusals_are_one_error_line_naming_the_file_and_the_rule(device, tmp_path):
    art = str(llm_artifact())
    for argv, env, fragments in _refused_token_file(tmp_path):
        res = run_server_once("--artifact", art, "--device", device, *argv, env=env)
        assert res.returncode == 2, (argv, res.returncode, res.stderr)
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), (argv, res.stderr)
        for f in fragments:
            assert f in res.stderr, (argv, f, res.stderr)
    # checked before anything else starts: a file of exactly 4096 bytes is taken (the device is next)
    f = tmp_path / "full"
    f.write_bytes(b"s" * 4095 + b"\n")
    res = run_server_once("--artifact", art, "--device", "sim://127.0.0.1:1", "--token-file", f)
    assert res.returncode == 2 and "token" not in res.stderr and "sim://127.0.0.1:1" in res.stderr, res.stderr


def test_a_public_host_is_refused_with_an_empty_token_variable(device):
    res = run_server_once("--artifact", llm_artifact(), "--device", device, "--host", "0.0.0.0",
                          env={TOKEN_ENV: ""})
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "not a loopback address" in res.stderr and "--token-file FILE" in res.stderr
    assert TOKEN_ENV in res.stderr, res.stderr


def test_max_clients_and_max_queue_answer_busy():
    need_gxx()
    with device_process() as (uri, dev), serving(uri, "--max-clients", "3", "--max-queue", "1") as srv:
        a, b, c = (connect(srv.host, srv.port) for _ in range(3))
        extra = raw_connect(srv.host, srv.port)
        body = refused(extra, "busy", "maximum of 3 connections", still_open=False)
        assert body["id"] is None
        send_json(a, GENERATE, {"id": 1, "prompt_ids": [1, 2], "max_new_tokens": MAX_CTX - 2, "eos_ids": []})
        assert recv_json(a)[0] == TOKEN                                   # a is running
        with frozen(dev):                                                 # ... and stays so
            send_json(b, GENERATE, {"id": 2, "prompt_ids": [1, 2], "max_new_tokens": 3})   # b waits in the queue
            assert health(b)["queue"] == 1        # queued (b's reader took it) before c's request comes
            send_json(c, GENERATE, {"id": 3, "prompt_ids": [1, 2], "max_new_tokens": 3})
            body = refused(c, "busy", "the queue holds its maximum of 1 requests")
            assert body["id"] == 3
            send_json(b, CANCEL, {"id": 2})                               # a queued request is removed
            ftype, done = recv_json(b)
            assert ftype == DONE and done["stop_reason"] == "cancelled" and done["new_tokens"] == 0
            a.close()                                                     # a disconnected: its request ends
        tokens, end = generate(c, {"id": 4, "prompt_ids": [1, 2], "max_new_tokens": 3})
        assert end["stop_reason"] == "max_new_tokens" and len(tokens) == 3
        s = stats(c)
        assert s["cancelled"] == 2 and s["errors"]["busy"] == 2


def test_deadlines_close_slow_and_silent_clients(device):
    with serving(device, "--frame-timeout", "0.5", "--idle-timeout", "1") as srv:
        silent = raw_connect(srv.host, srv.port)
        refused(silent, "bad_frame", "no HELLO within 0.5 s", still_open=False)
        slow = connect(srv.host, srv.port)
        slow.sendall(frame(HEALTH)[:3])
        refused(slow, "bad_frame", "not complete within 0.5 s", still_open=False)
        slow_hello = raw_connect(srv.host, srv.port)
        slow_hello.sendall(frame(HELLO, {"protocol": 1})[:6])
        refused(slow_hello, "bad_frame", "no complete HELLO within 0.5 s of connecting", still_open=False)
        idle = connect(srv.host, srv.port)
        assert closed(idle)
        busy = connect(srv.host, srv.port)                  # a request in flight is not idleness
        tokens, end = generate(busy, {"id": 1, "prompt_ids": [1], "max_new_tokens": MAX_CTX - 1, "eos_ids": []})
        assert end["frame"] == "DONE"


def test_disconnect_cancels_the_running_request():
    need_gxx()
    with device_process() as (uri, dev), serving(uri) as server:
        sock = connect(server.host, server.port)
        before = stats(sock)["cancelled"]
        gone = connect(server.host, server.port)
        send_json(gone, GENERATE, {"id": 1, "prompt_ids": [1, 2], "max_new_tokens": MAX_CTX - 2, "eos_ids": []})
        assert recv_json(gone)[0] == TOKEN
        with frozen(dev):                                  # the request cannot finish before we look
            assert health(sock) == {"status": "ok", "queue": 0, "running": True}
            gone.close()
        tokens, end = generate(sock, {"id": 2, "prompt_ids": [3], "max_new_tokens": 2})
        assert end["frame"] == "DONE"
        assert stats(sock)["cancelled"] == before + 1


def test_ids_only_artifact_refuses_text_prompts(device):
    with serving(device, tokenizer=False) as srv:
        sock = connect(srv.host, srv.port)
        w = sock.welcome
        assert (w["tokenizer"], w["bos_id"], w["eos_ids"], w["add_bos"], w["chat_template"]) == (False, None, [],
                                                                                                  False, None)
        send_json(sock, GENERATE, {"id": 1, "prompt": "hello"})
        refused(sock, "bad_request", "no bundled tokenizer")
        tokens, end = generate(sock, {"id": 2, "prompt_ids": [1, 2], "max_new_tokens": 3})
        assert len(tokens) == 3 and all(t[2] == "" for t in tokens) and end["text_tail"] == ""


def test_device_loss_is_an_error_then_the_next_request_reconnects():
    need_gxx()
    with device_process() as (uri, dev):
        with serving(uri) as srv:
            sock = connect(srv.host, srv.port)
            send_json(sock, GENERATE, {"id": 1, "prompt_ids": [1, 2], "max_new_tokens": MAX_CTX - 2, "eos_ids": []})
            assert recv_json(sock)[0] == TOKEN
            dev.kill()                                                  # the device goes away mid-request
            dev.wait()
            while (got := recv_json(sock))[0] == TOKEN:
                pass
            ftype, end = got
            assert ftype == ERROR and end["kind"] == "device" and end["id"] == 1
            assert uri in end["message"] and "connection lost" in end["message"]
            assert health(sock)["status"] == "device_down"
            _, end = generate(sock, {"id": 2, "prompt_ids": [1, 2], "max_new_tokens": 4})
            assert end["kind"] == "device" and "cannot be reached" in end["message"] and uri in end["message"]
            port = int(uri.rsplit(":", 1)[1])
            with device_process(port=port):                             # the device is back: the next request
                tokens, end = generate(sock, {"id": 3, "prompt_ids": [1, 2], "max_new_tokens": 4})
                assert end["frame"] == "DONE" and len(tokens) == 4
                assert health(sock)["status"] == "ok" and stats(sock)["device_reconnects"] == 1
                assert stats(sock)["errors"]["device"] == 2
            log = srv.log_text()
            assert "is down" in log and "reconnected" in log


# --- start and stop

def test_one_log_line_per_request_and_sigint_stops_cleanly(device):
    srv = start_server(device)
    sock = connect(srv.host, srv.port)
    generate(sock, {"id": 41, "prompt_ids": [1, 2], "max_new_tokens": 2})
    send_json(sock, GENERATE, {"id": 42, "prompt_ids": [1], "top_p": 2})
    recv_json(sock)
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(30) == 0
    lines = srv.log_text().splitlines()
    assert lines[0].startswith("dlavm-server: listening on 127.0.0.1:")
    done = [ln for ln in lines if " id=41 " in ln]
    assert len(done) == 1 and "prompt_tokens=2 new_tokens=2 stop=max_new_tokens sim_ms=" in done[0]
    assert "host_ms=" in done[0] and "queue_ms=" in done[0]
    assert [ln for ln in lines if " id=42 " in ln] == ["dlavm-server: request conn=1 id=42 refused=bad_request"]
    assert lines[-1] == "dlavm-server: stopped"


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "sim://127.0.0.1:1"], "--artifact DIR is required"),
    (["--artifact", "ART"], "--device URI is required"),
    (["--artifact", "ART", "--device", "DEV", "--frob", "1"], "unknown argument \"--frob\""),
    (["--artifact", "ART", "--device", "DEV", "--port", "70000"], "--port \"70000\" is not an integer in 0..65535"),
    (["--artifact", "ART", "--device", "DEV", "--max-frame", "100"], "--max-frame \"100\""),
    (["--artifact", "ART", "--device", "DEV", "--frame-timeout", "0"], "--frame-timeout \"0\""),
    (["--artifact", "ART", "--device", "DEV", "--max-queue"], "--max-queue needs a value"),
    (["--artifact", "ART", "--device", "DEV", "--host", "0.0.0.0"], "not a loopback address"),
    (["--artifact", "ART", "--device", "DEV", "--token", ""], "--token is empty"),
    (["--artifact", "NOWHERE", "--device", "DEV"], "NOWHERE"),
    (["--artifact", "ART", "--device", "sim://127.0.0.1:1"], "sim://127.0.0.1:1"),
    (["--artifact", "ART", "--device", "nonsense"], "nonsense"),
])
def test_start_up_refusals_are_one_error_line(device, argv, fragment):
    argv = [device if a == "DEV" else str(llm_artifact()) if a == "ART" else a for a in argv]
    res = run_server_once(*argv)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert fragment in res.stderr, res.stderr


def test_help_and_a_foreign_target(device):
    res = run_server_once("--help")
    assert res.returncode == 0 and "usage: dlavm-server --artifact DIR --device URI" in res.stdout
    with device_process(target="vcu128") as (uri, _):
        res = run_server_once("--artifact", llm_artifact(), "--device", uri)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "'tiny'" in res.stderr, res.stderr


def test_the_sanitizer_build_serves_every_feature_cleanly():
    """The ASan/UBSan build through text and id prompts, sampling, stop strings, CANCEL, a disconnect,
    a full queue, bad requests and a device loss with reconnect; then it exits 0 with a clean log."""
    need_gxx()
    with device_process() as (uri, dev), serving(uri, "--max-queue", "1", flavour="asan") as srv:
        a, b, c = (connect(srv.host, srv.port) for _ in range(3))
        tokens, end = generate(a, {"id": 1, "prompt": PROMPT, "max_new_tokens": 10, "stop": ["the", "\u00e9"],
                                   "temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 5})
        assert end["frame"] == "DONE" and end["seed"] == 5
        send_json(a, GENERATE, {"id": 2, "prompt_ids": [1, 2], "max_new_tokens": MAX_CTX - 2, "eos_ids": []})
        assert recv_json(a)[0] == TOKEN
        with frozen(dev):                                   # a's request stays running meanwhile
            send_json(b, GENERATE, {"id": 3, "prompt_ids": [4], "max_new_tokens": 3})
            assert health(b)["queue"] == 1         # b's request is queued (b's reader took it) before c's comes
            send_json(c, GENERATE, {"id": 4, "prompt_ids": [4], "max_new_tokens": 3})
            refused(c, "busy")
            send_json(b, CANCEL, {"id": 3})
            assert recv_json(b)[1]["stop_reason"] == "cancelled"
            a.close()
        send_json(c, GENERATE, {"id": 5, "prompt_ids": [1] * (MAX_CTX + 1)})
        refused(c, "context")
        send_json(c, GENERATE, {"id": 6, "prompt_ids": [1], "stop": [""]})
        refused(c, "bad_request")
        tokens, end = generate(c, {"id": 7, "prompt_ids": [1, 2, 3], "max_new_tokens": 4})
        assert end["frame"] == "DONE"
        dev.kill()
        dev.wait()
        _, end = generate(c, {"id": 8, "prompt_ids": [1], "max_new_tokens": 2})
        assert end["kind"] == "device"
        with device_process(port=int(uri.rsplit(":", 1)[1])):
            _, end = generate(c, {"id": 9, "prompt": PROMPT, "max_new_tokens": 3})
            assert end["frame"] == "DONE"
