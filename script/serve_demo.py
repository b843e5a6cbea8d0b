#!/usr/bin/env python
"""The serving demo (`make demo`, second step; doc/serve.md): the demo model behind the OpenAI API.

1. compile the demo model (``trained-tiny``, as script/main.py runs it: int8 weights, context 128) for
   generation with its C++ driver (``dlavm compile --llm``); the artifact is kept under
   ``build/serve-demo/`` (``$DLAVM_CACHE_DIR/serve-demo/``) and reused while the checkpoint, the options
   and the compiler's sources are the same;
2. start ``dlavm serve DIR --http-port P``: a simulator device server, ``dlavm-server`` (built for the
   artifact and cached) and the OpenAI-compatible gateway; their log lines go to stderr;
3. ask the model one question through the ``openai`` package with ``stream=True`` and print the answer as
   it streams, with the time to the first token and the tokens per second;
4. stop the server with SIGTERM and check that it exits cleanly (exit code 0).

Every failure is one ``error:`` line and a non-zero exit.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL, TARGET, WEIGHTS, MAX_SEQ = "trained-tiny", "vcu128", "int8", 128   # script/main.py's defaults
#: Seconds `dlavm serve` may take to listen: the first run builds dlavm-server for the artifact.
START_TIMEOUT_S = 600


class DemoError(Exception):
    """A step failed; the message says which and why."""


def cache_dir() -> Path:
    from dlavm.cache import cache_dir as dlavm_cache
    return dlavm_cache("serve-demo")

def step(text: str) -> None:
    print(f"== {text}", flush=True)


class Child:
    """A child process whose stderr is forwarded line by line (its progress and logs), except its
    ``error:`` line, which is kept for the one ``error:`` line of the demo."""

    def __init__(self, cmd: list, stdout=subprocess.DEVNULL):
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                                     text=True, errors="replace", bufsize=1)
        self.error = None
        self._thread = threading.Thread(target=self._forward, daemon=True)
        self._thread.start()

    def _forward(self) -> None:
        for line in self.proc.stderr:
            if line.startswith("error: "):
                self.error = line[len("error: "):].strip()
            else:
                sys.stderr.write(line)
                sys.stderr.flush()

    def why(self, what: str) -> str:
        self._thread.join(5)
        return f"{what} exited with {self.proc.returncode}" + (f": {self.error}" if self.error else "")


def run(cmd: list, what: str, capture_stdout: bool = True) -> str:
    """``cmd`` to completion (its stderr passes through: progress); its stdout; DemoError on failure."""
    child = Child(cmd, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL)
    out = child.proc.stdout.read() if capture_stdout else ""
    if child.proc.wait() != 0:
        raise DemoError(child.why(what))
    return out


def compiler_sources_hash() -> str:
    """sha256 over the package's Python sources: a changed compiler compiles the demo model again."""
    h = hashlib.sha256()
    for p in sorted((REPO / "dlavm").rglob("*.py")):
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def compile_demo_model(python: str, dlavm: list) -> Path:
    """Step 1: the artifact directory (compiled now, or reused)."""
    ckpt = run([python, str(REPO / "script" / "train_tiny.py")], "training the demo model").strip()
    key = json.dumps({"checkpoint": Path(ckpt).name, "target": TARGET, "weights": WEIGHTS, "max_seq": MAX_SEQ,
                      "sources": compiler_sources_hash()}, sort_keys=True)
    out = cache_dir() / MODEL
    stamp = cache_dir() / f"{MODEL}.key"
    if (out / "manifest.json").is_file() and stamp.is_file() and stamp.read_text() == key:
        from dlavm.artifact import ArtifactError, load_artifact
        try:
            load_artifact(out)   # verified whole: a damaged copy is compiled again
            print(f"   reusing {_shown(out)} (same checkpoint, options and compiler)", flush=True)
            return out
        except ArtifactError as e:
            print(f"   {_shown(out)} is damaged ({e}): compiling again", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run([*dlavm, "compile", MODEL, "--llm", "--max-seq", str(MAX_SEQ), "--weights", WEIGHTS, "-t", TARGET,
         "-o", str(out), "--force"], f"dlavm compile {MODEL}", capture_stdout=False)
    stamp.write_text(key)
    print(f"   compiled to {_shown(out)} in {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def _shown(p: Path) -> str:
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(dlavm: list, art: Path, http_port: int, port_file: Path) -> Child:
    """Step 2: ``dlavm serve`` as a child process, returned once everything listens (``--port-file``)."""
    port_file.unlink(missing_ok=True)
    child = Child([*dlavm, "serve", str(art), "--port", "0", "--port-file", str(port_file),
                   "--http-port", str(http_port)])
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (port_file.is_file() and port_file.read_text().strip()):
        if child.proc.poll() is not None:
            raise DemoError(child.why("dlavm serve") + " (before it listened)")
        if time.monotonic() > deadline:
            stop_server(child, check=False)
            raise DemoError(f"dlavm serve did not listen within {START_TIMEOUT_S} s")
        time.sleep(0.1)
    return child


def stop_server(child: Child, check: bool = True) -> None:
    """Step 4: SIGTERM, and (``check``) a clean exit."""
    proc = child.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            if check:
                raise DemoError("dlavm serve did not stop within 60 s of SIGTERM (killed)") from None
    if check and proc.returncode != 0:
        raise DemoError(child.why("dlavm serve") + " after SIGTERM, not 0")


def ask(http_port: int, question: str, max_tokens: int) -> None:
    """Step 3: one streamed question through the ``openai`` package."""
    try:
        import openai
    except ImportError:
        raise DemoError("the 'openai' package is not installed (pip install -e '.[dev]')") from None
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="demo", max_retries=0,
                           timeout=300)
    model = client.models.list().data[0].id
    print(f"   openai.OpenAI(base_url='http://127.0.0.1:{http_port}/v1').completions.create(model={model!r}, "
          f"stream=True, ...)", flush=True)
    print(f"   question: {question!r}", flush=True)
    print("   answer (streamed):", end=" ", flush=True)
    t0 = time.perf_counter()
    first = last = None
    usage = None
    finish = None
    stream = client.completions.create(model=model, prompt=question, max_tokens=max_tokens, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        text = chunk.choices[0].text
        if text:
            now = time.perf_counter()
            first = first if first is not None else now
            last = now
            print(text, end="", flush=True)
        finish = chunk.choices[0].finish_reason or finish
    print(flush=True)
    if usage is None or first is None:
        raise DemoError("the streamed answer was empty")
    n = usage.completion_tokens
    rate = f", {(n - 1) / (last - first):.1f} tokens/s after it" if n > 1 and last > first else ""
    print(f"   ({n} tokens, finish_reason {finish!r}; first token after {(first - t0) * 1e3:.0f} ms{rate}; "
          "wall time of the cycle-level simulator included)", flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def demo(argv=None) -> int:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens of the answer (default 32)")
    parser.add_argument("--question", default=None, help="the prompt (default: script/main.py's)")
    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error(f"argument --max-tokens: {args.max_tokens}: give N >= 1")
    sys.path.insert(0, str(REPO / "script"))
    from main import DEMO_PROMPT
    question = args.question or DEMO_PROMPT
    python = sys.executable
    exe = Path(python).parent / "dlavm"   # the console script of this environment
    dlavm = [str(exe)] if exe.is_file() else [python, "-m", "dlavm.cli.main"]

    step(f"serving demo 1/4: compile {MODEL} for generation ({WEIGHTS} weights, context {MAX_SEQ}, C++ driver)")
    art = compile_demo_model(python, dlavm)
    http_port = free_port()
    step(f"serving demo 2/4: dlavm serve {_shown(art)} --http-port {http_port} (device server + dlavm-server + "
         "OpenAI gateway)")
    work = cache_dir()
    proc = start_server(dlavm, art, http_port, work / f"serve-{os.getpid()}.port")
    try:
        step("serving demo 3/4: one question through the openai package, streamed")
        ask(http_port, question, args.max_tokens)
    except BaseException:
        stop_server(proc, check=False)
        raise
    finally:
        (work / f"serve-{os.getpid()}.port").unlink(missing_ok=True)
    step("serving demo 4/4: stop the server (SIGTERM)")
    stop_server(proc)
    print("RESULT: served through the OpenAI API and stopped cleanly (exit code 0)", flush=True)
    return 0


def main(argv=None) -> int:
    print("== serving demo: a compiled model behind the OpenAI API (doc/serve.md)", flush=True)
    try:
        return demo(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 -- one line, never a traceback
        name = type(e).__module__.split(".")[0]
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}" if name in ("openai", "dlavm") else f"error: {type(e).__name__}: {msg}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
