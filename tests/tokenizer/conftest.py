"""Fixtures for the tokenizer tests: the demo tokenizer and the C++ test driver (tok_tool.cc)."""
from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIB = ROOT / "clib"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def demo_tokenizer(tmp_path_factory):
    from dlavm.tokenizer import train_demo_tokenizer
    return train_demo_tokenizer(512, path=tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tok_tool(tmp_path_factory) -> Path:
    """`make -C clib lib` (under the lock tests/clib uses), then tok_tool.cc with g++ -O2 -Wall -Werror."""
    (CLIB / "build").mkdir(exist_ok=True)
    with open(CLIB / "build" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB), "lib"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    exe = tmp_path_factory.mktemp("tok_bin") / "tok_tool"
    res = subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CLIB / 'include'}",
                          str(HERE / "tok_tool.cc"), str(CLIB / "build" / "libdlavm_rt.a"), "-o", str(exe)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return exe


class CppTokenizer:
    """Runs tok_tool on batches of inputs (one process per batch)."""

    def __init__(self, exe: Path, workdir: Path):
        self.exe, self.workdir = exe, workdir

    def run(self, *args, payload=None, check=True) -> subprocess.CompletedProcess:
        argv = [str(self.exe), *map(str, args)]
        if payload is not None:
            inp = self.workdir / "inputs.json"
            inp.write_text(json.dumps(payload))
            argv.append(str(inp))
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check:
            assert res.returncode == 0, f"{argv} -> {res.returncode}\n{res.stderr}"
        return res

    def encode(self, tokenizer_json, texts) -> list[list[int]]:
        return json.loads(self.run("encode", tokenizer_json, payload=list(texts)).stdout)

    def decode(self, tokenizer_json, id_lists) -> list[str]:
        return json.loads(self.run("decode", tokenizer_json, payload=[list(x) for x in id_lists]).stdout)

    def stream(self, tokenizer_json, id_lists) -> list[list[str]]:
        return json.loads(self.run("stream", tokenizer_json, payload=[list(x) for x in id_lists]).stdout)

    def split(self, texts) -> list[list[str]]:
        return json.loads(self.run("split", payload=list(texts)).stdout)

    def info(self, tokenizer_json) -> dict:
        return json.loads(self.run("info", tokenizer_json).stdout)


@pytest.fixture
def cpp_tok(tok_tool, tmp_path) -> CppTokenizer:
    return CppTokenizer(tok_tool, tmp_path)
