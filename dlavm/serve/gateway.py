"""The OpenAI-compatible HTTP gateway in front of ``dlavm-server`` (doc/serve.md, "The OpenAI-compatible
endpoint"): ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (``stream: true`` as server-sent
events) and ``/health`` on Starlette and Uvicorn.

The gateway holds no model state. Each HTTP request opens its own serving-protocol connection
(:class:`dlavm.serve.Client`, run in a worker thread), so the model server's queue, limits and
cancellation apply to it as to any client; an HTTP client that disconnects closes that connection, which
cancels its request at the model server. Chat messages are put into the model's chat template (WELCOME's
``chat_template``) with :func:`dlavm.tokenizer.bundled.render_chat` (jinja2's sandbox).

    python -m dlavm.serve.gateway --connect 127.0.0.1:7070 --port 8000 [--api-key KEY]

In a program: :func:`create_app` (the ASGI app), :func:`start_gateway` (Uvicorn in a background thread;
``.stop()``), :func:`run_gateway` (in the foreground until SIGINT/SIGTERM).
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .protocol import TOKEN_ENV, is_loopback, parse_address

NAME = "dlavm-gateway"
#: Environment variables the command line reads its secrets from (a command line is visible to `ps`):
#: the model server's token (TOKEN_ENV, dlavm.serve.protocol's) and the API key of the HTTP side.
API_KEY_ENV = "DLAVM_API_KEY"
#: The largest request body accepted (bytes); the model server's frames are at most 1 MiB by default.
MAX_BODY = 4 << 20
#: Seconds a worker waits on the model server per socket operation (a queued request waits at most this
#: long for its first token, a running one this long between tokens).
DEFAULT_TIMEOUT = 600.0


class ApiError(Exception):
    """An HTTP error answered as OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


#: ERROR kind of the serving protocol -> (HTTP status, OpenAI error type, code). ``unauthorized`` is the
#: gateway's own token being refused by the model server: a configuration fault of the gateway, not of the
#: HTTP client (whose key is checked by the gateway itself: 401).
KIND_STATUS = {
    "bad_request": (400, "invalid_request_error", None),
    "context": (400, "invalid_request_error", "context_length_exceeded"),
    "busy": (503, "server_error", "server_busy"),
    "device": (502, "server_error", "device_error"),
    "unauthorized": (502, "server_error", "model_server_unauthorized"),
    "bad_frame": (502, "server_error", "protocol_error"),
    "too_large": (400, "invalid_request_error", "request_too_large"),
    "internal": (500, "server_error", "model_server_internal_error"),
    "timeout": (504, "server_error", "model_server_timeout"),
}
#: DONE's ``stop_reason`` -> OpenAI's ``finish_reason``.
FINISH_REASON = {"max_new_tokens": "length", "context": "length", "eos": "stop", "stop": "stop",
                 "cancelled": "stop"}


def _serve_error(exc: BaseException, where: str) -> ApiError:
    """The :class:`ApiError` of a failure of the serving connection (a ``dlavm.serve`` error or an OSError)."""
    from . import client as _client
    kind = getattr(exc, "kind", None)
    if isinstance(exc, _client.ServeError) and kind in KIND_STATUS:
        status, typ, code = KIND_STATUS[kind]
        headers = {"Retry-After": "1"} if kind == "busy" else None
        message = str(exc)
        if kind == "unauthorized":
            message = f"the model server at {where} refused the gateway's token: {exc}"
        return ApiError(status, message, typ, code, headers=headers)
    if isinstance(exc, (_client.ServeError, OSError)):
        return ApiError(502, f"the model server at {where} cannot be reached or answered wrongly: {exc}",
                        "server_error", "model_server_unavailable")
    return ApiError(500, f"internal gateway error: {type(exc).__name__}: {exc}", "server_error", "internal_error")


# ------------------------------------------------------------------------------------ request checking

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _same(a, b) -> bool:
    """``a == b`` where a bool equals only a bool (``True == 1`` in Python, not in JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", "invalid_value", param)


#: Accepted only at the value that means "off" (OpenAI features this server does not have); any other value
#: is refused with a message, never ignored.
_OFF = {"n": (1,), "best_of": (1,), "echo": (False,), "logprobs": (False, None), "top_logprobs": (None, 0),
        "presence_penalty": (0,), "frequency_penalty": (0,), "logit_bias": ({},), "suffix": (None, ""),
        "tools": ([],), "tool_choice": ("none",), "functions": ([],), "function_call": ("none",),
        "parallel_tool_calls": (None, False, True), "response_format": ({"type": "text"},)}
_OFF_WHY = {"n": "one choice per request (n=1)", "best_of": "one candidate (best_of=1)", "echo": "no echo",
            "logprobs": "no log probabilities", "top_logprobs": "no log probabilities",
            "presence_penalty": "no presence penalty", "frequency_penalty": "no frequency penalty",
            "logit_bias": "no logit bias", "suffix": "no suffix (insertion)", "tools": "no tools",
            "tool_choice": "no tools", "functions": "no functions", "function_call": "no functions",
            "parallel_tool_calls": "no tools", "response_format": "plain text only"}
_COMMON = {"model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options",
           "user", "n", "presence_penalty", "frequency_penalty", "logit_bias"}
COMPLETION_KEYS = _COMMON | {"prompt", "best_of", "echo", "logprobs", "suffix"}
CHAT_KEYS = _COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "tools", "tool_choice",
                       "functions", "function_call", "parallel_tool_calls", "response_format"}


@dataclass
class Params:
    """A checked OpenAI request: what goes to the model server and how to answer."""
    model: str
    stream: bool
    include_usage: bool
    generate: dict = field(default_factory=dict)   # keyword arguments of Client.generate (no prompt)
    prompt: str | None = None                      # completions: text prompt
    prompt_ids: list | None = None                 # completions: token ids
    messages: list | None = None                   # chat: checked messages


def _check_common(body: dict, keys: set, chat: bool) -> Params:
    for k in body:
        if k not in keys:
            raise ApiError(400, f"Unrecognized request argument supplied: {k}", "invalid_request_error",
                           "unknown_parameter", k)
    for k, allowed in _OFF.items():
        if k in body and body[k] is not None and not any(_same(body[k], a) for a in allowed):
            raise _bad(k, f"{k}={json.dumps(body[k])} is not supported: this server offers {_OFF_WHY[k]}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "you must provide a model parameter (see GET /v1/models)")
    gen: dict[str, Any] = {}
    for name in (("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)):
        v = body.get(name)
        if v is not None:
            if not _is_int(v) or v < 1:
                raise _bad(name, f"{name}={json.dumps(v)}: give an integer >= 1")
            gen["max_new_tokens"] = v
            break
    if not chat and "max_new_tokens" not in gen:
        gen["max_new_tokens"] = 16   # OpenAI's default for completions; chat runs to EOS or the context
    t = body.get("temperature")
    if t is None:
        t = 1.0                      # OpenAI's default
    if not _is_number(t) or t < 0:
        raise _bad("temperature", f"temperature={json.dumps(t)}: give a finite number >= 0 (0: greedy)")
    gen["temperature"] = float(t)
    p = body.get("top_p")
    if p is not None:
        if not _is_number(p) or not 0 < p <= 1:
            raise _bad("top_p", f"top_p={json.dumps(p)}: give a number in (0, 1]")
        gen["top_p"] = float(p)
    k = body.get("top_k")
    if k is not None:
        if not _is_int(k) or k < 0:
            raise _bad("top_k", f"top_k={json.dumps(k)}: give an integer >= 0 (0: all)")
        gen["top_k"] = k
    s = body.get("seed")
    if s is not None:
        if not _is_int(s) or not 0 <= s < 2 ** 63:
            raise _bad("seed", f"seed={json.dumps(s)}: give an integer in [0, 2^63)")
        gen["seed"] = s
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops):
            raise _bad("stop", f"stop={json.dumps(stop)[:200]}: give a non-empty string or a list of them")
        if stops:
            gen["stop"] = stops
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream", f"stream={json.dumps(stream)}: give true or false")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise _bad("stream_options", "stream_options is only allowed when stream is true")
        if not isinstance(opts, dict) or set(opts) - {"include_usage"} or \
                not isinstance(opts.get("include_usage", False), bool):
            raise _bad("stream_options", f"stream_options={json.dumps(opts)[:200]}: only "
                                         '{"include_usage": true or false} is supported')
        include_usage = opts.get("include_usage", False)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "user: give a string")
    return Params(model=model, stream=stream, include_usage=include_usage, generate=gen)


def check_completion(body: dict) -> Params:
    """The :class:`Params` of a ``/v1/completions`` body, or :class:`ApiError` naming the parameter."""
    params = _check_common(body, COMPLETION_KEYS, chat=False)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]           # a batch of one
    if isinstance(prompt, str):
        params.prompt = prompt
    elif isinstance(prompt, list) and prompt and all(_is_int(i) for i in prompt):
        params.prompt_ids = list(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise _bad("prompt", f"{len(prompt)} prompts: this server answers one prompt per request")
    else:
        raise _bad("prompt", "prompt: give a string, a list of one string, or a list of token ids")
    return params


def check_chat(body: dict) -> Params:
    """The :class:`Params` of a ``/v1/chat/completions`` body, or :class:`ApiError` naming the parameter."""
    params = _check_common(body, CHAT_KEYS, chat=True)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("messages", "messages: give a non-empty list of {\"role\", \"content\"} objects")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad("messages", f"{where}: give an object with a string 'role' and 'content'")
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise _bad("messages", f"{where}: unsupported key(s) {sorted(extra)} (this server has no tools)")
        content = m.get("content")
        if isinstance(content, list):   # content parts: text only
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _bad("messages", f"{where}.content[{j}]: only {{\"type\": \"text\", \"text\": ...}} "
                                           "parts are supported")
                texts.append(part["text"])
            content = "".join(texts)
        if not isinstance(content, str):
            raise _bad("messages", f"{where}.content: give a string or a list of text parts")
        out.append({"role": m["role"], "content": content})
    params.messages = out
    return params


# ------------------------------------------------------------------------------------ one request

class Job:
    """One request on its own serving-protocol connection, run by a worker thread. The thread puts
    ``("token", Token)``, then ``("done", Completion)`` or ``("error", exception)`` on :attr:`events`
    (an asyncio queue of the event loop that created the job). :meth:`cancel` (from the event loop) shuts
    the connection down, which cancels the request at the model server."""

    def __init__(self, gateway: "Gateway", params: Params, loop: asyncio.AbstractEventLoop):
        self.gateway, self.params, self.loop = gateway, params, loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.info: dict | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._client = None
        self.thread = threading.Thread(target=self._run, name=f"{NAME}-job", daemon=True)

    def start(self) -> "Job":
        self.thread.start()
        return self

    def _put(self, kind: str, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, item))
        except RuntimeError:   # the event loop is closed: nobody is listening any more
            pass

    def _run(self) -> None:
        client = None
        try:
            client = self.gateway.connect()
            with self._lock:
                if self._cancelled.is_set():
                    return
                self._client = client
            self.info = client.info
            kwargs = self.gateway.prepare(self.params, client.info)
            it = client.generate(stream=True, **kwargs)
            for tok in it:
                if self._cancelled.is_set():
                    break
                self._put("token", tok)
            else:
                self._put("done", it.completion)
                return
            close = getattr(it, "close", None)
            if close is not None:
                close()
        except BaseException as exc:  # noqa: BLE001 -- every failure goes to the HTTP side
            if not self._cancelled.is_set():
                self._put("error", exc)
        finally:
            with self._lock:
                self._client = None
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 -- already failed or closed
                    pass

    def cancel(self) -> None:
        """Stop the request: a worker waiting on the model server is woken by shutting its socket down."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        with self._lock:
            client = self._client
        sock = getattr(client, "_sock", None) if client is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


async def _watch_disconnect(receive, job: Job) -> None:
    """Cancel ``job`` when the HTTP client goes away (``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            return


# ------------------------------------------------------------------------------------ the app

@dataclass
class Gateway:
    """What every endpoint shares: where the model server is and how to log."""
    connect_host: str
    connect_port: int
    token: str | None = None
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    log: Callable[[str], None] | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def where(self) -> str:
        return f"{self.connect_host}:{self.connect_port}"

    def connect(self):
        from .client import Client
        return Client(self.connect_host, self.connect_port, token=self.token, timeout=self.timeout)

    def prepare(self, params: Params, info: dict) -> dict:
        """``Client.generate``'s keyword arguments of ``params`` for the model of WELCOME ``info``."""
        if params.model != info.get("model"):
            raise ApiError(404, f"The model `{params.model}` does not exist: this server serves "
                                f"`{info.get('model')}` (GET /v1/models)", "invalid_request_error",
                           "model_not_found", "model")
        kwargs = dict(params.generate)
        if params.messages is not None:
            template = info.get("chat_template")
            if not template:
                raise ApiError(400, f"model `{info.get('model')}` has no chat template (its tokenizer brought "
                                    "none): use /v1/completions with a plain prompt", "invalid_request_error",
                               "no_chat_template", "messages")
            from dlavm.tokenizer import TokenizerError
            from dlavm.tokenizer.bundled import render_chat
            try:
                kwargs["prompt"] = render_chat(template, params.messages, bos_token=info.get("bos_token") or "",
                                               eos_token=info.get("eos_token") or "")
            except TokenizerError as e:
                raise ApiError(400, str(e), "invalid_request_error", "chat_template_error", "messages") from None
            kwargs["add_bos"] = False   # the template places BOS itself, as apply_chat_template does
        elif params.prompt_ids is not None:
            kwargs["prompt_ids"] = params.prompt_ids
        else:
            kwargs["prompt"] = params.prompt
        if params.messages is not None and "max_new_tokens" not in kwargs:
            kwargs["max_new_tokens"] = int(info["max_ctx"])   # until EOS or the context is full
        return kwargs

    def emit(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


@dataclass
class _Access:
    """The access line of one request, written when it ends."""
    method: str
    path: str
    start: float = field(default_factory=time.perf_counter)
    status: int = 200
    stream: bool = False
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    finish: str | None = None
    ttft_ms: float | None = None
    error: str | None = None

    def line(self) -> str:
        parts = [f"{NAME}: {self.method} {self.path} {self.status}"]
        if self.stream:
            parts.append("stream")
        for key in ("prompt_tokens", "new_tokens", "finish"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)}")
        if self.ttft_ms is not None:
            parts.append(f"ttft_ms={self.ttft_ms:.1f}")
        parts.append(f"ms={(time.perf_counter() - self.start) * 1e3:.1f}")
        if self.error:
            parts.append(f"error={self.error!r}")
        return " ".join(parts)


def create_app(connect_host: str, connect_port: int, token: str | None = None, api_key: str | None = None,
               timeout: float = DEFAULT_TIMEOUT, log: Callable[[str], None] | None = None):
    """The gateway's ASGI app (Starlette) in front of the model server at ``connect_host:connect_port``.

    ``token``: the model server's shared secret (HELLO); ``api_key``: when given, every ``/v1/`` request
    must carry ``Authorization: Bearer <api_key>`` (``/health`` is open); ``timeout``: seconds per socket
    operation towards the model server; ``log``: called with one access line per request."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    gw = Gateway(connect_host, int(connect_port), token=token, api_key=api_key, timeout=timeout, log=log)

    def error_response(e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    def endpoint(handler, auth: bool = True):
        async def run(request):
            acc = _Access(request.method, request.url.path)
            try:
                if auth and gw.api_key is not None:
                    _check_key(request, gw.api_key)
                response = await handler(request, acc)
            except ApiError as e:
                response = error_response(e)
                acc.error = e.message
            except Exception as e:  # noqa: BLE001 -- a gateway bug: still an OpenAI error object, one line
                err = ApiError(500, f"internal gateway error: {type(e).__name__}: {e}", "server_error",
                               "internal_error")
                response = error_response(err)
                acc.error = err.message
            acc.status = response.status_code
            if not isinstance(response, _EventStream):
                gw.emit(acc.line())
            else:
                response.access = acc
            return response
        return run

    async def models(request, acc):
        info = await _info(gw)
        return JSONResponse({"object": "list", "data": [
            {"id": info["model"], "object": "model", "created": gw.created, "owned_by": "dlavm",
             "max_model_len": info.get("max_ctx"), "target": info.get("target")}]})

    async def health(request, acc):
        try:
            h = await _in_thread(lambda: _health(gw))
        except ApiError as e:
            return JSONResponse({"status": "unavailable", "model_server": gw.where, "error": e.message},
                                status_code=503)
        status = 200 if h.get("status") == "ok" else 503
        return JSONResponse({"status": h.get("status"), "model_server": gw.where, "queue": h.get("queue"),
                             "running": h.get("running")}, status_code=status)

    async def completions(request, acc):
        return await _generate(request, acc, gw, check_completion(await _body(request)), chat=False)

    async def chat(request, acc):
        return await _generate(request, acc, gw, check_chat(await _body(request)), chat=True)

    async def http_error(request, exc):
        msg = {404: f"no such endpoint: {request.method} {request.url.path} (this server has /v1/models, "
                    "/v1/completions, /v1/chat/completions, /health)",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                     str(exc.detail))
        gw.emit(_Access(request.method, request.url.path, status=exc.status_code, error=msg).line())
        return JSONResponse(ApiError(exc.status_code, msg, "invalid_request_error",
                                     "not_found" if exc.status_code == 404 else None).body(),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    routes = [Route("/v1/models", endpoint(models), methods=["GET"]),
              Route("/v1/completions", endpoint(completions), methods=["POST"]),
              Route("/v1/chat/completions", endpoint(chat), methods=["POST"]),
              Route("/health", endpoint(health, auth=False), methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.gateway = gw
    return app


def _check_key(request, key: str) -> None:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), key.encode()):
        raise ApiError(401, "Incorrect API key provided: give it as 'Authorization: Bearer <key>' "
                            "(the gateway's --api-key)", "invalid_request_error", "invalid_api_key")


async def _body(request) -> dict:
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes", "invalid_request_error",
                           "request_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", "invalid_request_error",
                       "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request_error", "invalid_json")
    return body


async def _in_thread(fn):
    """``fn()`` in a worker thread (the serving client blocks)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def _hello(gw: Gateway) -> dict:
    try:
        client = gw.connect()
    except BaseException as e:  # noqa: BLE001
        raise _serve_error(e, gw.where) from None
    try:
        return dict(client.info)
    finally:
        client.close()


def _health(gw: Gateway) -> dict:
    try:
        client = gw.connect()
        try:
            return client.health()
        finally:
            client.close()
    except BaseException as e:  # noqa: BLE001
        raise _serve_error(e, gw.where) from None


async def _info(gw: Gateway) -> dict:
    return await _in_thread(lambda: _hello(gw))


async def _next_event(job: Job, receive) -> tuple[str, Any] | None:
    """The job's next event, or None when the HTTP client disconnected first (the job is then cancelled)."""
    get = asyncio.ensure_future(job.events.get())
    watch = asyncio.ensure_future(_watch_disconnect(receive, job))
    try:
        done, _ = await asyncio.wait({get, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        job.cancel()
        raise
    finally:
        watch.cancel()
    if get in done:
        return get.result()
    get.cancel()
    return None


def _usage(c) -> dict:
    n = c.new_tokens
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": n, "total_tokens": c.prompt_tokens + n}


async def _generate(request, acc: _Access, gw: Gateway, params: Params, chat: bool):
    from starlette.responses import JSONResponse
    acc.stream = params.stream
    job = Job(gw, params, asyncio.get_running_loop()).start()
    receive = request.receive
    first = await _next_event(job, receive)
    if first is None:   # the client left while the request waited
        acc.error = "client disconnected"
        acc.status = 499
        return JSONResponse({}, status_code=499)
    kind, item = first
    if kind == "error":
        raise item if isinstance(item, ApiError) else _serve_error(item, gw.where)
    acc.ttft_ms = (time.perf_counter() - acc.start) * 1e3
    rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())
    if not params.stream:
        pieces = []
        while kind == "token":
            pieces.append(item.text)
            ev = await _next_event(job, receive)
            if ev is None:
                acc.error = "client disconnected"
                return JSONResponse({}, status_code=499)
            kind, item = ev
        if kind == "error":
            raise item if isinstance(item, ApiError) else _serve_error(item, gw.where)
        c = item
        finish = FINISH_REASON.get(c.stop_reason, "stop")
        acc.prompt_tokens, acc.new_tokens, acc.finish = c.prompt_tokens, c.new_tokens, c.stop_reason
        model = params.model
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                      "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": c.text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        return JSONResponse({"id": rid, "object": obj, "created": created, "model": model, "choices": [choice],
                             "usage": _usage(c), "system_fingerprint": None})
    return _EventStream(job, params, chat, rid, created, first, gw, acc)


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class _EventStream:
    """An ASGI response streaming a job as OpenAI's server-sent events: one chunk per piece of text, a last
    chunk with ``finish_reason``, optionally a usage chunk, then ``data: [DONE]``. An HTTP client that
    disconnects cancels the job at once (not only at the next write)."""

    status_code = 200

    def __init__(self, job: Job, params: Params, chat: bool, rid: str, created: int, first, gw: Gateway,
                 acc: _Access):
        self.job, self.params, self.chat, self.rid, self.created = job, params, chat, rid, created
        self.first, self.gw, self.access = first, gw, acc

    def _chunk(self, text: str | None, finish: str | None, role: bool = False) -> dict:
        if self.chat:
            delta = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        out = {"id": self.rid, "object": obj, "created": self.created, "model": self.params.model,
               "choices": [choice], "system_fingerprint": None}
        if self.params.include_usage:
            out["usage"] = None
        return out

    async def __call__(self, scope, receive, send) -> None:
        acc = self.access
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no")]})

        async def body(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        job = self.job
        streamed = ""
        try:
            if self.chat:
                await body(_sse(self._chunk("", None, role=True)))
            kind, item = self.first
            while True:
                if kind == "token":
                    if item.text:
                        streamed += item.text
                        await body(_sse(self._chunk(item.text, None)))
                elif kind == "done":
                    c = item
                    finish = FINISH_REASON.get(c.stop_reason, "stop")
                    tail = c.text[len(streamed):] if c.text.startswith(streamed) else ""
                    if tail:
                        await body(_sse(self._chunk(tail, None)))
                    await body(_sse(self._chunk(None if self.chat else "", finish)))
                    if self.params.include_usage:
                        await body(_sse({"id": self.rid, "object": self._chunk(None, None)["object"],
                                         "created": self.created, "model": self.params.model, "choices": [],
                                         "usage": _usage(c), "system_fingerprint": None}))
                    await body(b"data: [DONE]\n\n")
                    acc.prompt_tokens, acc.new_tokens, acc.finish = c.prompt_tokens, c.new_tokens, c.stop_reason
                    break
                else:   # an error after the stream began: OpenAI's error object as an event, then the end
                    err = item if isinstance(item, ApiError) else _serve_error(item, self.gw.where)
                    acc.error = err.message
                    await body(_sse(err.body()))
                    break
                ev = await _next_event(job, receive)
                if ev is None:
                    acc.error = "client disconnected"
                    break
                kind, item = ev
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            acc.error = "client disconnected"
        finally:
            job.cancel()
            self.gw.emit(acc.line())


# ------------------------------------------------------------------------------------ running it


class GatewayError(Exception):
    """The gateway cannot start (a refused option, a port in use, the model server unreachable)."""


class RunningGateway:
    """A gateway served by Uvicorn in a background thread (:func:`start_gateway`)."""

    def __init__(self, server, thread: threading.Thread, host: str, port: int, model: str | None):
        self._server, self._thread = server, thread
        self.host, self.port, self.model = host, port, model

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end open requests (their model-server requests are cancelled) and join."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> "RunningGateway":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_gateway(connect_host: str, connect_port: int, host: str = "127.0.0.1", port: int = 8000,
                  token: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                  log: Callable[[str], None] | None = None, check: bool = True) -> RunningGateway:
    """Serve the gateway on ``host:port`` (0: any free port) in a background thread and return once it
    listens. Binds 127.0.0.1 unless ``host`` says otherwise; a non-loopback ``host`` needs ``api_key``.
    ``check``: first say HELLO to the model server, so that an unreachable one or a wrong ``token`` is a
    :class:`GatewayError` now rather than an HTTP 502 later. The other arguments are :func:`create_app`'s."""
    import uvicorn
    if not is_loopback(host) and not api_key:
        raise GatewayError(f"--host {host} is not a loopback address: give --api-key too, so that only "
                           "clients with the key can use the model")
    if not 0 <= port <= 65535:
        raise GatewayError(f"port {port} is outside 0..65535")
    gw = Gateway(connect_host, int(connect_port), token=token, timeout=timeout)
    model = None
    if check:
        try:
            model = _hello(gw).get("model")
        except ApiError as e:
            raise GatewayError(e.message) from None
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        raise GatewayError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    app = create_app(connect_host, connect_port, token=token, api_key=api_key, timeout=timeout, log=log)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=NAME, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise GatewayError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.01)
    return RunningGateway(server, thread, host, sock.getsockname()[1], model)


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_gateway(connect_host: str, connect_port: int, host: str = "127.0.0.1", port: int = 8000,
                token: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                port_file: str | None = None, log: Callable[[str], None] | None = _stderr_log,
                stop: threading.Event | None = None) -> int:
    """Serve the gateway in the foreground until SIGINT or SIGTERM (or ``stop`` is set, when given; then
    no signal handler is installed, for a caller that handles signals itself, or runs this off the main
    thread). Prints ``dlavm-gateway: listening on http://HOST:PORT`` once listening (and writes the port
    to ``port_file``); returns 0 after a clean stop. Raises :class:`GatewayError` when it cannot start."""
    if stop is None:   # installed first: a signal during the start stops the gateway once it is up
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    g = start_gateway(connect_host, connect_port, host=host, port=port, token=token, api_key=api_key,
                      timeout=timeout, log=log)
    if log is not None:
        log(f"{NAME}: listening on {g.url} (model {g.model} at {connect_host}:{connect_port})")
    if port_file:   # whole or not at all, for a supervisor that polls it
        tmp = f"{port_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{g.port}\n")
        os.replace(tmp, port_file)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        g.stop()
    if log is not None:
        log(f"{NAME}: stopped")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def main(argv=None) -> int:
    parser = _Parser(prog="python -m dlavm.serve.gateway", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connect", required=True, metavar="HOST:PORT", help="the model server (dlavm-server)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; another "
                                                            "one needs --api-key)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (0: any free one; default 8000)")
    parser.add_argument("--port-file", default=None, help="write the HTTP port to this file once listening")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"the model server's shared secret (its --token; default: ${TOKEN_ENV})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                        help=f"require 'Authorization: Bearer KEY' on /v1/ (default: ${API_KEY_ENV}); needed "
                             "with a --host that is not loopback")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per socket operation towards the model server (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        host, port = parse_address(args.connect)
    except ValueError as e:
        parser.error(f"--connect: {e}")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout {args.timeout}: give a positive number of seconds")
    try:
        return run_gateway(host, port, host=args.host, port=args.port, token=args.token, api_key=args.api_key,
                           timeout=args.timeout, port_file=args.port_file)
    except GatewayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
