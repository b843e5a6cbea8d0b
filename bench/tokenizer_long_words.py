#!/usr/bin/env python
"""Time of the C++ tokenizer on one long word (1k, 10k, 100k characters), before and after the BPE merge
loop became a linked list plus a heap of candidate pairs (doc/tokenizer.md).

A server tokenizes untrusted prompts, and one word without spaces is one BPE word: the old loop rescanned
every pair after each merge (quadratic in the word's length), the new one is O(n log n). The words:
``english`` (the letters of data/corpus.txt without spaces or punctuation: many merges), ``mixed``
(random letters, some non-ASCII) and ``run`` (one letter repeated). The tokenizer is the demo one
(vocabulary 512) plus merges for runs of up to 16 'a's, so a run merges too.

``after`` is the working tree's clib (``make -C clib lib``, release -O2); ``before`` is
clib/src/tokenizer.cc of the commit ``--before`` (default: the last commit with the quadratic merge
loop), compiled the same way into a temporary directory and linked in its place. Both
link bench/tokenizer_long_words.cc, which times ``Tokenizer::encode`` in-process (best of ``--repeat``
runs, fewer when they pass 2 s), and both must give HF tokenizers' ids. Prints a table and writes
bench/results/tokenizer_long_words.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIB = ROOT / "clib"
DRIVER = ROOT / "bench" / "tokenizer_long_words.cc"
#: the last commit whose clib/src/tokenizer.cc rescans every pair after each merge
QUADRATIC_MERGE_REV = "507786f"
FLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror"]
SIZES = (1_000, 10_000, 100_000)
KINDS = ("english", "mixed", "run")
RUN_MAX = 16


def tokenizer_json() -> str:
    """The demo tokenizer (512) plus every split of a run of up to RUN_MAX 'a's as a merge (shuffled ranks)."""
    from dlavm.tokenizer import build_demo_tokenizer_json
    data = json.loads(build_demo_tokenizer_json(512))
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    for k in range(2, RUN_MAX + 1):
        vocab.setdefault("a" * k, max(vocab.values()) + 1)
    pairs = [["a" * i, "a" * (k - i)] for k in range(2, RUN_MAX + 1) for i in range(1, k)]
    random.Random(5).shuffle(pairs)
    merges.extend(p for p in pairs if p not in merges)
    return json.dumps(data)


def word(kind: str, n: int) -> str:
    if kind == "english":
        from dlavm.tokenizer import CORPUS
        letters = re.sub(r"[^A-Za-z]", "", CORPUS.read_text(encoding="utf-8"))
        return (letters * (n // len(letters) + 1))[:n]
    if kind == "mixed":
        rng = random.Random(n)
        return "".join(rng.choice("etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLéßΩж中") for _ in range(n))
    return "a" * n


def build(work: Path, before_rev: str) -> dict[str, Path]:
    subprocess.run(["make", "-C", str(CLIB), "lib"], check=True, capture_output=True)
    lib = CLIB / "build" / "libdlavm_rt.a"
    inc = ["-I", str(CLIB / "include")]
    old_src = work / "tokenizer_before.cc"
    old_src.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{before_rev}:clib/src/tokenizer.cc"],
                                       check=True, capture_output=True).stdout)
    if old_src.read_bytes() == (CLIB / "src" / "tokenizer.cc").read_bytes():
        print(f"note: clib/src/tokenizer.cc of {before_rev} is the working tree's: before == after",
              file=sys.stderr)
    old_obj = work / "tokenizer_before.o"
    # tokenizer.cc includes tokenizer_unicode_table.inc from its own directory
    subprocess.run(["g++", *FLAGS, *inc, "-I", str(CLIB / "src"), "-c", str(old_src), "-o", str(old_obj)],
                   check=True)
    exes = {"before": work / "before", "after": work / "after"}
    # the old object, listed before the library, replaces the library's tokenizer.o
    subprocess.run(["g++", *FLAGS, *inc, str(DRIVER), str(old_obj), str(lib), "-o", str(exes["before"])], check=True)
    subprocess.run(["g++", *FLAGS, *inc, str(DRIVER), str(lib), "-o", str(exes["after"])], check=True)
    return exes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=QUADRATIC_MERGE_REV,
                    help=f"commit whose clib/src/tokenizer.cc is 'before' (default {QUADRATIC_MERGE_REV}, the last one "
                         "with the quadratic merge loop)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer as HFTokenizer
    before_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.before], check=True,
                                   capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("building clib and the two drivers ...", file=sys.stderr, flush=True)
        exes = build(work, args.before)
        tok_path = work / "tokenizer.json"
        tok_path.write_text(tokenizer_json())
        hf = HFTokenizer.from_file(str(tok_path))
        for kind in KINDS:
            for n in args.sizes:
                text = word(kind, n)
                (work / "word.txt").write_text(text, encoding="utf-8")
                want = hf.encode(text, add_special_tokens=False).ids
                row = {"word": kind, "chars": n, "bytes": len(text.encode()), "ids": len(want)}
                for name, exe in exes.items():
                    res = subprocess.run([str(exe), str(tok_path), str(work / "word.txt"), str(args.repeat)],
                                         check=True, capture_output=True, text=True)
                    out = json.loads(res.stdout)
                    if out["ids"] != want:
                        raise SystemExit(f"{name}: {kind} {n}: ids differ from HF tokenizers")
                    row[f"{name}_s"], row[f"{name}_runs"] = out["seconds"], out["runs"]
                rows.append(row)
                print(f"{kind} {n:,} done", file=sys.stderr, flush=True)
    print(f"{'word':>8} {'chars':>8} {'ids':>7} {'before s':>10} {'after s':>10} {'speedup':>8}")
    for r in rows:
        print(f"{r['word']:>8} {r['chars']:>8,} {r['ids']:>7,} {r['before_s']:>10.4f} {r['after_s']:>10.4f} "
              f"{r['before_s'] / r['after_s']:>7.0f}x")
    out = ROOT / "bench" / "results" / "tokenizer_long_words.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "tokenizer_long_words", "before_commit": before_commit,
                               "repeat": args.repeat, "machine": platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
