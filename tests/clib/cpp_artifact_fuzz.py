"""Mutation fuzzing of a compiled artifact through the C++ path: ``dlavm::Artifact::open`` and the generated
driver, built with AddressSanitizer + UndefinedBehaviorSanitizer (doc/runtime_cpp.md, "Sanitizers").

The mutation classes are the Python fuzzer's (tests/artifact/artifact_fuzz.py), applied by its own
functions to a copy of a real compiled artifact (a one-layer Llama block with its generated driver): bit
flips, truncation and extension of any file, manifest field edits by type (resealed or not), path
traversal, symbolic links and special files; and one class of its own, ``resized``: a stream's count,
a weight blob's size or a host constant's shape changed *together with* its file, the file's sha256 and
the seal, so the artifact is consistent and only the driver's own checks (it was generated for other
sizes) stand between it and a buffer of the wrong size. The Python fuzzer's ``toctou`` class is not run
here: a file changed between ``open`` and ``read_file`` is tests/clib/test_clib_artifact_untrusted.py's
case. The driver,
compiled once from the unmutated artifact, runs each mutated copy on the simulator server (reset before
each case). Cases of the classes that can change which files are opened (manifest edits, paths, links,
special files) run under ``strace``, which records every file the process opens; LeakSanitizer cannot run
under ptrace, so those run with leak checking off and the byte-damage classes (which change no path: a
damaged ``manifest.json`` is refused by ``manifest.sha256`` before any other file is opened) run without
``strace`` and with leak checking on. Outcomes:

* ``refused``: exit 1 with one line ``error: ...`` (an ``ArtifactError``, a driver check);
* ``same``: exit 0, every output file and the cycle count equal to the unmutated run's;
* ``different`` / ``device-refused`` (``error: the device refused: ...``): failures, except for
  ``field-sealed`` (a manifest edited *and* resealed is a different well-formed artifact);
* ``sanitizer`` (a sanitizer report: exit 86), ``crash`` (a signal), ``hang`` (past the time limit),
  ``outside-read`` (a file outside the artifact was opened), ``unclear`` (any other exit, or a message
  of several lines or not valid UTF-8): failures.

Used by tests/clib/test_cpp_artifact_fuzz.py (a few hundred cases) and bench/fuzz_cpp_artifacts.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.artifact import artifact_fuzz as py_fuzz
from tests.clib.clib_build import SANITIZER_EXIT_CODE, build_clib, compile_programs, sanitizer_env

#: The Python fuzzer's classes but ``toctou``, and ``resized`` (module docstring).
CLASSES = tuple(c for c in py_fuzz.CLASSES if c != "toctou") + ("resized",)
FAILURES = ("sanitizer", "crash", "hang", "outside-read", "unclear")
#: Classes run under strace (module docstring).
TRACED = ("field-unsealed", "field-sealed", "path", "symlink", "special-file", "resized")
#: Opens the dynamic loader and the sanitizer runtime make before main (and /proc, which ASan reads).
SYSTEM_PREFIXES = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/etc/ld.so.", "/proc/", "/sys/")
#: A successful open in ``strace -f -y`` output: "PID openat(DIRFD<dir>, "path", ...) = FD<resolved path>".
_OPEN = re.compile(r"^\d+\s+(?:openat2?|open|creat)\(.*\) = (\d+)<(.*)>$")


@dataclass
class Base:
    """The compiled artifact, its sanitized driver, the inputs of the run each case repeats and its outputs."""

    directory: Path
    driver: Path
    inputs: list
    dims: list
    outputs: list = field(default_factory=list)
    cycles: str = ""


@dataclass
class Case:
    cls: str
    detail: str
    outcome: str = ""
    message: str = ""
    seconds: float = 0.0


class SimServer:
    """``hw_models.server`` on 127.0.0.1 in a thread of this process."""

    def __init__(self):
        import threading

        from hw_models.server import SimServer as Server
        self.server = Server("tiny", "127.0.0.1", 0)
        self.port = self.server.port
        self.uri = f"sim://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        from dlavm.devlink.socket_client import SocketDevice
        with SocketDevice("127.0.0.1", self.port) as dev:
            dev.reset()

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=30)


def make_base(workdir: Path, server: SimServer) -> Base:
    """A one-layer Llama block (tiny target, host embedding constant, patches and guards) saved with its
    generated driver, the driver built with the sanitizers, and the unmutated run's outputs."""
    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    workdir = Path(workdir)
    art = dlavm_compile(llama_block(max_seq=64, layers=1, rng=np.random.default_rng(3)), target="tiny",
                        name="block").save(workdir / "block")
    d = art / "driver"
    exe = compile_programs({"block_main": [d / "block.cc", d / "block_main.cc"]}, workdir / "bin", "asan",
                           build_clib("asan"), includes=(d,))["block_main"]
    ids = np.random.default_rng(1).integers(0, 64, (3,)).astype(np.int64)
    ids.tofile(workdir / "ids.bin")
    base = Base(art, exe, [workdir / "ids.bin"], ["seq=3"])
    res = _run_driver(base, art, workdir / "base_out", server, time_limit=120)
    if res.returncode != 0:
        raise RuntimeError(f"the unmutated artifact does not run: {res.stderr.strip()}")
    base.outputs = _outputs(workdir / "base_out")
    base.cycles = res.stdout.strip()
    return base


def _outputs(prefix: Path) -> list:
    return [p.read_bytes() for p in sorted(prefix.parent.glob(prefix.name + "*.bin"))]


def _run_driver(base: Base, directory: Path, out: Path, server: SimServer, time_limit: float,
                trace: Path | None = None) -> subprocess.CompletedProcess:
    """The driver on ``directory``; raises subprocess.TimeoutExpired after killing its process group."""
    cmd = [str(base.driver), server.uri, str(directory), *base.dims, *map(str, base.inputs), str(out)]
    env = sanitizer_env()
    if trace is not None:
        cmd = [*strace_prefix(trace), *cmd]
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":detect_leaks=0"   # LeakSanitizer cannot run under ptrace
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def strace_prefix(trace: Path) -> list:
    """The command prefix recording every file a program (and its children) opens into ``trace``, each
    descriptor with the path it resolved to (what :func:`outside_opens` reads)."""
    return ["strace", "-f", "-qq", "-y", "--seccomp-bpf", "-e", "trace=open,openat,openat2,creat", "-e",
            "signal=none", "-o", str(trace)]


def outside_opens(trace: Path, directory: Path, allowed: tuple) -> list:
    """Files the traced process opened (successfully, the path the descriptor resolved to) outside
    ``directory``, the ``allowed`` paths and the system's libraries."""
    root = str(directory.resolve())
    out = []
    for line in trace.read_text(errors="replace").splitlines():
        m = _OPEN.match(line)
        if not m:
            continue
        path = m.group(2)
        if path == root or path.startswith(root + "/") or path.startswith(SYSTEM_PREFIXES):
            continue
        if any(path == a or path.startswith(a) for a in allowed):
            continue
        out.append(path)
    return out


def _resize(d: Path, rng: random.Random) -> str:
    """A stream, weight blob or host constant given another size, its file resized to match, listed with its
    new sha256 and the manifest resealed: consistent, and not what the driver was generated for."""
    m = json.loads((d / "manifest.json").read_text())
    kind = rng.choice([k for k in ("streams", "weights", "host_consts") if m[k]])
    if kind == "streams":
        name = rng.choice(sorted(m["streams"]))
        s = m["streams"][name]
        n = rng.choice(sorted({0, 1, s["count"] // 2, s["count"] - 1, s["count"] + 1, 2 * s["count"]} - {s["count"]}))
        s["insns"] = (s["insns"] + [{"tag": None, "layer": None, "weights": []}] * n)[:n]
        s["patches"] = [p for p in s["patches"] if p["index"] < n]
        s["guards"] = [g for g in s["guards"] if g["index"] < n]
        s["count"], rel, nbytes, detail = n, s["file"], 64 * n, f"streams.*.count = {n}"
    elif kind == "weights":
        i = rng.randrange(len(m["weights"]))
        w = m["weights"][i]
        n = rng.choice(sorted({0, 32, w["nbytes"] // 2, w["nbytes"] - 32, w["nbytes"] + 32} - {w["nbytes"]}))
        w["nbytes"], rel, nbytes, detail = max(n, 0), w["file"], max(n, 0), f"weights[].nbytes = {n}"
    else:
        i = rng.randrange(len(m["host_consts"]))
        c = m["host_consts"][i]
        rows = c["shape"][0] if c["shape"] else 1
        c["shape"] = [rng.choice(sorted({0, 1, rows - 1, rows + 1} - {rows}))] + c["shape"][1:]
        nbytes = int(np.dtype(c["dtype"]).itemsize * int(np.prod(c["shape"])))
        rel, detail = c["file"], f"host_consts[].shape = {c['shape']}"
    data = (d / rel).read_bytes()
    data = (data + bytes(max(0, nbytes - len(data))))[:nbytes]
    (d / rel).write_bytes(data)
    m["files"][rel] = hashlib.sha256(data).hexdigest()
    py_fuzz._reseal(d, json.dumps(m, indent=1))
    return detail


def _mutate(d: Path, cls: str, rng: random.Random) -> str:
    """Damage the artifact copy ``d`` with one mutation of ``cls`` (the Python fuzzer's functions)."""
    if cls in ("bitflip", "truncate", "extend"):
        return py_fuzz._damage_bytes(d, rng, cls)
    if cls in ("field-unsealed", "field-sealed"):
        return py_fuzz._edit_field(d, rng, seal=cls == "field-sealed")
    if cls == "path":
        return py_fuzz._edit_path(d, rng)
    if cls == "symlink":
        return py_fuzz._symlink(d, rng)
    if cls == "special-file":
        return py_fuzz._special(d, rng)
    if cls == "resized":
        return _resize(d, rng)
    raise ValueError(f"unknown mutation class {cls!r}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def run_case(base: Base, server: SimServer, cls: str, seed: int, workdir: Path, time_limit: float = 30.0) -> Case:
    """One mutation of ``cls`` (seeded by ``seed``) applied to a copy of ``base``, run and classified."""
    rng = random.Random(seed)
    workdir = Path(workdir)
    d = workdir / f"case{seed}"
    extras = (d.parent / (d.name + ".outside"), d.parent / (d.name + ".outside.bin"))
    for stale in (d, *extras):
        _remove(stale)
    shutil.copytree(base.directory, d, symlinks=True)
    case = Case(cls, _mutate(d, cls, rng))
    out = workdir / f"out{seed}_"
    trace = workdir / f"trace{seed}.txt" if cls in TRACED else None
    server.reset()
    t0 = time.monotonic()
    try:
        res = _run_driver(base, d, out, server, time_limit, trace)
    except subprocess.TimeoutExpired:
        case.outcome, case.message = "hang", f"no exit after {time_limit} s"
    else:
        err = res.stderr.strip()
        if res.returncode == SANITIZER_EXIT_CODE:
            case.outcome, case.message = "sanitizer", _sanitizer_summary(res.stderr)
        elif res.returncode < 0:
            case.outcome, case.message = "crash", f"signal {-res.returncode}: {err[-300:]}"
        elif res.returncode == 0:
            same = _outputs(out) == base.outputs and res.stdout.strip() == base.cycles
            case.outcome = "same" if same else "different"
        elif res.returncode == 1 and err.startswith("error: ") and "\n" not in err and "\ufffd" not in err:
            case.outcome = "device-refused" if err.startswith("error: the device refused: ") else "refused"
            case.message = err[len("error: "):]
        else:
            case.outcome, case.message = "unclear", f"exit {res.returncode}: {err[:300]}"
        outside = outside_opens(trace, d, (str(out), *map(str, base.inputs))) if trace else []
        if outside:
            case.outcome, case.message = "outside-read", f"opened {outside[:3]}"
    case.seconds = time.monotonic() - t0
    for p in (d, *extras, *([trace] if trace else []), *out.parent.glob(out.name + "*")):
        _remove(p)
    return case


def _sanitizer_summary(stderr: str) -> str:
    for line in stderr.splitlines():
        if "SUMMARY:" in line or "runtime error:" in line:
            return line.strip()[:300]
    return stderr.strip()[-300:]


def is_failure(case: Case) -> bool:
    """The case breaks the contract (module docstring)."""
    return case.outcome in FAILURES or (case.outcome in ("different", "device-refused")
                                        and case.cls != "field-sealed")


def schedule(n: int, seed: int) -> list:
    """``n`` (class, seed) pairs, the classes round-robin weighted as in the Python fuzzer."""
    rounds = [c for c in CLASSES for _ in range(py_fuzz.WEIGHTS.get(c, 1))]
    return [(rounds[i % len(rounds)], seed * 1_000_003 + i) for i in range(n)]


message_rule = py_fuzz.message_rule

__all__ = ["CLASSES", "FAILURES", "TRACED", "Base", "Case", "SimServer", "make_base", "run_case", "is_failure", "schedule",
           "outside_opens", "strace_prefix", "message_rule"]
