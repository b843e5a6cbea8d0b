"""The Python client of ``dlavm-server`` (doc/serve.md, "The Python client").

Standard library only (sockets and JSON): a PC that talks to the board host
needs neither numpy nor torch::

    from dlavm.serve import Client
    with Client("127.0.0.1", 7070) as c:
        print(c.generate("The compiler reads", max_new_tokens=32).text)
        for tok in c.generate("The compiler reads", max_new_tokens=32, stream=True):
            print(tok.text, end="", flush=True)

Every frame received is checked before it is used: its length against the
frame limit before its body is read, its request id against the request in
flight, its JSON against the shape doc/serve.md gives. A frame that fails a
check ends the connection with :class:`ProtocolError`: after it, nothing on
the stream can be trusted. Every socket operation is bounded by the
client's ``timeout``. One client is one connection and is not meant to be
shared between threads (use one client per thread).
"""
from __future__ import annotations

import collections
import math
import operator
import socket
from dataclasses import dataclass, field

from . import protocol as P
from .protocol import FrameType


# ---------------------------------------------------------------- errors

class ServeError(Exception):
    """A request or connection failed. ``kind`` is the server's ERROR kind (doc/serve.md), or
    ``"connection"`` / ``"timeout"`` / ``"protocol"`` for what this end detected; ``request_id`` the
    request it ended, None for the connection."""

    kind = "internal"

    def __init__(self, message: str, request_id: int | None = None, kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        if kind is not None:
            self.kind = kind


class ProtocolError(ServeError):
    """A frame outside the protocol, from either end: ERROR ``bad_frame`` from the server, or a
    malformed frame the client received. The connection is closed."""
    kind = "bad_frame"


class FrameTooLargeError(ProtocolError):
    """ERROR ``too_large``: a frame past the server's limit (the connection is closed)."""
    kind = "too_large"


class UnauthorizedError(ServeError):
    """ERROR ``unauthorized``: a wrong or missing ``token`` (the connection is closed)."""
    kind = "unauthorized"


class BadRequestError(ServeError):
    """ERROR ``bad_request``: a GENERATE field outside its rule (the message names it)."""
    kind = "bad_request"


class ContextError(ServeError):
    """ERROR ``context``: the prompt is longer than the model's context; refused before device work."""
    kind = "context"


class BusyError(ServeError):
    """ERROR ``busy``: the server's queue (or its connection limit) is full; try again later."""
    kind = "busy"


class DeviceError(ServeError):
    """ERROR ``device``: the device failed during the request; the message names the cause."""
    kind = "device"


class InternalError(ServeError):
    """ERROR ``internal``: a bug in the server."""
    kind = "internal"


class ConnectionLostError(ServeError, ConnectionError):
    """The connection could not be made, was closed by the server, or broke."""
    kind = "connection"


class ServeTimeoutError(ServeError, TimeoutError):
    """The server did not answer within the client's timeout (the connection is closed: a frame may be
    half read)."""
    kind = "timeout"


_ERRORS = {c.kind: c for c in (ProtocolError, FrameTooLargeError, UnauthorizedError, BadRequestError,
                               ContextError, BusyError, DeviceError, InternalError)}
#: ERROR kinds after which the server closes the connection.
_CLOSING = ("bad_frame", "too_large", "unauthorized")


def error_of(kind: str, message: str, request_id: int | None) -> ServeError:
    """The :class:`ServeError` subclass of an ERROR frame (an unknown kind: :class:`ServeError`)."""
    cls = _ERRORS.get(kind)
    if cls is None:
        return ServeError(f"{kind}: {message}", request_id, kind=kind)
    return cls(message, request_id)


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class Token:
    """One generated token: its ``id`` and the text it makes final (may be empty: an incomplete UTF-8
    character or a possible stop string is held back until it is decided)."""
    id: int
    text: str


@dataclass(frozen=True)
class Completion:
    """A finished request: the reply's ``text`` (the TOKEN texts and DONE's ``text_tail``), the generated
    ``token_ids``, why it stopped and the server's figures (``sim_ms``: simulated device time, None when
    the device has no cycle counter; ``host_ms``, ``queue_ms``: the server's wall times)."""
    id: int
    text: str
    token_ids: list = field(repr=False)
    stop_reason: str
    prompt_tokens: int
    new_tokens: int
    seed: int | None
    sim_ms: float | None
    host_ms: float
    queue_ms: float


# ---------------------------------------------------------------- the client

class TokenStream:
    """The tokens of one request as they arrive (``Client.generate(..., stream=True)``).

    Iterate it for :class:`Token` objects; when the request ends, ``completion`` is set and the
    iteration stops. An ERROR of the request is raised from the iteration. Leaving it early (``break``,
    ``close()``, ``with``, or the stream being garbage collected) sends CANCEL and reads the rest of the
    request off the connection, so the client can send the next request at once."""

    def __init__(self, client: "Client", request_id: int):
        self._client = client
        self.request_id = request_id
        self.completion: Completion | None = None
        self.tail = ""   # DONE's text_tail: the end of the reply no TOKEN carried (held back until the end)
        self._texts: list[str] = []
        self._ids: list[int] = []
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def __iter__(self) -> "TokenStream":
        return self

    def __next__(self) -> Token:
        if self._finished:
            raise StopIteration
        kind, data = self._client._next_event(self.request_id)
        if kind == "token":
            tok = Token(*data)
            self._ids.append(tok.id)
            self._texts.append(tok.text)
            return tok
        self._finished = True
        self._client._request_ended(self)
        if kind == "error":
            raise data
        self.tail = data["text_tail"]
        self.completion = _completion(data, "".join(self._texts), self._ids)
        raise StopIteration

    def close(self) -> None:
        """Cancel the request if it is still running and read its remaining frames (bounded by the
        client's timeout)."""
        if self._finished:
            return
        self._finished = True
        c = self._client
        try:
            if not c.closed:
                c._send(P.encode_json(FrameType.CANCEL, {"id": self.request_id}))
                while True:
                    kind, data = c._next_event(self.request_id)
                    if kind == "token":
                        self._ids.append(data[0])
                        self._texts.append(data[1])
                        continue
                    if kind == "done":
                        self.tail = data["text_tail"]
                        self.completion = _completion(data, "".join(self._texts), self._ids)
                    break
        except ServeError:
            pass   # the connection is closed by now; nothing is left to cancel
        finally:
            c._request_ended(self)

    def __enter__(self) -> "TokenStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- never raise from a finaliser
            pass


def _ints(values, name: str) -> list:
    """``values`` as a list of Python ints (numpy integers too; no float, no bool)."""
    try:
        out = [operator.index(v) for v in values]
    except TypeError:
        raise BadRequestError(f"{name} must be a sequence of integers, got {values!r:.80}") from None
    if any(isinstance(v, bool) for v in values):
        raise BadRequestError(f"{name} must be a sequence of integers, got {values!r:.80}")
    return out


def _completion(done: dict, text: str, ids: list) -> Completion:
    return Completion(id=done["id"], text=text + done["text_tail"], token_ids=list(ids),
                      stop_reason=done["stop_reason"], prompt_tokens=done["prompt_tokens"],
                      new_tokens=done["new_tokens"], seed=done["seed"], sim_ms=done["sim_ms"],
                      host_ms=done["host_ms"], queue_ms=done["queue_ms"])


class Client:
    """A connection to ``dlavm-server`` at ``host:port`` (doc/serve.md).

    Connects, sends HELLO (with ``token`` when given) and keeps the WELCOME
    facts as :attr:`info` (``model``, ``target``, ``max_ctx``, ``vocab``,
    ``chat_template``, ...). ``timeout`` (seconds) bounds the connection and
    every read and write; a request may take longer as a whole, as long as
    the server sends a frame within each ``timeout``. Raises
    :class:`ConnectionLostError` when the server cannot be reached, and the
    ERROR of the handshake (:class:`UnauthorizedError`, :class:`BusyError`,
    :class:`ProtocolError`) when it refuses the connection.
    """

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 60.0):
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.address = f"{host}:{port}"
        self._sock: socket.socket | None = None
        self._limit = P.DEFAULT_MAX_FRAME
        self._next_id = 1
        self._active: TokenStream | None = None
        self._pending: collections.deque = collections.deque()   # frames of the request read by health()/stats()
        try:
            self._sock = socket.create_connection((host, self.port), timeout=self.timeout)
        except socket.timeout:
            raise ServeTimeoutError(f"cannot connect to dlavm-server at {self.address}: no answer within "
                                    f"{self.timeout:g} s") from None
        except OSError as e:
            raise ConnectionLostError(f"cannot connect to dlavm-server at {self.address}: "
                                      f"{e.strerror or e}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = {"protocol": P.PROTOCOL_VERSION}
        if token is not None:
            hello["token"] = token
        self._send(P.encode_json(FrameType.HELLO, hello))
        ftype, payload = self._recv()
        if ftype == FrameType.ERROR:
            err = self._error(payload)
            self.close()
            raise err
        if ftype != FrameType.WELCOME:
            self._broken(f"the server answered HELLO with frame type {ftype}, not WELCOME")
        self.info = self._json(payload, FrameType.WELCOME)
        if self.info["protocol"] != P.PROTOCOL_VERSION:
            self._broken(f"the server speaks protocol version {self.info['protocol']}, this client "
                         f"{P.PROTOCOL_VERSION}")
        if self.info["max_frame"] < P.MIN_MAX_FRAME:
            self._broken(f"the server announces a frame limit of {self.info['max_frame']} bytes, below the "
                         f"protocol's minimum of {P.MIN_MAX_FRAME}")
        self._limit = self.info["max_frame"]

    # ------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        return self._sock is None

    def generate(self, prompt: str | None = None, *, prompt_ids=None, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, stop=None, eos_ids=None, add_bos: bool | None = None,
                 stream: bool = False):
        """Run one request: exactly one of ``prompt`` (text, encoded by the server's bundled tokenizer) or
        ``prompt_ids``. Parameters left None take the server's defaults (doc/serve.md, GENERATE);
        ``eos_ids=[]`` never stops at EOS. Returns a :class:`Completion`, or with ``stream=True`` a
        :class:`TokenStream` of :class:`Token`. Raises the request's ERROR as a :class:`ServeError`
        subclass. A stream still open on this client is cancelled first."""
        if (prompt is None) == (prompt_ids is None):
            raise BadRequestError("give exactly one of prompt (text) or prompt_ids (token ids)")
        req: dict = {}
        if prompt is not None:
            if not isinstance(prompt, str):
                raise BadRequestError(f"prompt must be a string, got {type(prompt).__name__}")
            req["prompt"] = prompt
        else:
            req["prompt_ids"] = _ints(prompt_ids, "prompt_ids")
        for key, value in (("add_bos", add_bos), ("max_new_tokens", max_new_tokens), ("temperature", temperature),
                           ("top_k", top_k), ("top_p", top_p), ("seed", seed), ("eos_ids", eos_ids)):
            if value is None:
                continue
            if key == "eos_ids":
                value = _ints(value, key)
            elif not isinstance(value, (bool, int, float)) and hasattr(value, "__index__"):
                value = operator.index(value)        # a numpy integer
            elif not isinstance(value, (bool, int, float)) and hasattr(value, "__float__"):
                value = float(value)                 # a numpy float
            req[key] = value   # anything else is sent as it is: the server names a wrong type
        if stop is not None:
            req["stop"] = [stop] if isinstance(stop, str) else list(stop)
        for key in ("temperature", "top_p"):
            v = req.get(key)
            if isinstance(v, float) and not math.isfinite(v):
                raise BadRequestError(f"{key} must be finite, got {v}")
        s = self._start(req)
        if stream:
            return s
        try:
            for _ in s:
                pass
        finally:
            s.close()
        return s.completion

    def cancel(self) -> None:
        """Send CANCEL for the request in flight (its stream then ends with ``stop_reason`` ``cancelled``,
        or normally if it finished first). Nothing to cancel: no-op."""
        if self._active is not None and not self._active.finished:
            self._send(P.encode_json(FrameType.CANCEL, {"id": self._active.request_id}))

    def health(self) -> dict:
        """HEALTH: ``{"status": "ok" or "device_down", "queue": N, "running": bool}``."""
        return self._query(FrameType.HEALTH, FrameType.HEALTH_OK)

    def stats(self) -> dict:
        """STATS: the server's counters (doc/serve.md, STATS_OK)."""
        return self._query(FrameType.STATS, FrameType.STATS_OK)

    def close(self) -> None:
        """Close the connection (a request in flight is cancelled by the server)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------ requests

    def _start(self, req: dict) -> TokenStream:
        if self._active is not None:
            self._active.close()
        if self._sock is None:
            raise ConnectionLostError(f"the connection to dlavm-server at {self.address} is closed")
        rid = self._next_id
        self._next_id = rid % P.MAX_ID + 1
        req = {"id": rid, **req}
        try:
            frame = P.encode_json(FrameType.GENERATE, req)
        except (TypeError, ValueError) as e:
            raise BadRequestError(f"the request cannot be sent as JSON: {e}") from None
        if len(frame) - P.LENGTH.size > self._limit:
            raise FrameTooLargeError(f"the request is {len(frame) - P.LENGTH.size} bytes, more than the "
                                     f"server's frame limit of {self._limit}", rid)
        s = TokenStream(self, rid)
        self._active = s
        self._send(frame)
        return s

    def _request_ended(self, s: TokenStream) -> None:
        if self._active is s:
            self._active = None
            self._pending.clear()

    def _next_event(self, rid: int):
        """The next event of request ``rid``: ``("token", (token_id, text))``, ``("done", dict)`` or
        ``("error", ServeError)``. Any other frame is a protocol violation."""
        ftype, payload = self._pending.popleft() if self._pending else self._recv()
        if ftype == FrameType.TOKEN:
            try:
                got, tid, text = P.decode_token(payload)
            except P.FrameError as e:
                self._broken(str(e))
            if got != rid:
                self._broken(f"TOKEN frame addressed to request {got}; the request in flight is {rid}")
            return "token", (tid, text)
        if ftype == FrameType.DONE:
            done = self._json(payload, FrameType.DONE)
            if done["id"] != rid:
                self._broken(f"DONE frame addressed to request {done['id']}; the request in flight is {rid}")
            if done["stop_reason"] not in P.STOP_REASONS:
                self._broken(f"DONE frame with the unknown stop_reason {done['stop_reason']!r}")
            return "done", done
        if ftype == FrameType.ERROR:
            err = self._error(payload)
            if err.request_id is not None and err.request_id != rid:
                self._broken(f"ERROR frame addressed to request {err.request_id}; the request in flight is {rid}")
            if err.kind in _CLOSING or err.request_id is None and err.kind != "busy":
                self.close()
            return "error", err
        self._broken(f"unexpected frame type {ftype} while request {rid} runs")

    def _query(self, ask: FrameType, answer: FrameType) -> dict:
        if self._sock is None:
            raise ConnectionLostError(f"the connection to dlavm-server at {self.address} is closed")
        self._send(P.encode_frame(ask))
        while True:
            ftype, payload = self._recv()
            if ftype == answer:
                obj = self._json(payload, answer)
                if answer == FrameType.HEALTH_OK and obj["status"] not in P.HEALTH_STATUSES:
                    self._broken(f"HEALTH_OK frame with the unknown status {obj['status']!r}")
                return obj
            if ftype == FrameType.ERROR:
                err = self._error(payload)
                if err.request_id is None:
                    if err.kind in _CLOSING:
                        self.close()
                    raise err
            if self._active is not None and ftype in (FrameType.TOKEN, FrameType.DONE, FrameType.ERROR):
                self._pending.append((ftype, payload))   # the request's frames, read by its stream later
                continue
            self._broken(f"unexpected frame type {ftype} while waiting for {answer.name}")

    # ------------------------------------------------------------ frames

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionLostError(f"the connection to dlavm-server at {self.address} is closed")
        try:
            self._sock.sendall(data)
        except socket.timeout:
            self.close()
            raise ServeTimeoutError(f"dlavm-server at {self.address} did not take a frame within "
                                    f"{self.timeout:g} s") from None
        except OSError as e:
            self.close()
            raise ConnectionLostError(f"connection to dlavm-server at {self.address} lost: "
                                      f"{e.strerror or e}") from None

    def _recv(self) -> tuple[int, bytes]:
        if self._sock is None:
            raise ConnectionLostError(f"the connection to dlavm-server at {self.address} is closed")
        try:
            got = P.read_frame(self._sock, self._limit)
        except socket.timeout:
            self.close()
            raise ServeTimeoutError(f"dlavm-server at {self.address} sent nothing within {self.timeout:g} s "
                                    "(the connection is closed)") from None
        except P.FrameError as e:
            self._broken(str(e))
        except OSError as e:
            self.close()
            raise ConnectionLostError(f"connection to dlavm-server at {self.address} lost: "
                                      f"{e.strerror or e}") from None
        if got is None:
            self.close()
            raise ConnectionLostError(f"dlavm-server at {self.address} closed the connection")
        return got

    def _json(self, payload: bytes, ftype: FrameType) -> dict:
        try:
            obj = P.decode_json(payload, ftype.name)
            return P.check_shape(obj, ftype) if ftype in P.REPLY_SHAPES else obj
        except P.FrameError as e:
            self._broken(str(e))

    def _error(self, payload: bytes) -> ServeError:
        e = self._json(payload, FrameType.ERROR)
        return error_of(e["kind"], e["message"], e["id"])

    def _broken(self, why: str) -> "NoReturn":  # noqa: F821
        self.close()
        raise ProtocolError(f"dlavm-server at {self.address}: {why} (the connection is closed)", kind="protocol")

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"model {getattr(self, 'info', {}).get('model')!r}"
        return f"<dlavm.serve.Client {self.address} {state}>"


__all__ = ["Client", "Completion", "Token", "TokenStream", "ServeError", "ProtocolError", "FrameTooLargeError",
           "UnauthorizedError", "BadRequestError", "ContextError", "BusyError", "DeviceError", "InternalError",
           "ConnectionLostError", "ServeTimeoutError", "error_of"]
