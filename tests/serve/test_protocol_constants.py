"""dlavm/serve/protocol.py (the Python definition of the serving protocol's wire) against
clib/include/dlavm/serve_protocol.h (its C++ repetition), parsed as text: every constant, frame type
and string list of the header has the same value in Python and the other way round. Plus the frames
protocol.py writes and reads, and the client's import footprint (the standard library only)."""
from __future__ import annotations

import ast
import json
import re
import socket
import struct
import subprocess
import sys

import pytest

from dlavm.serve import protocol as P
from tests.clib.clib_build import ROOT

HEADER = ROOT / "clib" / "include" / "dlavm" / "serve_protocol.h"
#: Header constants whose Python name is not the mechanical one (kFooBar -> FOO_BAR), and derived
#: ones Python has no name for.
RENAMED = {"kTokenHeadBytes": ("TOKEN_HEAD.size", P.TOKEN_HEAD.size)}
DERIVED = {"kNumErrorKinds"}


def _py_name(cpp: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cpp[1:]).upper()


def _int_expr(text: str) -> int:
    """A C++ integer constant expression of literals, <<, -, +, *, parentheses (suffixes dropped)."""
    text = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b", r"\1", text)
    tree = ast.parse(text, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.LShift, ast.Sub, ast.Add, ast.Mult, ast.UnaryOp,
               ast.USub)
    for node in ast.walk(tree):
        assert isinstance(node, allowed), f"unexpected C++ in a constant: {text!r}"
    return eval(compile(tree, "<header>", "eval"))  # noqa: S307 -- only the literals and operators above


def parse_header(text: str) -> tuple[dict, dict, dict]:
    """``(integer constants, FrameType members, string lists)`` of serve_protocol.h."""
    text = re.sub(r"//[^\n]*", "", text)
    ints = {m[1]: _int_expr(m[2]) for m in re.finditer(
        r"constexpr\s+(?:u?int\d+_t|int|size_t)\s+(k\w+)\s*=\s*([^;]+);", text) if m[1] not in DERIVED}
    enum = re.search(r"enum\s+FrameType\s*:\s*uint8_t\s*\{([^}]*)\}", text)
    assert enum, "serve_protocol.h has no 'enum FrameType : uint8_t { ... }'"
    members = {m[1]: _int_expr(m[2]) for m in re.finditer(r"(\w+)\s*=\s*([^,]+)", enum[1])}
    lists = {m[1]: re.findall(r'"([^"]*)"', m[2]) for m in re.finditer(
        r"constexpr\s+const\s+char\s*\*\s*(k\w+)\[\]\s*=\s*\{([^}]*)\}", text)}
    return ints, members, lists


def parse_header_strings(text: str) -> dict:
    """The string constants of serve_protocol.h (``constexpr const char kName[] = "...";``)."""
    text = re.sub(r"//[^\n]*", "", text)
    return {m[1]: m[2] for m in re.finditer(r'constexpr\s+const\s+char\s+(k\w+)\[\]\s*=\s*"([^"]*)"\s*;', text)}


def test_the_header_and_protocol_py_define_the_same_wire():
    ints, members, lists = parse_header(HEADER.read_text())
    assert ints and members and lists
    for cpp, value in ints.items():
        name, want = RENAMED.get(cpp) or (_py_name(cpp), getattr(P, _py_name(cpp), None))
        assert want == value, f"serve_protocol.h {cpp} = {value}, dlavm/serve/protocol.py {name} = {want}"
    assert members == {t.name: t.value for t in P.FrameType}
    for cpp, values in lists.items():
        name = _py_name(cpp)
        assert tuple(values) == getattr(P, name, None), f"serve_protocol.h {cpp} != protocol.py {name}"
    strings = parse_header_strings(HEADER.read_text())
    assert "kTokenEnv" in strings
    for cpp, value in strings.items():
        assert getattr(P, _py_name(cpp), None) == value, f"serve_protocol.h {cpp} != protocol.py {_py_name(cpp)}"
    # the other way round: every wire constant of protocol.py is in the header
    py_consts = [n for n in P.__all__ if n.isupper() and isinstance(getattr(P, n), (int, tuple, str))
                 and n not in ("REPLY_SHAPES",)]
    header_names = {_py_name(k) for k in list(ints) + list(lists) + list(strings)} | {"TOKEN_HEAD"}
    assert not [n for n in py_consts if n not in header_names]


def test_the_parser_reads_what_it_compares():
    ints, members, lists = parse_header("constexpr uint64_t kMaxSeed = (1ull << 63) - 1;  // x\n"
                                        "enum FrameType : uint8_t { HELLO = 1, TOKEN = 130, };\n"
                                        'constexpr const char* kStopReasons[] = {"eos", "stop"};')
    assert ints == {"kMaxSeed": 2**63 - 1} and members == {"HELLO": 1, "TOKEN": 130}
    assert lists == {"kStopReasons": ["eos", "stop"]}
    assert parse_header_strings('constexpr const char kTokenEnv[] = "X_Y";  // z') == {"kTokenEnv": "X_Y"}


def test_frames_round_trip_and_bad_frames_are_refused():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(10)
        a.sendall(P.encode_json(P.FrameType.HELLO, {"protocol": 1, "token": "é"}))
        a.sendall(P.encode_token(7, 300, "ü!"))
        a.sendall(P.encode_frame(P.FrameType.HEALTH))
        ftype, payload = P.read_frame(b, 4096)
        assert ftype == P.FrameType.HELLO and P.decode_json(payload, "HELLO") == {"protocol": 1, "token": "é"}
        ftype, payload = P.read_frame(b, 4096)
        assert ftype == P.FrameType.TOKEN and P.decode_token(payload) == (7, 300, "ü!")
        assert P.read_frame(b, 4096) == (P.FrameType.HEALTH, b"")
        a.sendall(struct.pack("<I", 5000))   # past the limit: refused before any body byte is read
        with pytest.raises(P.FrameError, match="outside 1..4096"):
            P.read_frame(b, 4096)
        a.sendall(struct.pack("<I", 0))
        with pytest.raises(P.FrameError, match="outside"):
            P.read_frame(b, 4096)
        a.sendall(struct.pack("<IB", 10, 1) + b"ab")
        a.close()
        with pytest.raises(P.FrameError, match="closed after 3 of 10"):
            P.read_frame(b, 4096)
        assert P.read_frame(b, 4096) is None
    for bad, why in ((b'{"a":1,"a":2}', "duplicate"), (b"[1]", "not an object"), (b'{"a":NaN}', "NaN"),
                     (b"\xff", "UTF-8"), (json.dumps({"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}).encode(), "deeper")):
        with pytest.raises(P.FrameError, match=why):
            P.decode_json(bad, "X")
    with pytest.raises(P.FrameError, match="at least 8"):
        P.decode_token(b"\0" * 7)
    with pytest.raises(P.FrameError, match="not UTF-8"):
        P.decode_token(b"\0" * 8 + b"\xc3")
    done = {"id": 1, "stop_reason": "eos", "prompt_tokens": 2, "new_tokens": 3, "text_tail": "", "seed": None,
            "sim_ms": 1.5, "host_ms": 2, "queue_ms": 0.0}
    assert P.check_shape(done, P.FrameType.DONE) is done
    with pytest.raises(P.FrameError, match="unknown key 'x'"):
        P.check_shape({**done, "x": 1}, P.FrameType.DONE)
    with pytest.raises(P.FrameError, match="lacks the key 'seed'"):
        P.check_shape({k: v for k, v in done.items() if k != "seed"}, P.FrameType.DONE)
    with pytest.raises(P.FrameError, match="'id' is a JSON string"):
        P.check_shape({**done, "id": "1"}, P.FrameType.DONE)


def test_the_client_loads_the_standard_library_only():
    code = ("import sys, dlavm.serve\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'yaml', 'tokenizers', "
            "'jinja2') or m.startswith('dlavm.') and not m.startswith('dlavm.serve')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
