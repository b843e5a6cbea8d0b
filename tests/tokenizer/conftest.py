"""Fixtures for the tokenizer tests: the demo tokenizer and the C++ test driver (tok_tool.cc)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.clib.clib_build import FLAVOURS, build_clib, compile_programs, install_sanitizer_env

HERE = Path(__file__).resolve().parent

install_sanitizer_env()


@pytest.fixture(scope="session")
def demo_tokenizer(tmp_path_factory):
    from dlavm.tokenizer import train_demo_tokenizer
    return train_demo_tokenizer(512, path=tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session", params=FLAVOURS)
def tok_tool(request, tmp_path_factory) -> Path:
    """tok_tool.cc with -Wall -Wextra -Werror against clib of each flavour (release -O2, and
    `make -C clib asan`: every C++ tokenizer test also runs under AddressSanitizer + UBSan)."""
    lib = build_clib(request.param)
    return compile_programs({"tok_tool": [HERE / "tok_tool.cc"]}, tmp_path_factory.mktemp(f"tok_bin_{request.param}"),
                            request.param, lib)["tok_tool"]


class CppTokenizer:
    """Runs tok_tool on batches of inputs (one process per batch)."""

    def __init__(self, exe: Path, workdir: Path):
        self.exe, self.workdir = exe, workdir

    def run(self, *args, payload=None, flags=(), check=True) -> subprocess.CompletedProcess:
        """tok_tool ARGS [INPUTS] FLAGS, INPUTS being ``payload`` written as JSON."""
        argv = [str(self.exe), *map(str, args)]
        if payload is not None:
            inp = self.workdir / "inputs.json"
            inp.write_text(json.dumps(payload))
            argv.append(str(inp))
        argv += flags
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if check:
            assert res.returncode == 0, f"{argv} -> {res.returncode}\n{res.stderr}"
        return res

    def encode(self, tokenizer_json, texts, add_special_tokens=False) -> list[list[int]]:
        flags = ["--add-special-tokens"] if add_special_tokens else []
        return json.loads(self.run("encode", tokenizer_json, payload=list(texts), flags=flags).stdout)

    def decode(self, tokenizer_json, id_lists, skip_special_tokens=True) -> list[str]:
        flags = [] if skip_special_tokens else ["--keep-special-tokens"]
        return json.loads(self.run("decode", tokenizer_json, payload=[list(x) for x in id_lists], flags=flags).stdout)

    def normalize(self, tokenizer_json, texts) -> list[str]:
        return json.loads(self.run("normalize", tokenizer_json, payload=list(texts)).stdout)

    def stream(self, tokenizer_json, id_lists) -> list[list[str]]:
        return json.loads(self.run("stream", tokenizer_json, payload=[list(x) for x in id_lists]).stdout)

    def split(self, texts) -> list[list[str]]:
        return json.loads(self.run("split", payload=list(texts)).stdout)

    def info(self, tokenizer_json) -> dict:
        return json.loads(self.run("info", tokenizer_json).stdout)


@pytest.fixture
def cpp_tok(tok_tool, tmp_path) -> CppTokenizer:
    return CppTokenizer(tok_tool, tmp_path)
