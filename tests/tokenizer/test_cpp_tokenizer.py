"""The C++ dlavm::Tokenizer gives the ids and text of the Python one for the same tokenizer.json."""
from __future__ import annotations

import json
import random
import re

import pytest

from dlavm.tokenizer import CORPUS, Tokenizer, build_demo_tokenizer_json
from dlavm.tokenizer.unicode_table import classify_all, render_cpp

TRICKY = [
    "", " ", "  ", "\n", "\n\n", " \n ", "a  b", "a \n b", "x   ", "   x", "\t\tx", "hello\n\nworld", "  \nx",
    "12345678901234567890", "a1b2c3", " 42", "3.14159", "1,000,000", "!!!???...", " ...", "a--b",
    "''s", "?'s", "it's don't we're I've I'm you'll he'd", "IT'S DON'T", "'s't're've'm'll'd", " 's", "'x",
    "’s curly", "café naïve résumé", "中文字符", "emoji 😀😀 🎉!", "a😀b", "1😀", "é1é", "\u00a0nbsp\u00a0 x",
    "\u3000全角", "\u2028line sep", "\u0301combining", "x\u0301y", "Ωmega", "٣٤٥ arabic digits", "Ⅻ roman",
    "½ fraction", "<s>hello</s>", "a<s>b", "<s><s></s>", "<unk>", "< s>", "</s", " <s> x", "mixed\r\nCRLF",
    "\x00\x01\x7f", "tab\tsep", "\U0001F468\u200D\U0001F469\u200D\U0001F467 family", "ﬁ ligature",
    "ß straße", "İstanbul", "ǅ titlecase", "\U00010400\U0001D7CE math", "\ufeffBOM",
]


def corpus_lines() -> list[str]:
    return CORPUS.read_text(encoding="utf-8").split("\n")


def random_strings(n: int, seed: int = 0) -> list[str]:
    """Random mixes of characters of every class the pre-tokenizer distinguishes."""
    pool = list("aZ09 '\n\t.,!?-_sdtmlrev") + ["  ", "'s", "'ll", "é", "中", "😀", "\u00a0", "\u0301", "½", "٣",
                                              "\u3000", "<s>", "</s>", "—", "\r\n"]
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 24))) for _ in range(n)]


def test_split_matches_hf_pre_tokenizer(cpp_tok):
    from tokenizers import pre_tokenizers
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    texts = corpus_lines() + TRICKY + random_strings(300)
    expected = [[t[a:b] for _, (a, b) in hf.pre_tokenize_str(t)] for t in texts]
    assert cpp_tok.split(texts) == expected


@pytest.mark.parametrize("name, texts", [("corpus", corpus_lines()), ("tricky", TRICKY),
                                         ("random", random_strings(300, seed=1))])
def test_encode_matches_python(cpp_tok, demo_tokenizer, name, texts):
    got = cpp_tok.encode(demo_tokenizer.path, texts)
    for text, ids in zip(texts, got):
        assert ids == demo_tokenizer.encode(text), f"{name}: {text!r}"


def test_encode_whole_corpus_in_one_string(cpp_tok, demo_tokenizer):
    text = CORPUS.read_text(encoding="utf-8")
    assert cpp_tok.encode(demo_tokenizer.path, [text]) == [demo_tokenizer.encode(text)]


def test_decode_matches_python(cpp_tok, demo_tokenizer):
    rng = random.Random(2)
    id_lists = [demo_tokenizer.encode(t) for t in TRICKY + corpus_lines()[:40]]
    # arbitrary id sequences: broken UTF-8, special tokens in the middle
    id_lists += [[rng.randrange(demo_tokenizer.vocab_size) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    got = cpp_tok.decode(demo_tokenizer.path, id_lists)
    for ids, text in zip(id_lists, got):
        assert text == demo_tokenizer.decode(ids), ids


def test_decode_stream_matches_python(cpp_tok, demo_tokenizer):
    id_lists = [demo_tokenizer.encode(t) for t in TRICKY + ["中文 😀🎉 é and more"]]
    id_lists.append(demo_tokenizer.encode("ok 😀")[:-1])  # ends inside a character: flushed as U+FFFD
    got = cpp_tok.stream(demo_tokenizer.path, id_lists)
    for ids, pieces in zip(id_lists, got):
        assert pieces == list(demo_tokenizer.decode_stream(ids)), ids
        assert "".join(pieces) == demo_tokenizer.decode(ids)


def test_info(cpp_tok, demo_tokenizer):
    assert cpp_tok.info(demo_tokenizer.path) == {"vocab_size": 512, "bos_id": 0, "eos_id": 1}


def test_variant_features_match_python(cpp_tok, demo_tokenizer, tmp_path):
    """add_prefix_space, merges as "a b" strings, and a non-special added token."""
    data = json.loads(demo_tokenizer.path.read_text())
    data["pre_tokenizer"]["add_prefix_space"] = True
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    data["added_tokens"].append({"id": 512, "content": "hello world", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(data))
    py = Tokenizer.from_file(path)
    texts = TRICKY + ["say hello world twice: hello world!", "hello worlds", "x<s> y"]
    got = cpp_tok.encode(path, texts)
    for text, ids in zip(texts, got):
        assert ids == py.encode(text), text
    id_lists = [py.encode(t) for t in texts]
    assert cpp_tok.decode(path, id_lists) == [py.decode(ids) for ids in id_lists]


def _error(cpp_tok, path) -> str:
    res = cpp_tok.run("info", path, check=False)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("TokenizerError: tokenizer ")
    return res.stderr


def test_missing_and_corrupt_files_are_named(cpp_tok, tmp_path, demo_tokenizer):
    missing = tmp_path / "nope.json"
    assert f"tokenizer {missing}: cannot open file" in _error(cpp_tok, missing)
    bad = tmp_path / "bad.json"
    bad.write_text(demo_tokenizer.path.read_text()[:300])
    assert re.search(f"tokenizer {bad}: not valid JSON: JSON error at byte \\d+", _error(cpp_tok, bad))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["model"].update(type="Unigram"), "unsupported model.type \"Unigram\""),
    (lambda d: d.update(normalizer={"type": "NFC"}), "unsupported normalizer"),
    (lambda d: d.update(pre_tokenizer={"type": "Metaspace"}), "unsupported pre_tokenizer.type \"Metaspace\""),
    (lambda d: d.update(decoder=None), "unsupported decoder.type null"),
    (lambda d: d["model"].update(byte_fallback=True), "unsupported model.byte_fallback"),
    (lambda d: d["model"].update(dropout=0.1), "unsupported model.dropout"),
    (lambda d: d["added_tokens"][1].update(lstrip=True), r"unsupported added_tokens\[1\]\.lstrip = true"),
    (lambda d: d["model"]["merges"].append(["zz", "qq"]), r"model\.merges\[\d+\] .* not in model\.vocab"),
    (lambda d: d["model"].pop("vocab"), "unexpected tokenizer.json structure"),
])
def test_unsupported_features_are_named(cpp_tok, tmp_path, demo_tokenizer, edit, message):
    data = json.loads(demo_tokenizer.path.read_text())
    edit(data)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    assert re.search(message, _error(cpp_tok, path))


def test_out_of_range_id_is_refused(cpp_tok, demo_tokenizer):
    res = cpp_tok.run("decode", demo_tokenizer.path, payload=[[1, 600]], check=False)
    assert res.returncode == 3 and "token id 600 is outside the vocabulary [0, 512)" in res.stderr


def test_shipped_unicode_table_matches_installed_tokenizers():
    """clib/src/tokenizer_unicode_table.inc == a fresh classification of every code point by HF tokenizers."""
    shipped = (CORPUS.parents[1] / "clib" / "src" / "tokenizer_unicode_table.inc").read_text()
    fresh = render_cpp(classify_all())
    body = lambda text: [line for line in text.splitlines() if not line.startswith("//")]  # noqa: E731
    assert body(shipped) == body(fresh), "regenerate: python -m dlavm.tokenizer.unicode_table > " \
                                         "clib/src/tokenizer_unicode_table.inc"


def test_same_ids_for_other_vocab_sizes(cpp_tok, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(build_demo_tokenizer_json(1000))
    py = Tokenizer.from_file(path)
    texts = corpus_lines() + TRICKY
    assert cpp_tok.encode(path, texts) == [py.encode(t) for t in texts]
