"""Mutation fuzzing of compiled artifacts through the Python loader and runtime (doc/backend.md, "Verification").

A case copies a real compiled artifact, damages it with one mutation and then
loads it (:func:`dlavm.runtime.loader.load_verified`) and runs one entry on
the in-process simulator with a small input, under a per-case time limit
and an audit hook that records every file the process opens. Its outcome is
one of

* ``refused``: an :class:`~dlavm.artifact.ArtifactError` (one line, naming
  the artifact) or a :class:`~dlavm.runtime.runtime.RunError` (one line);
* ``same``: it ran and every output equals the unmutated artifact's, bit for bit;
* ``different``: it ran and an output differs, or ``device-refused``: the
  device (the simulator) stopped the run with its own error
  (:class:`~dlavm.devlink.HALError`, e.g. a read of never-written memory).
  Failures, except for ``field-sealed``: a manifest edited *and* resealed is
  a different well-formed artifact (a patch left out, another output named)
  that no check can tell from one the compiler wrote; reported per field;
* ``error`` (another exception escaped), ``hang`` (past the time limit),
  ``outside-read`` (a file outside the artifact was opened), ``unclear`` (a
  refusal on several lines): failures.

Used by tests/artifact/test_mutation_fuzz.py (a few hundred cases) and
bench/fuzz_artifacts.py (thousands).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlavm.artifact import MANIFEST_SUM, ArtifactError, manifest_sum_text
from dlavm.devlink import HALError
from dlavm.runtime.loader import load_verified
from dlavm.runtime.runtime import Runtime, RunError

#: Mutation classes, in the order the tables list them.
CLASSES = ("bitflip", "truncate", "extend", "field-unsealed", "field-sealed", "path", "symlink", "special-file",
           "toctou")
#: Outcomes that fail a run (``different`` too, outside ``field-sealed``).
FAILURES = ("error", "hang", "outside-read", "unclear")
NAN_MARK, INF_MARK, DEEP_MARK = "@nan@", "@inf@", "@deep@"


class CaseTimeout(BaseException):
    """The per-case time limit passed (a BaseException, so no ``except Exception`` in the code under test
    swallows it)."""


@dataclass
class Base:
    """A compiled artifact to mutate, the run each case repeats and that run's outputs."""

    name: str
    directory: Path
    entry: str
    inputs: list
    dims: dict
    outputs: list = field(default_factory=list)


@dataclass
class Case:
    base: str
    cls: str
    detail: str
    outcome: str = ""
    message: str = ""


# ------------------------------------------------------------------ bases

def make_bases(workdir: Path) -> list:
    """Two real artifacts, compiled and saved once: a one-layer Llama block and a tiny generating LLM."""
    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    from dlavm.llm import compile_llm
    workdir = Path(workdir)
    block = dlavm_compile(llama_block(max_seq=64, layers=1, rng=np.random.default_rng(3)), target="tiny",
                          name="block").save(workdir / "block", driver=False)
    llm = compile_llm("tiny-llama", target="tiny", max_seq=32).save(workdir / "llm", driver=False)
    ids = np.random.default_rng(1).integers(0, 64, (3,)).astype(np.int64)
    bases = [Base("block", Path(block), "forward", [ids], {})]
    art = load_verified(llm)
    entry = art.manifest.llm.entries["logits"]
    spec = art.manifest.entries[entry]
    shape = [3 if not d.isdigit() else int(d) for d in spec.inputs[0].shape]
    x = np.random.default_rng(2).integers(0, 64, shape).astype(spec.inputs[0].dtype)
    bases.append(Base("llm", Path(llm), entry, [x], {d: 3 for d in spec.state_dims}))
    for b in bases:
        b.outputs = run_artifact(b, b.directory)
    return bases


def run_artifact(base: Base, directory: Path, between=None) -> list:
    """Load ``directory`` (verified), call ``between()`` if given, then run ``base``'s entry; the outputs."""
    from dlavm.sim_device import open_simulator
    art = load_verified(directory)
    if between is not None:
        between()
    rt = Runtime(art.manifest, art.read, open_simulator(art.manifest))
    return [np.asarray(y) for y in rt.run(base.entry, *base.inputs, dims=base.dims)]


# ------------------------------------------------------------------ the audit hook

class _Watch:
    """Files opened while a case runs; anything not inside its artifact directory is an outside read."""

    def __init__(self):
        self.root: str | None = None
        self.outside: list = []

    def __call__(self, event, args):
        if event != "open" or self.root is None:
            return
        path = args[0]
        if isinstance(path, int):
            return
        path = os.fsdecode(path)
        if os.path.isabs(path):
            inside = os.path.normpath(path) == self.root or os.path.normpath(path).startswith(self.root + os.sep)
        else:   # the loader opens one component at a time relative to the artifact's directory descriptor
            inside = path not in ("", ".", "..") and "/" not in path
        if not inside:
            self.outside.append(path)


_WATCH = _Watch()
_HOOKED = False


def _install_hook():
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_WATCH)
        _HOOKED = True


# ------------------------------------------------------------------ mutations

def _files(d: Path) -> list:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def _reseal(d: Path, text: str):
    (d / "manifest.json").write_text(text)
    (d / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))


def _dump(m) -> str:
    text = json.dumps(m, indent=1)
    return (text.replace(json.dumps(NAN_MARK), "NaN").replace(json.dumps(INF_MARK), "-Infinity")
            .replace(json.dumps(DEEP_MARK), "[" * 3000 + "1" + "]" * 3000))


def _paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, path + (i,))


def field_pattern(path) -> str:
    """A field path with list indexes as ``[]`` and map keys as ``*`` where the schema has maps."""
    maps = {"dims", "memory", "buffers", "entries", "streams", "values", "files", "attrs", "description"}
    out, prev = [], None
    for k in path:
        out.append("[]" if isinstance(k, int) else ("*" if prev in maps else str(k)))
        prev = k if isinstance(k, str) else None
    return ".".join(out)


def _patterns(m) -> dict:
    by: dict = {}
    for p in _paths(m):
        if p:
            by.setdefault(field_pattern(p), []).append(p)
    return by


def _values_for(v, rng: random.Random) -> list:
    common = [None, [], {}, DEEP_MARK, NAN_MARK, INF_MARK, True, "x"]
    if isinstance(v, bool):
        return common + [not v, 0, 1, "true"]
    if isinstance(v, int):
        return common + [-1, 0, 1, v + 1, v - 1, v * 2, v + 32, v - 32, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1,
                         10**30, 1.5, str(v), float(v)]
    if isinstance(v, float):
        return common + [0.0, -v, v * 2, 1e308, int(v)]
    if isinstance(v, str):
        return common + ["", "../../etc/passwd", "/etc/passwd", "/dev/zero", "a\x00b", "\u00e9" * 5000, v + "x",
                         v[:-1], 1, "9**9**9", "seq // 0", "seq*9223372036854775807", "(" * 200 + "seq" + ")" * 200,
                         "min(seq)", "__import__('os').system('true')", "seq + 1", "0", "(seq if 1 else 0)"]
    if isinstance(v, list):
        out = common + [v + v[:1], v[1:], v[:-1], [v], list(reversed(v)), 0]
        return out
    if isinstance(v, dict):
        return common + [dict(list(v.items())[1:]), {**v, "unknown": 1}, [v], 0]
    return common


def _edit_field(d: Path, rng: random.Random, seal: bool) -> str:
    m = json.loads((d / "manifest.json").read_text())
    by = _patterns(m)
    pattern = rng.choice(sorted(by))
    path = rng.choice(by[pattern])
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    old = parent[path[-1]]
    if rng.random() < 0.08:
        del parent[path[-1]]
        what = "deleted"
    else:
        new = rng.choice(_values_for(old, rng))
        parent[path[-1]] = new
        what = "=" + (new if new in (NAN_MARK, INF_MARK, DEEP_MARK) else json.dumps(new)[:24])
    text = _dump(m)
    if seal:
        _reseal(d, text)
    else:
        (d / "manifest.json").write_text(text)
    return f"{pattern} {what}"


_PATH_FIELDS = ("weights.[].file", "host_consts.[].file", "streams.*.file", "streams.*.asm")
_BAD_PATHS = ("../outside.bin", "/etc/passwd", "/dev/zero", "weights/../../outside.bin", "weights/./x.bin",
              "weights//x.bin", "weights\\x.bin", "manifest.json", "manifest.sha256", "", ".", "weights/",
              "/proc/self/mem", "a\nb")


def _edit_path(d: Path, rng: random.Random) -> str:
    m = json.loads((d / "manifest.json").read_text())
    by = _patterns(m)
    pattern = rng.choice([p for p in _PATH_FIELDS if p in by] + ["files key"])
    bad = rng.choice(_BAD_PATHS)
    if pattern == "files key":
        rel = rng.choice(sorted(m["files"]))
        m["files"][bad] = m["files"].pop(rel)
    else:
        path = rng.choice(by[pattern])
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = bad
        if rng.random() < 0.5:   # listed too, so only the path rule stands in the way
            m["files"][bad] = hashlib.sha256(b"").hexdigest()
    _reseal(d, _dump(m))
    return f"{pattern} = {json.dumps(bad)}"


def _listed(d: Path) -> list:
    return sorted(json.loads((d / "manifest.json").read_text())["files"])


def _symlink(d: Path, rng: random.Random) -> str:
    rels = _listed(d)
    rel = rng.choice(rels)
    kind = rng.choice(["copy outside", "/etc/hostname", "/dev/zero", "folder", "relative inside"])
    target = d / rel
    if kind == "folder":
        folder = target.parent
        if folder == d:
            kind = "copy outside"
        else:
            moved = d.parent / (d.name + ".outside")
            shutil.move(str(folder), str(moved))
            folder.symlink_to(moved)
            return f"folder {folder.relative_to(d)} -> outside copy"
    if kind == "copy outside":
        outside = d.parent / (d.name + ".outside.bin")
        outside.write_bytes(target.read_bytes())
        target.unlink()
        target.symlink_to(outside)
    elif kind == "relative inside":
        other = rng.choice(rels)
        target.unlink()
        target.symlink_to(os.path.relpath(d / other, target.parent))
    else:
        target.unlink()
        target.symlink_to(kind)
    return f"{field_pattern(tuple(rel.split('/')[:1]))}/... -> {kind}"


def _special(d: Path, rng: random.Random) -> str:
    rels = _listed(d) + ["manifest.json", MANIFEST_SUM]
    rel = rng.choice(rels)
    kind = rng.choice(["fifo", "directory", "empty directory tree"])
    target = d / rel
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
        if kind == "empty directory tree":
            (target / "x").mkdir()
    return f"{rel.split('/')[0]} -> {kind}"


def _damage_bytes(d: Path, rng: random.Random, cls: str) -> str:
    rel = rng.choice(_files(d))
    p = d / rel
    data = bytearray(p.read_bytes())
    if cls == "bitflip" and data:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
    elif cls == "truncate":
        data = data[:rng.randrange(len(data))] if data else data
    else:
        data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 64, 1000])))
    p.write_bytes(bytes(data))
    return f"{rel.split('/')[0]}{'/...' if '/' in rel else ''}"


def _toctou_change(d: Path, rng: random.Random):
    rels = [r for r in _listed(d) if r.startswith(("weights/", "streams/")) and r.endswith(".bin")]
    rel = rng.choice(rels)

    def change():
        p = d / rel
        data = bytearray(p.read_bytes())
        if data:
            data[rng.randrange(len(data))] ^= 0xFF
        p.write_bytes(bytes(data))
    return rel.split("/")[0] + "/...", change


# ------------------------------------------------------------------ one case

def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


def run_case(base: Base, cls: str, seed: int, workdir: Path, time_limit: float = 20.0) -> Case:
    """One mutation of ``cls`` (seeded by ``seed``) applied to a copy of ``base``, loaded, run and classified."""
    _install_hook()
    rng = random.Random(seed)
    d = Path(workdir) / f"case{seed}"
    for stale in (d, d.parent / (d.name + ".outside"), d.parent / (d.name + ".outside.bin")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        elif stale.exists() or stale.is_symlink():
            stale.unlink()
    shutil.copytree(base.directory, d)
    between = None
    if cls in ("bitflip", "truncate", "extend"):
        detail = _damage_bytes(d, rng, cls)
    elif cls == "field-unsealed":
        detail = _edit_field(d, rng, seal=False)
    elif cls == "field-sealed":
        detail = _edit_field(d, rng, seal=True)
    elif cls == "path":
        detail = _edit_path(d, rng)
    elif cls == "symlink":
        detail = _symlink(d, rng)
    elif cls == "special-file":
        detail = _special(d, rng)
    elif cls == "toctou":
        detail, between = _toctou_change(d, rng)
    else:
        raise ValueError(f"unknown mutation class {cls!r}")
    case = Case(base.name, cls, detail)
    _WATCH.outside = []

    def alarm(signum, frame):
        raise CaseTimeout()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    _WATCH.root = os.path.normpath(str(d))
    try:
        outputs = run_artifact(base, d, between)
        case.outcome = "same" if _same(outputs, base.outputs) else "different"
    except CaseTimeout:
        case.outcome = "hang"
    except HALError as e:
        case.outcome, case.message = "device-refused", str(e)
    except (ArtifactError, RunError) as e:
        msg = str(e)
        case.message = msg
        case.outcome = "unclear" if "\n" in msg or (isinstance(e, ArtifactError) and not msg.startswith(
            f"artifact {d}")) else "refused"
    except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
        frame, line = list(traceback.walk_tb(e.__traceback__))[-1]   # no source lookup: that would open files
        case.outcome = "error"
        case.message = f"{type(e).__name__} at {Path(frame.f_code.co_filename).name}:{line}: {str(e)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _WATCH.root = None
    if _WATCH.outside and case.outcome != "error":
        case.outcome = "outside-read"
        case.message = f"opened {_WATCH.outside[:3]}"
    shutil.rmtree(d, ignore_errors=True)
    for extra in (d.parent / (d.name + ".outside"), d.parent / (d.name + ".outside.bin")):
        if extra.is_dir():
            shutil.rmtree(extra, ignore_errors=True)
        elif extra.exists():
            extra.unlink()
    return case


def is_failure(case: Case) -> bool:
    """The case breaks the contract (module docstring)."""
    return case.outcome in FAILURES or (case.outcome in ("different", "device-refused")
                                        and case.cls != "field-sealed")


#: Cases per round of the schedule: manifest edits get more, they have the most field paths to cover.
WEIGHTS = {"field-sealed": 4, "field-unsealed": 2}


def schedule(n: int, seed: int) -> list:
    """``n`` (class, seed) pairs, the classes round-robin (weighted by :data:`WEIGHTS`) so every prefix of a
    round's length covers all of them."""
    rounds = [c for c in CLASSES for _ in range(WEIGHTS.get(c, 1))]
    return [(rounds[i % len(rounds)], seed * 1_000_003 + i) for i in range(n)]


def message_rule(msg: str) -> str:
    """The rule of a refusal message: the artifact, the field path, names, numbers and hashes folded, so
    refusals can be counted by rule."""
    msg = re.sub(r"^artifact .*?: (manifest\.json: |manifest\.sha256: |(?=file \"))", "", msg, count=1)
    if not msg.startswith(("file \"", "does not match", "not found", "must be the one line")):
        msg = msg.split(": ", 1)[-1]   # a field path, then the rule
    msg = re.sub(r"[0-9a-f]{64}", "H", msg)
    msg = re.sub(r'"(?:[^"\\]|\\.)*"', '"S"', msg)
    msg = re.sub(r"'(?:[^'\\]|\\.)*'", "'S'", msg)
    msg = re.sub(r"\[[^\]]*\]", "[..]", msg)
    msg = re.sub(r"\{[^}]*\}", "{..}", msg)
    return re.sub(r"(?<![A-Za-z_])-?\d+(\.\d+)?", "N", msg)[:120]


__all__ = ["CLASSES", "FAILURES", "Base", "Case", "make_bases", "run_case", "run_artifact", "is_failure",
           "schedule", "field_pattern", "message_rule"]
