"""The device-free pieces of the C++ runtime against their Python references:
fp16 conversions vs numpy (bit for bit), SHA-256 vs the standard vectors and
hashlib, the JSON reader vs Python's json (values and errors)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from clib_testing import run_program


def test_fp16_to_float_is_exact_for_all_65536_halves(cpp_programs, tmp_path):
    out = tmp_path / "f32.bin"
    run_program(cpp_programs["rt_tool"], "fp16-to-float", out)
    got = np.fromfile(out, dtype="<u4")
    want = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(got, want)   # NaN payloads included


def _float_cases(rng: np.random.Generator) -> np.ndarray:
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    finite = np.isfinite(halves)
    # Exact midpoints between neighbouring halves (ties), and one float ulp either side.
    pos = np.sort(np.unique(np.abs(halves[finite]).astype(np.float64)))
    mids = ((pos[:-1] + pos[1:]) / 2).astype(np.float32)   # exact in fp32 (12 significant bits)
    assert np.all(mids.astype(np.float64) == (pos[:-1] + pos[1:]) / 2)
    ties = np.concatenate([mids, -mids])
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 65504.0, 65519.996, 65520.0, 65536.0, 1e30,
                         2.0 ** -24, 2.0 ** -25, np.nextafter(np.float32(2.0 ** -25), np.float32(1)), 2.0 ** -26,
                         2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38],
                        dtype=np.float32)
    nans = np.array([0x7F800001, 0x7FC00000, 0xFF801234, 0x7FFFFFFF, 0x7F801FFF, 0xFFC02000],
                    dtype=np.uint32).view(np.float32)
    random_bits = rng.integers(0, 2 ** 32, size=400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    # Dense in the fp16 range, including its subnormals.
    scaled = (rng.standard_normal(200_000) * np.exp2(rng.integers(-28, 17, size=200_000))).astype(np.float32)
    return np.concatenate([halves, ties, near, specials, nans, random_bits, scaled]).astype(np.float32)


def test_float_to_fp16_matches_numpy_bit_for_bit(cpp_programs, tmp_path):
    xs = _float_cases(np.random.default_rng(7))
    src, out = tmp_path / "in.bin", tmp_path / "out.bin"
    xs.view("<u4").tofile(src)
    run_program(cpp_programs["rt_tool"], "float-to-fp16", src, out)
    got = np.fromfile(out, dtype="<u2")
    with np.errstate(over="ignore", invalid="ignore"):
        want = xs.astype(np.float16).view(np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(xs.view(np.uint32)[i]), hex(got[i]), hex(want[i])) for i in bad[:10]]


SHA_VECTORS = {
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
    b"nopqrstu": "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
}


def test_sha256_vectors_and_padding_boundaries(cpp_programs, tmp_path):
    rng = np.random.default_rng(3)
    blobs = list(SHA_VECTORS) + [rng.bytes(n) for n in (1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 4097)]
    paths = []
    for i, b in enumerate(blobs):
        paths.append(tmp_path / f"b{i}")
        paths[-1].write_bytes(b)
    got = run_program(cpp_programs["rt_tool"], "sha256", *paths).stdout.split()
    assert got == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert got[:len(SHA_VECTORS)] == list(SHA_VECTORS.values())


JSON_GOOD = [
    '{"format": "dlavm-artifact", "version": 1, "files": {"a/b.bin": "00ff"}}',
    '[1, -0, 0, -17, 9223372036854775807, -9223372036854775808, 1.5, -2.5e-3, 1E10, 6.02e+23, 0.1]',
    '"esc: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20ac \\ud83d\\ude00 \\u0000"',
    '  {"nested": [[], {}, [{"x": [true, false, null]}]], "utf8": "h\u00e9llo \u4e16\u754c"}  ',
    '{"": "", "k": -1e-320}',
]

JSON_BAD = [
    ("", 0), ("[1,]", 3), ("{\"a\" 1}", 5), ("{\"a\": 1,}", 8), ("[1 2]", 3), ("tru", 0), ("01", 1),
    ("\"abc", 0), ("\"a\\x\"", 2), ("\"\\u12g4\"", 5), ("1.", 2), ("-", 1), ("1e", 2), ("[1] x", 4),
    ("{\"a\": 1, \"a\": 2}", 9), ("9223372036854775808", 0), ("\"tab\there\"", 4), ("[" * 300, 257), ("{1: 2}", 1),
]


@pytest.mark.parametrize("text", JSON_GOOD)
def test_json_reader_agrees_with_python(cpp_programs, tmp_path, text):
    f = tmp_path / "doc.json"
    f.write_text(text, encoding="utf-8")
    out = run_program(cpp_programs["rt_tool"], "json", f).stdout
    assert json.loads(out) == json.loads(text)
    # Integers stay integers, doubles stay doubles.
    assert repr(json.loads(out)) == repr(json.loads(text))


def test_json_reader_errors_name_the_byte_offset(cpp_programs, tmp_path):
    for i, (text, offset) in enumerate(JSON_BAD):
        f = tmp_path / f"bad{i}.json"
        f.write_text(text, encoding="utf-8")
        res = run_program(cpp_programs["rt_tool"], "json", f, check_rc=2)
        assert res.stdout.startswith(f"ParseError {offset}: JSON error at byte {offset}: "), (text, res.stdout)
    dup = run_program(cpp_programs["rt_tool"], "json", tmp_path / "bad14.json", check_rc=2).stdout
    assert 'duplicate key "a"' in dup
