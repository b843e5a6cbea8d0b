"""dlavm.serve.Client against the real dlavm-server (linked for the tiny test LLM, on a simulator device
server, 127.0.0.1), and against scripted servers for what a real one never sends (frames addressed
to another request, malformed payloads, a length past the limit, silence)."""
from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading

import pytest

from dlavm.serve import (BadRequestError, BusyError, Client, ConnectionLostError, ContextError, FrameTooLargeError,
                         ProtocolError, ServeTimeoutError, UnauthorizedError)
from tests.serve.serve_support import (EOS_IDS, MAX_CTX, MODEL, PROMPT, TARGET, VOCAB, device_server, llm_artifact,
                                       need_gxx, serving)


@pytest.fixture(scope="module")
def server():
    need_gxx()
    with device_server() as uri, serving(uri) as served:
        yield served


@pytest.fixture(scope="module")
def alone():
    """The Python runtime's tokens for a prompt (in-process simulator): what the server must give."""
    from dlavm.compiler import load
    cm = load(llm_artifact())
    cache = {}

    def tokens(ids, n, **kw):
        key = (tuple(ids), n, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = list(cm.generate(list(ids), n, **kw))
        return cache[key]
    return tokens


def test_welcome_facts_and_a_completion_equal_to_the_python_runtime(server, alone):
    with Client(server.host, server.port, timeout=60) as c:
        info = c.info
        assert (info["model"], info["target"], info["max_ctx"], info["vocab"]) == (MODEL, TARGET, MAX_CTX, VOCAB)
        assert info["tokenizer"] is True and info["eos_ids"] == EOS_IDS and isinstance(info["chat_template"], str)
        ids = [5, 17, 200, 3, 99]
        done = c.generate(prompt_ids=ids, max_new_tokens=8, eos_ids=[])
        assert done.token_ids == alone(ids, 8) and done.new_tokens == 8 and done.prompt_tokens == len(ids)
        assert done.stop_reason == "max_new_tokens" and done.host_ms >= 0 and done.queue_ms >= 0
        # the same request twice: the same tokens (a clean KV cache per request)
        assert c.generate(prompt_ids=ids, max_new_tokens=8, eos_ids=[]).token_ids == done.token_ids
        # sampling with a seed is reproducible, and DONE reports a drawn seed that replays the request
        a = c.generate(prompt_ids=ids, max_new_tokens=6, temperature=0.9, top_k=40, top_p=0.95, eos_ids=[])
        assert a.seed is not None
        b = c.generate(prompt_ids=ids, max_new_tokens=6, temperature=0.9, top_k=40, top_p=0.95, seed=a.seed,
                       eos_ids=[])
        assert b.token_ids == a.token_ids


@pytest.mark.parametrize("temperature,top_k,top_p,seed", [
    (0.8, 0, 1.0, 1), (1.3, 20, 1.0, 2**63 - 1), (0.6, 0, 0.85, 0), (1.0, 5, 0.5, 987654321)])
def test_same_seed_same_tokens_as_the_python_runtime(server, alone, temperature, top_k, top_p, seed):
    """The server leg of "sampling is the same everywhere" (doc/serve.md): one seed, the same tokens
    from the C++ server as from dlavm.runtime's Generator on the same artifact."""
    ids = [11, 22, 33, 44]
    with Client(server.host, server.port) as c:
        done = c.generate(prompt_ids=ids, max_new_tokens=12, temperature=temperature, top_k=top_k, top_p=top_p,
                          seed=seed, eos_ids=[])
    assert done.seed == seed
    assert done.token_ids == alone(ids, 12, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


def test_text_stream_pieces_and_tail_make_the_completion(server):
    with Client(server.host, server.port) as c:
        whole = c.generate(PROMPT, max_new_tokens=10)
        s = c.generate(PROMPT, max_new_tokens=10, stream=True)
        toks = list(s)
        assert s.completion is not None and s.finished
        assert [t.id for t in toks] == s.completion.token_ids == whole.token_ids
        assert "".join(t.text for t in toks) + s.tail == s.completion.text == whole.text
        assert whole.stop_reason in ("max_new_tokens", "eos")
        # the bundled tokenizer's add_bos (true) puts BOS first: one prompt token more than without
        assert c.generate(PROMPT, max_new_tokens=1, add_bos=False).prompt_tokens == whole.prompt_tokens - 1


def test_a_stream_left_early_is_cancelled_and_the_connection_goes_on(server, alone):
    with Client(server.host, server.port) as c:
        before = c.stats()
        for i, tok in enumerate(c.generate(prompt_ids=[7, 8, 9], max_new_tokens=40, eos_ids=[], stream=True)):
            if i == 1:
                break                 # the stream is dropped here: CANCEL, its frames read off the connection
        ids = [1, 2, 3, 4]
        assert c.generate(prompt_ids=ids, max_new_tokens=5, eos_ids=[]).token_ids == alone(ids, 5)
        after = c.stats()
        assert after["cancelled"] == before["cancelled"] + 1
        # an open stream is cancelled by the next request on the same client
        s = c.generate(prompt_ids=[7, 8, 9], max_new_tokens=40, eos_ids=[], stream=True)
        next(s)
        assert c.generate(prompt_ids=ids, max_new_tokens=5, eos_ids=[]).token_ids == alone(ids, 5)
        assert s.finished and s.completion is not None and s.completion.stop_reason == "cancelled"
        assert c.stats()["cancelled"] == after["cancelled"] + 1


def test_cancel_ends_the_stream_with_cancelled(server):
    with Client(server.host, server.port) as c:
        s = c.generate(prompt_ids=[7, 8, 9], max_new_tokens=40, eos_ids=[], stream=True)
        got = [next(s), next(s)]
        c.cancel()
        got += list(s)
        assert s.completion.stop_reason == "cancelled" and s.completion.new_tokens < 40
        assert [t.id for t in got] == s.completion.token_ids
        c.cancel()   # nothing in flight: nothing happens
        assert c.generate(prompt_ids=[1], max_new_tokens=2).new_tokens >= 1


def test_health_and_stats_while_a_stream_runs(server):
    with Client(server.host, server.port) as c:
        s = c.generate(prompt_ids=[4, 5], max_new_tokens=12, eos_ids=[], stream=True)
        first = next(s)
        h = c.health()
        assert h["status"] == "ok" and isinstance(h["queue"], int) and isinstance(h["running"], bool)
        st = c.stats()
        assert {"requests", "completed", "cancelled", "errors", "new_tokens"} <= set(st)
        rest = list(s)      # the frames read while waiting for HEALTH_OK / STATS_OK are not lost
        assert [first.id] + [t.id for t in rest] == s.completion.token_ids and len(s.completion.token_ids) == 12


def test_refusals_are_errors_of_their_kind_and_the_connection_goes_on(server):
    with Client(server.host, server.port) as c:
        with pytest.raises(BadRequestError, match="top_p") as e:
            c.generate(PROMPT, top_p=0)
        assert e.value.kind == "bad_request" and e.value.request_id is not None
        with pytest.raises(BadRequestError, match="prompt_ids"):
            c.generate(prompt_ids=[VOCAB])
        with pytest.raises(ContextError):
            c.generate(prompt_ids=[3] * (MAX_CTX + 1))
        with pytest.raises(BadRequestError, match="exactly one"):
            c.generate(PROMPT, prompt_ids=[1])
        with pytest.raises(BadRequestError, match="finite"):
            c.generate(PROMPT, temperature=float("nan"))
        with pytest.raises(BadRequestError, match="prompt_ids must be a sequence of integers"):
            c.generate(prompt_ids=[1.5])
        with pytest.raises(BadRequestError, match="cannot be sent as JSON"):
            c.generate(PROMPT, seed=object())
        limit = c.info["max_frame"]
        with pytest.raises(FrameTooLargeError, match="frame limit"):   # refused here, before it is sent
            c.generate("x" * limit)
        assert c.generate(prompt_ids=[1, 2], max_new_tokens=2).new_tokens >= 1


def test_a_token_server_refuses_a_wrong_token(tmp_path):
    need_gxx()
    with device_server() as uri, serving(uri, "--token", "s3cret") as srv:
        with pytest.raises(UnauthorizedError):
            Client(srv.host, srv.port, token="wrong")
        with pytest.raises(UnauthorizedError):
            Client(srv.host, srv.port)
        with Client(srv.host, srv.port, token="s3cret") as c:
            assert c.generate(prompt_ids=[1, 2], max_new_tokens=2).new_tokens >= 1


def test_past_max_clients_the_handshake_is_busy():
    need_gxx()
    with device_server() as uri, serving(uri, "--max-clients", "1") as srv:
        with Client(srv.host, srv.port) as first:
            with pytest.raises(BusyError) as e:
                Client(srv.host, srv.port)
            assert e.value.request_id is None
            assert first.generate(prompt_ids=[1, 2], max_new_tokens=2).new_tokens >= 1


def test_no_server_is_a_connection_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionLostError, match=f"cannot connect to dlavm-server at 127.0.0.1:{port}"):
        Client("127.0.0.1", port, timeout=5)


# ---------------------------------------------------------------- scripted servers

WELCOME = {"protocol": 1, "model": "m", "target": "tiny", "max_ctx": 64, "vocab": 256, "max_frame": 4096,
           "max_queue": 4, "tokenizer": True, "bos_id": 1, "eos_ids": [2], "add_bos": False, "bos_token": "<s>",
           "eos_token": "</s>", "chat_template": None}


def _frame(ftype: int, payload) -> bytes:
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    return struct.pack("<IB", 1 + len(payload), ftype) + payload


@contextlib.contextmanager
def scripted(reply_to_generate: bytes, welcome: dict | None = WELCOME):
    """A server on 127.0.0.1 that answers HELLO with ``welcome`` (None: nothing) and the first GENERATE
    with the bytes ``reply_to_generate``, then closes the connection."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(30)

    def run():
        with contextlib.suppress(OSError):
            conn, _ = lsock.accept()
            with conn:
                conn.settimeout(30)
                conn.recv(4096)                     # HELLO
                if welcome is None:
                    conn.recv(4096)                 # silent until the client gives up
                    return
                conn.sendall(_frame(129, welcome))
                conn.recv(4096)                     # GENERATE
                conn.sendall(reply_to_generate)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        lsock.close()
        t.join(30)


def _done(rid: int, **kw) -> dict:
    return {"id": rid, "stop_reason": "eos", "prompt_tokens": 1, "new_tokens": 1, "text_tail": "", "seed": None,
            "sim_ms": None, "host_ms": 1.0, "queue_ms": 0.0, **kw}


@pytest.mark.parametrize("reply,why", [
    (_frame(130, struct.pack("<II", 99, 5) + b"a"), "TOKEN frame addressed to request 99"),
    (_frame(131, _done(99)), "DONE frame addressed to request 99"),
    (_frame(132, {"id": 99, "kind": "busy", "message": "x"}), "ERROR frame addressed to request 99"),
    (_frame(131, {**_done(1), "extra": 1}), "unknown key 'extra'"),
    (_frame(131, {k: v for k, v in _done(1).items() if k != "host_ms"}), "lacks the key 'host_ms'"),
    (_frame(131, _done(1, stop_reason="tired")), "unknown stop_reason 'tired'"),
    (_frame(131, b"[1, 2]"), "not an object"),
    (_frame(130, b"\x01\x00\x00\x00"), "at least 8"),
    (_frame(130, struct.pack("<II", 1, 5) + b"\xc3"), "not UTF-8"),
    (struct.pack("<IB", 5000, 130), "outside 1..4096"),     # past WELCOME's max_frame: refused unread
    (_frame(200, b""), "unexpected frame type 200"),
    (_frame(131, _done(1))[:7], "closed after"),
])
def test_a_frame_outside_the_protocol_ends_the_connection(reply, why):
    with scripted(reply) as port:
        c = Client("127.0.0.1", port, timeout=10)
        with pytest.raises(ProtocolError, match=why):
            c.generate(prompt_ids=[1])
        assert c.closed
        with pytest.raises(ConnectionLostError, match="closed"):
            c.generate(prompt_ids=[1])


def test_a_reply_frame_in_the_right_shape_is_accepted():
    with scripted(_frame(130, struct.pack("<II", 1, 5) + "é".encode()) + _frame(131, _done(1, text_tail="!"))) as port:
        with Client("127.0.0.1", port, timeout=10) as c:
            done = c.generate(prompt_ids=[1])
            assert (done.text, done.token_ids, done.stop_reason) == ("é!", [5], "eos")


def test_a_silent_server_is_a_timeout():
    with scripted(b"", welcome=None) as port:
        with pytest.raises(ServeTimeoutError, match="sent nothing within 0.5 s"):
            Client("127.0.0.1", port, timeout=0.5)


def test_a_server_that_closes_mid_request_is_connection_lost():
    with scripted(b"") as port:   # WELCOME, then GENERATE is answered by closing the connection
        with Client("127.0.0.1", port, timeout=10) as c:
            with pytest.raises(ConnectionLostError, match="closed the connection"):
                c.generate(prompt_ids=[1])
