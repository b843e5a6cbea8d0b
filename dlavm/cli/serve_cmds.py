"""``dlavm serve`` (the model server of an LLM artifact, with its device and optional OpenAI endpoint),
``dlavm chat --connect`` and the ``--connect`` half of ``dlavm generate`` (doc/serve.md, doc/cli.md).

``serve`` supervises up to three processes: the simulator device server (``python -m hw_models.server``,
unless ``--device`` names one), ``dlavm-server`` (built for the artifact by :mod:`dlavm.serve.build`) and
the gateway (``python -m dlavm.serve.gateway``, with ``--http-port``). It forwards their log lines to
stderr (the device server's prefixed ``device:``), stops all of them on Ctrl-C or
SIGTERM (exit 0), and when one of them dies stops the others and exits 1 with one ``error:`` line.

The shared secret (``--token``, or ``$DLAVM_SERVE_TOKEN``) reaches the children through their environment,
never their command line, which every user of the host can read (``ps``, ``/proc/PID/cmdline``).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

from dlavm.serve.protocol import DEFAULT_PORT, TOKEN_ENV, is_loopback, parse_address

#: Seconds each child gets to start listening (the device server imports the simulator; dlavm-server
#: uploads the weights).
START_TIMEOUT_S = 120.0
#: Seconds each child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: The idle timeout of the device server `serve` starts (a year).
DEVICE_IDLE_TIMEOUT_S = 365 * 24 * 3600

_REPO = Path(__file__).resolve().parents[2]


def parse_connect(value: str, option: str = "--connect") -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address); a usage error otherwise."""
    try:
        return parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _connect(address: str, token: str | None, timeout: float):
    from dlavm.serve import Client
    host, port = parse_connect(address)
    return Client(host, port, token=token, timeout=timeout)


# ---------------------------------------------------------------- dlavm serve: child processes

class _Child:
    """One supervised process: its output forwarded to stderr line by line, prefixed."""

    def __init__(self, name: str, cmd: list[str], prefix: str, log_lock: threading.Lock, env=None):
        self.name, self.cmd, self.prefix = name, cmd, prefix
        self.last_lines: list[str] = []
        self._lock = log_lock
        # A process group of its own: the terminal's Ctrl-C reaches the supervisor only, which stops the
        # children in order; the children die with the supervisor (PDEATHSIG) if it is killed.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                     preexec_fn=_child_setup, env=env, cwd=_REPO)
        self._thread = threading.Thread(target=self._forward, daemon=True)
        self._thread.start()

    def _forward(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.last_lines = (self.last_lines + [line])[-5:]
            if f"{self.prefix}{line}".startswith("error:"):
                continue   # a child's last words: `serve`'s own one error line names them (why())
            with self._lock:
                sys.stderr.write(f"{self.prefix}{line}\n")
                sys.stderr.flush()

    def exited(self) -> int | None:
        return self.proc.poll()

    def why(self) -> str:
        """The child's exit as one line: its code and its last error line, if it printed one."""
        self._thread.join(timeout=2)   # its last lines
        code = self.proc.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        last = next((ln.strip() for ln in reversed(self.last_lines) if "error" in ln.lower()), "")
        last = last.removeprefix("error: ")
        return f"the {self.name} {how}" + (f": {last}" if last else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.proc.stdout.close()


def _child_setup() -> None:   # runs in the child between fork and exec
    os.setpgid(0, 0)
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def _wait_for_port(child: _Child, port_file: Path, stop: threading.Event) -> int | None:
    """The port ``child`` writes to ``port_file`` once listening; None when stopped first. Raises
    ClickException (one line) when the child exits or does not start in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.is_file():
            text = port_file.read_text().strip()
            if text.isdigit():
                return int(text)
        if child.exited() is not None:
            raise click.ClickException(child.why())
        if stop.wait(0.05):
            return None
    raise click.ClickException(f"the {child.name} did not start listening within {START_TIMEOUT_S:g} s")


def _device_target_arg(manifest, workdir: Path) -> str:
    """``--target`` for the simulator device server: the built-in name when the artifact's target is that
    built-in, else its description written to a file."""
    from dlavm.target import builtin_names, get_target
    name = manifest.target.name
    if name in builtin_names() and get_target(name).fingerprint() == manifest.target.fingerprint:
        return name
    path = workdir / f"target-{name}.json"
    path.write_text(json.dumps(manifest.target.description))
    return str(path)


def _child_env(**secrets: str | None) -> dict:
    """The environment of a child: this process's without $DLAVM_SERVE_TOKEN and the variables named in
    ``secrets``, then each of ``secrets`` that has a value (a child is given only the secrets it needs)."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV and k not in secrets}
    env.update({k: v for k, v in secrets.items() if v})
    return env


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@click.command("serve")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; an address other than loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port of the serving protocol (0: the OS picks one; see --port-file).")
@click.option("--port-file", type=click.Path(dir_okay=False), default=None,
              help="Write the serving port here once everything listens.")
@click.option("--device", default=None, metavar="sim://HOST:PORT",
              help="The device server to use (default: start a simulator device server for the artifact's "
                   "target and stop it on exit).")
@click.option("--token", default=None, metavar="SECRET", envvar=TOKEN_ENV, show_envvar=True,
              help="Shared secret every client presents (required with a --host that is not loopback). Prefer "
                   "the environment variable: other users of the host can read a command line. dlavm-server "
                   "gets it in its environment.")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the OpenAI-compatible HTTP endpoint on this port (0: any free one; needs the "
                   "'serve' extra). With --token, HTTP clients present the token as their API key.")
@click.option("--max-queue", type=click.IntRange(1), default=None, help="Requests waiting at most (default 64).")
@click.option("--max-clients", type=click.IntRange(1), default=None,
              help="Connections at once (default 64).")
def serve_cmd(artifact, host, port, port_file, device, token, http_port, max_queue, max_clients):
    """Serve the LLM artifact ARTIFACT: build (once, cached) and run dlavm-server on it.

    Without --device it also starts a simulator device server for the artifact's target. Logs one line
    per request on stderr; Ctrl-C or SIGTERM stops everything (exit 0)."""
    if not is_loopback(host) and not token:
        raise click.UsageError(f"--host {host} is not a loopback address: anyone who can reach it could use the "
                               f"model, so give a token in ${TOKEN_ENV} or --token SECRET (every client must "
                               "present it)")
    if device is not None:
        from .device_option import parse_device_uri
        parse_device_uri(device)
    from dlavm.artifact import load_artifact
    from dlavm.serve.build import driver_sources, server_binary

    from .progress import Progress
    art = load_artifact(artifact)
    driver_sources(art)   # not an LLM / no driver: refused before anything is built
    with Progress() as progress:
        exe = server_binary(art, progress=progress)

    stop = threading.Event()
    got_signal: list[str] = []

    def on_signal(signum, _frame):
        got_signal.append(signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    log_lock = threading.Lock()
    children: list[_Child] = []

    def note(text: str) -> None:
        with log_lock:
            click.echo(f"dlavm serve: {text}", err=True)

    failure = None
    try:
        with tempfile.TemporaryDirectory(prefix="dlavm-serve-") as work:
            work = Path(work)
            if device is None:
                target = _device_target_arg(art.manifest, work)
                # Its one client is dlavm-server, whose device connection may rest for hours between
                # requests: no idle timeout to cut it (a reconnect uploads the weights again).
                dev = _Child("device server", [sys.executable, "-u", "-m", "hw_models.server", "--target", target,
                                               "--port", "0", "--port-file", str(work / "device.port"),
                                               "--idle-timeout", str(DEVICE_IDLE_TIMEOUT_S)],
                             "device: ", log_lock, env=_child_env())
                children.append(dev)
                dport = _wait_for_port(dev, work / "device.port", stop)
                if dport is None:
                    return
                device = f"sim://127.0.0.1:{dport}"
            cmd = [str(exe), "--artifact", os.path.abspath(artifact), "--device", device, "--host", host,
                   "--port", str(port), "--port-file", str(work / "server.port")]
            if max_queue is not None:
                cmd += ["--max-queue", str(max_queue)]
            if max_clients is not None:
                cmd += ["--max-clients", str(max_clients)]
            # the token in the environment (dlavm-server reads $DLAVM_SERVE_TOKEN), not on its command line
            srv = _Child("model server (dlavm-server)", cmd, "", log_lock, env=_child_env(**{TOKEN_ENV: token}))
            children.append(srv)
            sport = _wait_for_port(srv, work / "server.port", stop)
            if sport is None:
                return
            shown = f"[{host}]" if ":" in host else host
            what = f"serving model '{art.manifest.model}' on {shown}:{sport} (device {device})"
            if http_port is not None:
                gw = _start_gateway(host, sport, http_port, token, log_lock, work)
                children.append(gw)
                hport = _wait_for_port(gw, work / "http.port", stop)
                if hport is None:
                    return
                what += f", OpenAI endpoint http://{shown}:{hport}/v1"
            note(what)
            if port_file:
                _write_atomic(Path(port_file), f"{sport}\n")
            while not stop.wait(0.1):
                dead = next((c for c in children if c.exited() is not None), None)
                if dead is not None:
                    failure = dead.why()
                    break
    finally:
        for c in reversed(children):
            c.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if failure is not None:
        click.echo(f"error: {failure}", err=True)
        sys.exit(1)
    note(f"stopped ({got_signal[0] if got_signal else 'done'})")


def _start_gateway(host: str, port: int, http_port: int, token: str | None, log_lock, work: Path) -> _Child:
    """``python -m dlavm.serve.gateway`` in front of the model server (doc/serve.md); it writes its port to
    ``work/http.port`` once listening. The secrets go through the environment (``ps`` shows a command
    line): the model server's token, which is also the API key HTTP clients must present."""
    import importlib.util
    if importlib.util.find_spec("dlavm.serve.gateway") is None:
        raise click.ClickException("--http-port: this installation has no dlavm.serve.gateway")
    for mod in ("starlette", "uvicorn"):
        if importlib.util.find_spec(mod) is None:
            raise click.ClickException(f"--http-port needs the Python package '{mod}' (pip install "
                                       "'dlavm[serve]')")
    connect = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
    cmd = [sys.executable, "-u", "-m", "dlavm.serve.gateway", "--connect", f"{connect}:{port}", "--host", host,
           "--port", str(http_port), "--port-file", str(work / "http.port")]
    from dlavm.serve.gateway import API_KEY_ENV
    # the HTTP side asks the same secret (Bearer)
    return _Child("OpenAI gateway", cmd, "", log_lock, env=_child_env(**{TOKEN_ENV: token, API_KEY_ENV: token}))


# ---------------------------------------------------------------- dlavm generate --connect

def _stats_line(c) -> str:
    sim = f"sim {c.sim_ms:.3f} ms, " if c.sim_ms is not None else ""
    seed = f"; seed {c.seed}" if c.seed is not None else ""
    return (f"[stop: {c.stop_reason}; {c.prompt_tokens} prompt tokens, {c.new_tokens} new tokens{seed}; "
            f"{sim}host {c.host_ms:.1f} ms, queue {c.queue_ms:.1f} ms]")


def generate_remote(address: str, token: str | None, prompt: str | None, prompt_ids: str | None,
                    chat: bool, bos: bool | None, max_new_tokens: int, temperature: float, top_k: int | None,
                    top_p: float | None, seed: int | None, eos_id: int | None, timeout: float = 60.0) -> None:
    """``dlavm generate --connect HOST:PORT``: one request to a model server, its tokens streamed to
    stdout and its figures to stderr."""
    ids = None
    if prompt_ids is not None:
        from .generate_cmds import parse_prompt_ids
        ids = parse_prompt_ids(prompt_ids)
        if not ids:
            raise click.BadParameter("no token ids given", param_hint="--prompt-ids")
        if chat or bos is not None:
            raise click.UsageError(f"{'--chat' if chat else '--bos/--no-bos'} applies to --prompt TEXT, not to "
                                   "--prompt-ids")
    with _connect(address, token, timeout) as client:
        info = client.info
        text = prompt
        if prompt is not None:
            if not info["tokenizer"]:
                raise click.UsageError(f"--prompt TEXT: the served model '{info['model']}' has no tokenizer; give "
                                       "--prompt-ids")
            if chat:
                text = _render(info, [{"role": "user", "content": prompt}])
                bos = False if bos is None else bos
        s = client.generate(text, prompt_ids=ids, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_k=top_k, top_p=top_p, seed=seed, add_bos=bos,
                            eos_ids=None if eos_id is None else [eos_id], stream=True)
        with s:
            if prompt is not None:
                click.echo(prompt, nl=False)
            for tok in s:
                click.echo(tok.text if info["tokenizer"] else f"{tok.id} ", nl=False)
        click.echo(s.tail if info["tokenizer"] else "")
        if s.completion is not None:
            click.echo(_stats_line(s.completion), err=True)


def _render(info: dict, messages: list) -> str:
    """``messages`` in the served model's chat template (WELCOME's), with the generation prompt."""
    if info.get("chat_template") is None:
        raise click.UsageError(f"the served model '{info['model']}' has no chat template (a hf:DIR checkpoint's "
                               "tokenizer_config.json or chat_template.jinja brings one)")
    from dlavm.tokenizer.bundled import render_chat
    return render_chat(info["chat_template"], messages, bos_token=info.get("bos_token") or "",
                       eos_token=info.get("eos_token") or "")


# ---------------------------------------------------------------- dlavm chat --connect

@click.command("chat")
@click.option("--connect", "address", required=True, metavar="HOST:PORT",
              help="The model server (dlavm serve, doc/serve.md).")
@click.option("--token", default=None, metavar="SECRET", envvar=TOKEN_ENV, show_envvar=True,
              help="The server's shared secret, if it has one (prefer the environment variable: other users of "
                   "the host can read a command line).")
@click.option("--system", default=None, help="A system message that starts the conversation.")
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=int, default=None, help="Sample among the k most likely (0 = all).")
@click.option("--top-p", type=float, default=None, help="Nucleus sampling mass (default 1).")
@click.option("--seed", type=int, default=None, help="Sampling seed of the first reply (then seed+1, ...).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for each frame from the server.")
def chat_cmd(address, token, system, max_new_tokens, temperature, top_k, top_p, seed, timeout):
    """Chat with a served model: each line you type is a user message; the reply streams back.

    The conversation so far is put into the model's chat template for every reply. /reset starts a new
    conversation; /exit (or end of input) quits."""
    interactive = sys.stdin.isatty()
    with _connect(address, token, timeout) as client:
        info = client.info
        _render(info, [{"role": "user", "content": ""}])   # no template: refused before the first line
        base = [{"role": "system", "content": system}] if system else []
        messages = list(base)
        if interactive:
            click.echo(f"chat with '{info['model']}' (context {info['max_ctx']} tokens); /reset, /exit", err=True)
        turn = 0
        while True:
            if interactive:
                click.echo("> ", nl=False, err=True)
            line = sys.stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if line.strip() in ("/exit", "/quit"):
                break
            if line.strip() == "/reset":
                messages = list(base)
                click.echo("[conversation reset]", err=True)
                continue
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line})
            reply = _chat_turn(client, info, messages, base, max_new_tokens, temperature, top_k, top_p,
                               None if seed is None else seed + turn)
            turn += 1
            if reply is None:
                messages.pop()
                continue
            messages.append({"role": "assistant", "content": reply})


def _chat_turn(client, info, messages, base, max_new_tokens, temperature, top_k, top_p, seed) -> str | None:
    """One reply streamed to stdout; the oldest exchanges are dropped while the conversation is past the
    context. None when the message cannot be answered (the reason on stderr)."""
    from dlavm.serve import ContextError, ServeError
    while True:
        prompt = _render(info, messages)
        try:
            s = client.generate(prompt, add_bos=False, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, seed=seed, stream=True)
            with s:
                for tok in s:
                    click.echo(tok.text, nl=False)
        except ContextError as e:
            rest = messages[len(base):]
            if len(rest) <= 1:
                click.echo(f"[{e}]", err=True)
                return None
            del messages[len(base):len(base) + 2]   # the oldest user message and its reply
            click.echo("[the conversation is past the context: the oldest exchange is dropped]", err=True)
            continue
        except ServeError as e:
            if client.closed:
                raise
            click.echo(f"\n[{e.kind}: {e}]", err=True)   # busy, device down, ...: the next line may work
            return None
        c = s.completion
        click.echo(s.tail)
        if c is not None and c.stop_reason in ("context", "max_new_tokens"):
            click.echo(f"[reply cut: {c.stop_reason}]", err=True)
        return c.text if c else ""


COMMANDS = [serve_cmd, chat_cmd]
