"""Limits of the C++ tokenizer.json reader (doc/tokenizer.md, "Limits"): ids out of range are refused
with a message naming the field and the value (never an allocation sized by a hostile id), duplicate
keys are refused, and a Qwen2-sized vocabulary (150k keys in one JSON object) loads."""
from __future__ import annotations

import json

import pytest

from dlavm.tokenizer import Tokenizer

from .test_cpp_tokenizer import TRICKY


def _error(cpp_tok, path) -> str:
    res = cpp_tok.run("info", path, check=False)
    assert res.returncode == 3, f"rc {res.returncode}: {res.stderr}"
    assert res.stderr.startswith(f"TokenizerError: tokenizer {path}: ")
    return res.stderr.strip()


def _write(tmp_path, data, text=None):
    path = tmp_path / "tokenizer.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


@pytest.mark.parametrize("token, bad_id", [("zz", 2_000_000_000), ("zz", -1), ("zz", "entries")])
def test_an_out_of_range_vocab_id_is_refused_naming_the_field(cpp_tok, demo_tokenizer, tmp_path, token, bad_id):
    data = json.loads(demo_tokenizer.path.read_text())
    entries = len(data["model"]["vocab"]) + 1 + len(data["added_tokens"])
    bad_id = entries if bad_id == "entries" else bad_id     # the first id past the entry count
    data["model"]["vocab"][token] = bad_id
    got = _error(cpp_tok, _write(tmp_path, data))
    assert got.endswith(f": model.vocab['{token}']: id {bad_id} is out of range: ids must be in [0, {entries}) "
                        f"(below 2^24 and below the {entries} entries of model.vocab and added_tokens)")


def test_an_out_of_range_added_token_id_is_refused_naming_the_field(cpp_tok, demo_tokenizer, tmp_path):
    data = json.loads(demo_tokenizer.path.read_text())
    data["added_tokens"][1]["id"] = 4_000_000_000_000
    assert "added_tokens[1].id: id 4000000000000 is out of range" in _error(cpp_tok, _write(tmp_path, data))


def test_duplicate_keys_are_refused_in_small_and_large_objects(cpp_tok, demo_tokenizer, tmp_path):
    text = demo_tokenizer.path.read_text()
    data = json.loads(text)
    small = text.replace('"model": {', '"model": {"type": "BPE", ', 1)
    assert 'duplicate key "type"' in _error(cpp_tok, _write(tmp_path, None, small))
    tokens = list(data["model"]["vocab"])          # 512 keys: past the linear-scan size
    dup = text.replace(json.dumps(tokens[-1]) + ":", json.dumps(tokens[3]) + ":", 1)
    assert dup != text
    assert f'duplicate key {json.dumps(tokens[3])}' in _error(cpp_tok, _write(tmp_path, None, dup))


def big_vocab_json(demo_text: str, n: int) -> str:
    """The demo tokenizer with a vocabulary of ``n`` ids: its own tokens first, then "t0", "t1", ..."""
    data = json.loads(demo_text)
    vocab = data["model"]["vocab"]
    added = {a["content"] for a in data["added_tokens"]}
    plain = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in added]
    k = 0
    while len(plain) + len(added) < n:
        if f"t{k}" not in vocab:
            plain.append(f"t{k}")
        k += 1
    data["model"]["vocab"] = {t: i for i, t in enumerate(plain)}
    for i, a in enumerate(data["added_tokens"]):
        a["id"] = len(plain) + i
        data["model"]["vocab"][a["content"]] = a["id"]
    return json.dumps(data)


def test_a_150k_entry_vocabulary_loads_and_matches_python(cpp_tok, demo_tokenizer, tmp_path):
    n = 150_000
    path = _write(tmp_path, None, big_vocab_json(demo_tokenizer.path.read_text(), n))
    py = Tokenizer.from_file(path)
    assert cpp_tok.info(path)["vocab_size"] == py.vocab_size == n
    ids = [[n - 10 - k for k in range(5)], [300, 149_000, 7]]
    assert cpp_tok.decode(path, ids) == [py.decode(x) for x in ids]
    texts = TRICKY + ["t149000 t5 t77"]
    assert cpp_tok.encode(path, texts) == [py.encode(t) for t in texts]
