"""The ``dlavm-server`` executable of an LLM artifact, built once and cached (doc/serve.md).

``make -C clib server ARTIFACT=DIR OUT=FILE`` links the artifact's generated
driver (``driver/<model>.cc`` and ``driver/<model>_llm.cc``) with clib's
runtime and serving libraries. :func:`server_binary` runs it only when the
cache has no executable for the same inputs: the cache key is the sha256 of
the driver sources (as the verified artifact holds them) and of clib's
libraries, headers, server main and Makefile, so a changed driver or a
rebuilt library gives a new executable, and another artifact of the same
model and facts reuses it. The cache is ``$DLAVM_CACHE_DIR/serve``, else
``build/serve`` of the checkout, else a folder under the temp dir.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from dlavm.artifact import ArtifactError
from dlavm.cache import cache_dir
from dlavm.artifact.directory import VerifiedArtifact, load_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIB = REPO_ROOT / "clib"
#: The libraries the server links, relative to clib's build folder.
LIBRARIES = ("libdlavm_rt.a", "libdlavm_serve.a")
EXE_NAME = "dlavm-server"
#: Seconds between "still compiling" progress steps while one compile runs.
HEARTBEAT_S = 5.0

ProgressFn = Callable[[str, int, "int | None", str], None]


class ServeBuildError(RuntimeError):
    """The server cannot be built for an artifact (not an LLM, no driver, no compiler, a failed
    compile); the message is one line naming the cause."""


def default_cache_dir() -> Path:
    """``$DLAVM_CACHE_DIR/serve``, else ``<repo>/build/serve`` (git-ignored), else a temp dir
    (:func:`dlavm.cache.cache_dir`)."""
    return cache_dir("serve")

def driver_sources(art: VerifiedArtifact) -> dict[str, bytes]:
    """``{relpath: bytes}`` of the artifact's C++ driver files; :class:`ServeBuildError` (one line) when
    the artifact is not an LLM or has no generation driver."""
    m = art.manifest
    where = f"artifact '{art.directory}' (model '{m.model}')"
    if m.llm is None:
        raise ServeBuildError(f"{where} is not an LLM: it has no generation entries, so there is nothing to serve "
                              "(compile it with `dlavm compile MODEL --llm`)")
    files = {rel: art.read(rel) for rel in sorted(m.files) if rel.startswith("driver/")}
    if not files:
        raise ServeBuildError(f"{where} has no C++ driver (it was saved with --no-driver): compile it again "
                              "without --no-driver")
    if not any(rel.endswith("_llm.cc") for rel in files):
        raise ServeBuildError(f"{where} has no driver/<model>_llm.cc, the driver part the server links: it was "
                              "compiled by an older dlavm; compile it again")
    return files


def _clib_inputs(build: str) -> list[Path]:
    """clib files the server executable depends on besides the driver (hashed into the cache key)."""
    paths = [CLIB / build / lib for lib in LIBRARIES]
    paths += sorted((CLIB / "include").rglob("*.h"))
    serve = CLIB / "src" / "serve"
    paths += sorted([*serve.glob("*_main.cc"), *serve.glob("*.h")]) if serve.is_dir() else []
    paths.append(CLIB / "Makefile")
    return paths


def cache_key(driver: dict[str, bytes], build: str = "build", make_args: tuple = ()) -> str:
    """sha256 (hex) of the driver sources, of clib's libraries, headers, server main and Makefile, and
    of the make arguments (flags)."""
    h = hashlib.sha256()
    h.update(json.dumps([build, *make_args]).encode())
    for rel, data in sorted(driver.items()):
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    for p in _clib_inputs(build):
        data = p.read_bytes() if p.is_file() else b""
        h.update(f"{p.relative_to(CLIB)}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _run_make(args: list[str], stage: str, progress: ProgressFn | None, what: str, steps: list) -> None:
    """``make -C clib ARGS``, its compile steps reported to ``progress`` (and a step every
    :data:`HEARTBEAT_S` seconds while one compile runs); :class:`ServeBuildError` with the compiler's
    first error line when it fails."""
    if shutil.which("make") is None:
        raise ServeBuildError(f"{what} needs `make` and a C++17 compiler (g++ or clang++), and `make` is not "
                              "installed here")
    cmd = ["make", "-C", str(CLIB), "--no-print-directory", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: list[str] = []
    state = {"detail": "make " + " ".join(args[:1]), "t": time.monotonic()}
    done = threading.Event()
    lock = threading.Lock()

    def report(detail: str, new_step: bool) -> None:
        with lock:
            if new_step:
                steps[0] += 1
                state["detail"] = detail
                state["t"] = time.monotonic()
                shown = detail
            else:
                shown = f"{state['detail']} (still compiling, {time.monotonic() - state['t']:.0f} s)"
            if progress is not None:
                progress(stage, steps[0], None, shown)

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            report("", False)

    report(f"make -C clib {' '.join(a for a in args if not a.startswith(('ARTIFACT=', 'OUT=')))}".strip(), True)
    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            compiled = re.findall(r"(\S+\.cc)\b", line)
            if compiled and re.match(r"\s*\S*(g\+\+|clang\+\+|c\+\+)\s", line):
                report("compiling " + ", ".join(Path(c).name for c in compiled[-2:]), True)
        code = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if code != 0:
        errors = [ln for ln in lines if re.search(r"\berror\b", ln)]
        why = (errors[0] if errors else lines[-1] if lines else f"exit status {code}").strip()
        raise ServeBuildError(f"{what} failed (make -C clib {' '.join(args)}, exit {code}): {why[:400]}")


def server_binary(artifact: str | os.PathLike | VerifiedArtifact, *, progress: ProgressFn | None = None,
                  cache_dir: str | os.PathLike | None = None, build: str = "build",
                  make_args: tuple = ()) -> Path:
    """The ``dlavm-server`` executable for ``artifact`` (a directory or a verified artifact): from the
    cache, else built with ``make -C clib server`` and cached. ``build`` is clib's build folder
    (``build-asan`` for the sanitizer flavour, with its flags in ``make_args``); ``progress`` gets
    ``(stage, done, None, detail)`` steps from the start. Raises :class:`ServeBuildError` (one line) or
    :class:`~dlavm.artifact.ArtifactError` for a corrupt artifact."""
    art = artifact if isinstance(artifact, VerifiedArtifact) else load_artifact(artifact)
    driver = driver_sources(art)
    what = f"building {EXE_NAME} for model '{art.manifest.model}'"
    stage = f"build {EXE_NAME}"
    extra = [f"BUILD={build}", *make_args]
    steps = [0]   # progress steps so far
    if progress is not None:
        progress(stage, 0, None, f"model '{art.manifest.model}': checking clib's libraries")
    with _clib_lock(build, stage, progress):
        _run_make([*(f"{build}/{lib}" for lib in LIBRARIES), *extra], stage, progress, what, steps)
        key = cache_key(driver, build, tuple(make_args))
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", art.manifest.model)[:64]
        exe = root / f"{safe}-{build.replace('/', '_')}-{key[:16]}" / EXE_NAME
        if exe.is_file() and os.access(exe, os.X_OK):
            if progress is not None:
                progress(stage, steps[0] + 1, None, f"cached: {exe}")
            return exe
        exe.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{EXE_NAME}-", dir=exe.parent)
        os.close(fd)
        try:
            _run_make(["server", f"ARTIFACT={os.path.abspath(art.directory)}", f"OUT={tmp}", *extra], stage,
                      progress, what, steps)
            os.chmod(tmp, 0o755)
            os.replace(tmp, exe)   # atomic: a concurrent build of the same key writes the same bytes
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if progress is not None:
        progress(stage, steps[0] + 1, None, f"built: {exe}")
    return exe


@contextlib.contextmanager
def _clib_lock(build: str, stage: str, progress: ProgressFn | None):
    """Exclusive use of clib's build folder ``build`` (the lock file clib's test builds take too), so two
    builds never write one library at once."""
    folder = CLIB / build
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".make.lock", "w")
    except OSError:   # a read-only checkout: make reports what it cannot write
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(stage, 0, None, f"waiting for another build in clib/{build}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


__all__ = ["server_binary", "driver_sources", "cache_key", "default_cache_dir", "ServeBuildError", "EXE_NAME",
           "ArtifactError"]
