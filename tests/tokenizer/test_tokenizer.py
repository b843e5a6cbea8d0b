"""dlavm.tokenizer: the HF-backed Python tokenizer and the demo BPE (doc/tokenizer.md)."""
from __future__ import annotations

import json

import pytest

from dlavm.tokenizer import CORPUS, Tokenizer, TokenizerError, build_demo_tokenizer_json, train_demo_tokenizer

TEXTS = ["", "Hello, world!", "It's 2024: café, 中文 and 😀.\n  indented\tline",
         "The bus moves 204.8 GB/s; that's the roofline."]


def test_demo_tokenizer_is_byte_level_bpe_with_special_tokens(demo_tokenizer):
    data = json.loads(demo_tokenizer.path.read_text())
    assert data["model"]["type"] == "BPE"
    assert data["pre_tokenizer"]["type"] == "ByteLevel" and data["decoder"]["type"] == "ByteLevel"
    assert demo_tokenizer.vocab_size == 512
    assert (demo_tokenizer.bos_id, demo_tokenizer.eos_id) == (0, 1)
    assert [demo_tokenizer.id_to_token(i) for i in range(3)] == ["<s>", "</s>", "<unk>"]


def test_training_is_deterministic():
    assert build_demo_tokenizer_json(300) == build_demo_tokenizer_json(300)


def test_default_location_is_outside_the_source_tree(monkeypatch, tmp_path):
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path))
    tok = train_demo_tokenizer(300)
    assert tok.path.parent == tmp_path / "tokenizer"
    again = train_demo_tokenizer(300)  # reused from the cache
    assert again.path == tok.path and again.encode(TEXTS[2]) == tok.encode(TEXTS[2])


def test_path_may_be_a_directory(tmp_path):
    tok = train_demo_tokenizer(300, path=tmp_path)
    assert tok.path == (tmp_path / "tokenizer.json").resolve()
    assert Tokenizer.from_file(tmp_path).vocab_size == 300


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(demo_tokenizer, text):
    ids = demo_tokenizer.encode(text)
    assert all(0 <= i < demo_tokenizer.vocab_size for i in ids)
    assert demo_tokenizer.decode(ids) == text


def test_round_trip_whole_corpus(demo_tokenizer):
    text = CORPUS.read_text(encoding="utf-8")
    ids = demo_tokenizer.encode(text)
    assert demo_tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # the merges compress the text they were trained on


def test_add_bos_and_special_tokens_skipped_in_decode(demo_tokenizer):
    ids = demo_tokenizer.encode("hi there", add_bos=True)
    assert ids[0] == demo_tokenizer.bos_id and ids[1:] == demo_tokenizer.encode("hi there")
    assert demo_tokenizer.decode(ids + [demo_tokenizer.eos_id]) == "hi there"
    assert demo_tokenizer.encode("a</s>")[-1] == demo_tokenizer.eos_id  # special tokens in text are matched


def test_decode_rejects_out_of_range_ids(demo_tokenizer):
    with pytest.raises(TokenizerError, match="token id 512 is outside the vocabulary"):
        demo_tokenizer.decode([5, 512])


@pytest.mark.parametrize("text", TEXTS[1:] + ["中文 😀🎉 é", "x" * 50])
def test_decode_stream_yields_whole_characters(demo_tokenizer, text):
    ids = demo_tokenizer.encode(text)
    pieces = list(demo_tokenizer.decode_stream(ids))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    if any(ord(c) > 0x7FF for c in text):  # some characters span several tokens
        assert len(pieces) < len(ids)


def test_decode_stream_flushes_an_incomplete_character(demo_tokenizer):
    ids = demo_tokenizer.encode("ok 😀")
    assert len(ids) > 2
    pieces = list(demo_tokenizer.decode_stream(ids[:-1]))
    assert "".join(pieces) == demo_tokenizer.decode(ids[:-1])
    assert pieces[-1].endswith("\ufffd")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file .*nope.json' does not exist"):
        Tokenizer.from_file(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="tokenizer.json' does not exist"):
        Tokenizer.from_file(tmp_path)  # a directory without tokenizer.json


def test_corrupt_file_is_named(tmp_path, demo_tokenizer):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(demo_tokenizer.path.read_text()[:200])
    with pytest.raises(TokenizerError, match=f"'{bad}' is not valid JSON"):
        Tokenizer.from_file(bad)
    bad.write_text('{"model": {"type": "Nonsense"}}')
    with pytest.raises(TokenizerError, match=f"'{bad}' is not a tokenizer.json"):
        Tokenizer.from_file(bad)
