"""The OpenAI-compatible gateway (doc/serve.md, "The OpenAI-compatible endpoint") with the real ``openai``
package as its client, in front of the real ``dlavm-server`` driving the simulator device server, all on
127.0.0.1 sockets.

Every reply is compared with what :class:`dlavm.serve.Client` gets for the same request from the same
server, so the gateway is shown to add nothing and lose nothing: greedy and seeded sampling, completions
and chat (the chat template rendered as doc/serve.md says), streamed and not, stop strings. Errors reach
the ``openai`` client as its exceptions with the model server's message."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from dlavm.serve import Client  # noqa: E402
from dlavm.serve.gateway import (FINISH_REASON, KIND_STATUS, ApiError, Gateway, GatewayError,  # noqa: E402
                                 _serve_error, check_chat, check_completion, start_gateway)
from dlavm.tokenizer.bundled import render_chat  # noqa: E402
from tests.serve.serve_support import (MAX_CTX, MODEL, PROMPT, ROOT, device_process, device_server,  # noqa: E402
                                       serving)

MESSAGES = [{"role": "system", "content": "you answer briefly"},
            {"role": "user", "content": "what does the compiler map?"}]


@pytest.fixture(scope="module")
def stack():
    """A device server, dlavm-server and the gateway (port 0) logging into ``lines``."""
    with device_server() as uri, serving(uri) as served:
        lines: list[str] = []
        with start_gateway(served.host, served.port, port=0, log=lines.append) as gw:
            yield SimpleNamespace(served=served, gw=gw, lines=lines)


def oai(gw, api_key: str = "unused") -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=api_key, max_retries=0, timeout=120)


def alone(served, prompt=PROMPT, **kw):
    """The Completion dlavm.serve.Client gets for the same request."""
    with Client(served.host, served.port) as c:
        return c.generate(prompt, **kw)


def chat_prompt(served, messages=MESSAGES) -> str:
    with Client(served.host, served.port) as c:
        info = c.info
    return render_chat(info["chat_template"], messages, bos_token=info["bos_token"] or "",
                       eos_token=info["eos_token"] or "")


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------------ replies

def test_models_and_health(stack):
    models = oai(stack.gw).models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].owned_by == "dlavm"
    status, body = http_get(f"{stack.gw.url}/health")
    assert status == 200 and body["status"] == "ok" and body["queue"] == 0


def test_completion_greedy_equals_the_client(stack):
    want = alone(stack.served, max_new_tokens=8, temperature=0)
    r = oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].text == want.text
    assert r.choices[0].finish_reason == {"max_new_tokens": "length", "eos": "stop"}[want.stop_reason]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (want.prompt_tokens, want.new_tokens)
    assert r.usage.total_tokens == want.prompt_tokens + want.new_tokens
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == MODEL


def test_completion_stream_equals_the_client(stack):
    want = alone(stack.served, max_new_tokens=10, temperature=0)
    chunks = list(oai(stack.gw).completions.create(model=MODEL, prompt=[PROMPT], max_tokens=10, temperature=0,
                                                   stream=True, stream_options={"include_usage": True}))
    texts = [c.choices[0].text for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "".join(texts) == want.text
    assert finishes[-1] in ("length", "stop") and all(f is None for f in finishes[:-1])
    assert len(texts) > 2   # streamed piece by piece, not in one chunk
    usage = chunks[-1].usage   # include_usage: a last chunk without choices
    assert chunks[-1].choices == [] and usage.completion_tokens == want.new_tokens
    assert len({c.id for c in chunks}) == 1


def test_sampling_with_a_seed_equals_the_client(stack):
    kw = dict(max_new_tokens=8, temperature=0.9, top_p=0.95, seed=1234)
    want = alone(stack.served, **kw)
    client = oai(stack.gw)
    got = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0.9, top_p=0.95,
                                    seed=1234)
    assert got.choices[0].text == want.text
    streamed = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0.9, top_p=0.95,
                                         seed=1234, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == want.text
    # top_k, an extension of the OpenAI API (as vLLM has it), reaches the server too
    want_k = alone(stack.served, max_new_tokens=8, temperature=0.9, top_k=3, seed=99)
    got_k = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0.9, seed=99,
                                      extra_body={"top_k": 3})
    assert got_k.choices[0].text == want_k.text


def test_token_id_prompt(stack):
    ids = [1, 5, 9, 12]
    want = alone(stack.served, None, prompt_ids=ids, max_new_tokens=5, temperature=0)
    r = oai(stack.gw).completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0)
    assert r.choices[0].text == want.text and r.usage.prompt_tokens == len(ids)


def test_stop_string_ends_the_reply_before_it(stack):
    full = alone(stack.served, max_new_tokens=16, temperature=0, eos_ids=[]).text
    cut = len(full) // 2
    stop = full[cut:cut + 3]
    assert stop.strip(), f"no usable stop string in {full!r}"
    want = alone(stack.served, max_new_tokens=16, temperature=0, stop=[stop])
    assert want.stop_reason == "stop"
    client = oai(stack.gw)
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stop=stop)
    assert r.choices[0].text == want.text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0,
                                            stop=[stop], stream=True))
    assert "".join(c.choices[0].text for c in chunks) == want.text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_equals_the_client_on_the_rendered_template(stack):
    prompt = chat_prompt(stack.served)
    want = alone(stack.served, prompt, max_new_tokens=8, temperature=0, add_bos=False)
    client = oai(stack.gw)
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0)
    msg = r.choices[0].message
    assert (msg.role, msg.content) == ("assistant", want.text)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens == want.prompt_tokens and r.usage.completion_tokens == want.new_tokens
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=8,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want.text
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_without_max_tokens_runs_to_eos_or_the_context(stack):
    want = alone(stack.served, chat_prompt(stack.served), max_new_tokens=MAX_CTX, temperature=0, add_bos=False)
    r = oai(stack.gw).chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0)
    assert r.choices[0].message.content == want.text
    assert r.choices[0].finish_reason == {"context": "length", "eos": "stop"}[want.stop_reason]
    assert r.usage.completion_tokens == want.new_tokens and r.usage.total_tokens <= MAX_CTX + 1


def test_chat_content_parts_are_text(stack):
    parts = [{"role": "user", "content": [{"type": "text", "text": "what does the "},
                                          {"type": "text", "text": "compiler map?"}]}]
    plain = [{"role": "user", "content": "what does the compiler map?"}]
    client = oai(stack.gw)
    a = client.chat.completions.create(model=MODEL, messages=parts, max_tokens=4, temperature=0)
    b = client.chat.completions.create(model=MODEL, messages=plain, max_tokens=4, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


# ------------------------------------------------------------------------------------ errors

def test_context_error_is_a_bad_request_with_the_servers_message(stack):
    long_prompt = " ".join(["the compiler maps each layer"] * MAX_CTX)
    with pytest.raises(openai.BadRequestError) as e:
        oai(stack.gw).completions.create(model=MODEL, prompt=long_prompt, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    assert "context" in e.value.message and str(MAX_CTX) in e.value.message
    with pytest.raises(openai.BadRequestError) as e:   # streamed: refused before the stream starts
        oai(stack.gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long_prompt}],
                                              stream=True)
    assert e.value.code == "context_length_exceeded"


@pytest.mark.parametrize("kwargs, param, words", [
    (dict(top_p=1.5), "top_p", "(0, 1]"),
    (dict(temperature=-1), "temperature", ">= 0"),
    (dict(max_tokens=0), "max_tokens", ">= 1"),
    (dict(n=2), "n", "n=1"),
    (dict(logprobs=2), "logprobs", "no log probabilities"),
    (dict(echo=True), "echo", "no echo"),
    (dict(presence_penalty=0.5), "presence_penalty", "no presence penalty"),
    (dict(extra_body={"frobnicate": 1}), "frobnicate", "Unrecognized request argument"),
    (dict(stop=[""]), "stop", "non-empty"),
])
def test_bad_parameters_are_refused_by_name(stack, kwargs, param, words):
    with pytest.raises(openai.BadRequestError) as e:
        oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, **kwargs)
    assert e.value.param == param and words in e.value.message


def test_a_rule_only_the_model_server_knows_comes_back_with_its_message(stack):
    # max_new_tokens past the context: the gateway checks the type, the model server the range
    with pytest.raises(openai.BadRequestError) as e:
        oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_CTX + 1)
    assert "max_new_tokens" in e.value.message and str(MAX_CTX) in e.value.message


def test_chat_messages_are_checked(stack):
    client = oai(stack.gw)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[])
    assert e.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}])
    assert "text" in e.value.message


def test_unknown_model_and_endpoint(stack):
    with pytest.raises(openai.NotFoundError) as e:
        oai(stack.gw).completions.create(model="gpt-4o", prompt=PROMPT, max_tokens=2)
    assert "gpt-4o" in e.value.message and MODEL in e.value.message
    status, body = http_get(f"{stack.gw.url}/v1/embeddings")
    assert status == 404 and "no such endpoint" in body["error"]["message"]


def test_a_model_without_a_chat_template_refuses_chat():
    gw = Gateway("127.0.0.1", 1)
    params = check_chat({"model": "m", "messages": MESSAGES})
    with pytest.raises(ApiError) as e:
        gw.prepare(params, {"model": "m", "max_ctx": 64, "chat_template": None})
    assert e.value.status == 400 and "no chat template" in e.value.message and "/v1/completions" in e.value.message
    # a template that fails to render is a clear 400 too
    with pytest.raises(ApiError) as e:
        gw.prepare(params, {"model": "m", "max_ctx": 64, "chat_template": "{{ raise_exception('no system role') }"})
    assert e.value.status == 400 and "chat template" in e.value.message


def test_request_checks_without_a_server():
    p = check_completion({"model": "m", "prompt": "hi", "stop": "x", "seed": 3, "top_k": 2, "user": "u"})
    assert p.generate == {"max_new_tokens": 16, "temperature": 1.0, "seed": 3, "top_k": 2, "stop": ["x"]}
    for bad in ({"model": "m", "prompt": ["a", "b"]}, {"model": "m", "prompt": 3}, {"prompt": "x"},
                {"model": "m", "prompt": "x", "n": True}, {"model": "m", "prompt": "x", "seed": -1},
                {"model": "m", "prompt": "x", "stream_options": {"include_usage": True}}):
        with pytest.raises(ApiError) as e:
            check_completion(bad)
        assert e.value.status == 400 and e.value.param is not None
    # every ERROR kind of the serving protocol has an HTTP status
    from dlavm.serve import protocol
    assert set(protocol.ERROR_KINDS) <= set(KIND_STATUS)
    assert set(FINISH_REASON) == set(protocol.STOP_REASONS)   # and every stop reason a finish_reason


def test_api_key(stack):
    with start_gateway(stack.served.host, stack.served.port, port=0, api_key="s3cret") as gw:
        with pytest.raises(openai.AuthenticationError) as e:
            oai(gw, api_key="wrong").models.list()
        assert "API key" in e.value.message
        assert [m.id for m in oai(gw, api_key="s3cret").models.list().data] == [MODEL]
        status, body = http_get(f"{gw.url}/health")   # open, for load balancers
        assert status == 200 and body["status"] == "ok"


def test_model_server_token():
    with device_server() as uri, serving(uri, "--token", "shh") as served:
        with start_gateway(served.host, served.port, port=0, token="shh") as gw:
            # the server frees the slot once it has seen the close: the client's own retries of a 503 cover that
            r = oai(gw).with_options(max_retries=5).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2,
                                                                       temperature=0)
            assert r.usage.completion_tokens == 2
        with pytest.raises(GatewayError, match="token"):   # checked at start: one line, not a 502 later
            start_gateway(served.host, served.port, port=0, token="wrong")
        with start_gateway(served.host, served.port, port=0, token="wrong", check=False) as gw:
            with pytest.raises(openai.APIStatusError) as e:
                oai(gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
            assert e.value.status_code == 502 and e.value.code == "model_server_unauthorized"


def test_non_loopback_host_needs_an_api_key(stack):
    with pytest.raises(GatewayError, match="--api-key"):
        start_gateway(stack.served.host, stack.served.port, host="0.0.0.0", port=0)


def test_model_server_down_is_502_and_health_503(stack):
    with start_gateway("127.0.0.1", _free_port(), port=0, check=False) as gw:
        with pytest.raises(openai.InternalServerError) as e:
            oai(gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
        assert e.value.status_code == 502 and "cannot be reached" in e.value.message
        status, body = http_get(f"{gw.url}/health")
        assert status == 503 and body["status"] == "unavailable"


def test_every_serving_error_has_its_http_status():
    from dlavm.serve import client as C
    want = {C.BadRequestError: 400, C.ContextError: 400, C.FrameTooLargeError: 400, C.BusyError: 503,
            C.DeviceError: 502, C.UnauthorizedError: 502, C.ProtocolError: 502, C.InternalError: 500,
            C.ConnectionLostError: 502, C.ServeTimeoutError: 504}
    for cls, status in want.items():
        err = _serve_error(cls("the message"), "127.0.0.1:7070")
        assert err.status == status and "the message" in err.message, cls
    assert _serve_error(C.BusyError("full"), "x").headers == {"Retry-After": "1"}
    assert _serve_error(ConnectionRefusedError("refused"), "h:1").status == 502


def test_busy_model_server_is_503_with_its_message():
    with device_server() as uri, serving(uri, "--max-clients", "1") as served:
        with start_gateway(served.host, served.port, port=0) as gw:
            with Client(served.host, served.port):   # holds the one connection
                with pytest.raises(openai.InternalServerError) as e:
                    oai(gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
                assert e.value.status_code == 503 and e.value.code == "server_busy"
                assert "maximum of 1 connection" in e.value.message
            # the server frees the slot once it has seen the close: the client's own retries of a 503 cover that
            r = oai(gw).with_options(max_retries=5).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2,
                                                                       temperature=0)
            assert r.usage.completion_tokens == 2


def test_device_lost_mid_stream_is_an_error_event_naming_the_device():
    with device_process() as (uri, dev), serving(uri) as served:
        with start_gateway(served.host, served.port, port=0) as gw:
            stream = oai(gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_CTX - 8,
                                                temperature=0, stream=True)
            it = iter(stream)
            next(it)
            dev.kill()
            dev.wait()
            with pytest.raises(openai.APIError) as e:
                for _ in it:
                    pass
            assert "device" in str(e.value.message) and uri.split("//")[1] in str(e.value.message)
            status, body = http_get(f"{gw.url}/health")
            assert status == 503 and body["status"] == "device_down"
            with pytest.raises(openai.APIStatusError) as e:   # no device: refused at once, 502
                oai(gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
            assert e.value.status_code == 502 and e.value.code == "device_error"


def test_concurrent_requests_each_get_their_own_reply(stack):
    from concurrent.futures import ThreadPoolExecutor
    prompts = ["the compiler maps", "the runtime streams the", "each layer of the model", "the host waits"]
    jobs = [(prompts[i % 4], 0.7, i, i % 2 == 0) for i in range(8)]
    want = [alone(stack.served, p, max_new_tokens=6, temperature=t, seed=s).text for p, t, s, _ in jobs]
    client = oai(stack.gw)

    def one(job):
        p, t, s, stream = job
        r = client.completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=t, seed=s, stream=stream)
        return "".join(c.choices[0].text for c in r) if stream else r.choices[0].text

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(one, jobs))
    assert got == want


# ------------------------------------------------------------------------------------ cancellation, log

def _stats(served) -> dict:
    with Client(served.host, served.port) as c:
        return c.stats()


def test_client_disconnect_mid_stream_cancels_at_the_model_server(stack):
    before = _stats(stack.served)["cancelled"]
    stream = oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_CTX - 16, temperature=0,
                                              stream=True)
    it = iter(stream)
    next(it)
    next(it)
    stream.close()
    deadline = time.monotonic() + 60
    while _stats(stack.served)["cancelled"] == before:
        assert time.monotonic() < deadline, "the model server did not see the request cancelled"
        time.sleep(0.05)
    # the device is free: the next request is served normally
    want = alone(stack.served, max_new_tokens=4, temperature=0)
    r = oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
    assert r.choices[0].text == want.text
    assert any("client disconnected" in line for line in stack.lines)


def test_one_access_line_per_request(stack):
    n = len(stack.lines)
    oai(stack.gw).completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0)
    new = stack.lines[n:]
    assert len(new) == 1
    assert new[0].startswith("dlavm-gateway: POST /v1/completions 200 ")
    assert "new_tokens=3" in new[0] and "finish=max_new_tokens" in new[0] and "ttft_ms=" in new[0]


# ------------------------------------------------------------------------------------ the command

def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_until_sigterm(stack, tmp_path):
    import signal
    port_file = tmp_path / "http.port"
    proc = subprocess.Popen([sys.executable, "-m", "dlavm.serve.gateway", "--connect",
                             f"{stack.served.host}:{stack.served.port}", "--port", "0", "--port-file", str(port_file)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not port_file.is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0)
        assert r.choices[0].text == alone(stack.served, max_new_tokens=3, temperature=0).text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == f"dlavm-gateway: listening on {url} (model {MODEL} at {stack.served.host}:{stack.served.port})"
    assert lines[1].startswith("dlavm-gateway: POST /v1/completions 200 ") and lines[-1] == "dlavm-gateway: stopped"
    assert "Traceback" not in out


@pytest.mark.parametrize("args, words", [
    (["--connect", "nonsense"], "HOST:PORT"),
    (["--connect", "127.0.0.1:1", "--host", "0.0.0.0"], "--api-key"),
    (["--connect", "127.0.0.1:PORT"], "cannot connect"),
    (["--connect", "127.0.0.1:1", "--timeout", "-1"], "--timeout"),
])
def test_command_refusals_are_one_error_line(args, words):
    args = [a.replace("PORT", str(_free_port())) for a in args]
    res = subprocess.run([sys.executable, "-m", "dlavm.serve.gateway", *args, "--port", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr
