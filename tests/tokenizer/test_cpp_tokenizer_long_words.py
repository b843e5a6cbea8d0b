"""Long words: the C++ BPE merge loop (a linked list of symbols and a heap of candidate pairs, O(n log n)
in the word's length; doc/tokenizer.md) gives HF tokenizers' ids for words of 20,000 characters (mixed
letters, runs of one letter, random bytes), with the demo merges, with merges made for runs (every split
of a run of up to 16 'a's, in a shuffled order, so many merges tie in rank and the leftmost must win),
and with ignore_merges, unk_token with and without fuse_unk, no unk_token (unknown characters dropped)
and use_regex false (a whole text is one word). Both flavours, as every C++ tokenizer test."""
from __future__ import annotations

import json
import random
import re

import pytest

from dlavm.tokenizer import CORPUS, Tokenizer

N = 20_000
RUN_MAX = 16          # the merges made for runs reach 'a' * RUN_MAX
GONE = "z"            # the unk variants take this character out of the vocabulary


def long_words() -> dict[str, str]:
    rng = random.Random(7)
    english = re.sub(r"[^A-Za-z]", "", CORPUS.read_text(encoding="utf-8"))
    letters = "etaoinshrdlucmfwypvbgkjqxz" * 3 + "ETAOINSHRDLZ" + "éßΩж中" + "a" * 20
    return {
        "mixed letters": "".join(rng.choice(letters) for _ in range(N)),
        "english without spaces": (english * (N // len(english) + 1))[:N],
        "run of a": "a" * N,
        "run of z": GONE * N,
        "runs of a and z": "".join("a" * rng.randint(1, 40) + GONE * rng.randint(0, 3) for _ in range(N // 20))[:N],
        "random bytes": bytes(rng.randrange(256) for _ in range(N)).decode("latin-1"),
        "random code points": "".join(chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x110000)]))
                                      for _ in range(N)),
    }


def short_runs(n: int, seed: int = 3) -> list[str]:
    """Words of 'a' runs broken by a few other letters: the ties among the run merges, word by word."""
    rng = random.Random(seed)
    return ["".join(rng.choice("aaaaaaab" + GONE) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def with_run_merges(data: dict) -> dict:
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    next_id = max(vocab.values()) + 1
    for k in range(2, RUN_MAX + 1):
        if "a" * k not in vocab:
            vocab["a" * k] = next_id
            next_id += 1
    pairs = [["a" * i, "a" * (k - i)] for k in range(2, RUN_MAX + 1) for i in range(1, k)]
    random.Random(5).shuffle(pairs)
    merges.extend(p for p in pairs if p not in merges)
    return data


def without_gone(data: dict, unk: str | None, fuse: bool) -> dict:
    """GONE is no longer a token (its id keeps a token nothing spells); merges using it are dropped."""
    vocab = data["model"]["vocab"]
    vocab["<gone>"] = vocab.pop(GONE)
    data["model"]["merges"] = [m for m in data["model"]["merges"] if GONE not in (m[0], m[1])]
    data["model"].update(unk_token=unk, fuse_unk=fuse)
    return data


VARIANTS = {
    "demo": lambda d: d,
    "runs": with_run_merges,
    "ignore_merges": lambda d: {**with_run_merges(d), "model": {**d["model"], "ignore_merges": True}},
    "unk": lambda d: without_gone(with_run_merges(d), "<unk>", False),
    "fuse_unk": lambda d: without_gone(with_run_merges(d), "<unk>", True),
    "fuse_unk_ignore_merges": lambda d: {**without_gone(with_run_merges(d), "<unk>", True),
                                         "model": {**d["model"], "ignore_merges": True}},
    "no_unk": lambda d: without_gone(with_run_merges(d), None, False),
    "no_regex": lambda d: {**with_run_merges(d), "pre_tokenizer": {**d["pre_tokenizer"], "use_regex": False}},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_long_words_match_hf(cpp_tok, demo_tokenizer, tmp_path, variant):
    data = VARIANTS[variant](json.loads(demo_tokenizer.path.read_text()))
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    py = Tokenizer.from_file(path)
    words = long_words()
    # the vocabulary's own tokens (ignore_merges: one id each) and short words with many tied merges
    extra = ["aaaaaaaa", "a" * RUN_MAX, "ize", "iz", "the", "tokenizer"] + short_runs(300)
    texts = list(words.values()) + extra
    results = cpp_tok.encode(path, texts)
    for name, text, ids in zip(list(words) + extra, texts, results):
        want = py.encode(text)
        assert ids == want, f"{variant}: {name[:60]!r}: {len(ids)} ids, HF {len(want)}; first difference at " \
                            f"{first_difference(ids, want)}"
    got = dict(zip(words, results))
    if variant == "runs":   # the run merges are exercised: a run of N 'a's is mostly tokens of RUN_MAX 'a's
        assert got["run of a"].count(py.token_to_id("a" * RUN_MAX)) >= N // RUN_MAX - 2
    if variant == "fuse_unk":
        assert got["run of z"] == [py.token_to_id("<unk>")]
    if variant == "fuse_unk_ignore_merges":   # "ize" has no merges left (no "z"), but is in the vocabulary
        assert results[texts.index("ize")] == [py.token_to_id("ize")]
    if variant == "no_unk":
        assert got["run of z"] == []


def first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
