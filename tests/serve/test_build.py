"""dlavm.serve.build: the cache key follows the driver sources, clib and the make flags; a failing make
is one line naming the compiler's error; an artifact that is not an LLM is refused before make runs."""
from __future__ import annotations

import dataclasses

import pytest

from dlavm.serve import build as B
from tests.serve.serve_support import llm_artifact, need_gxx


def test_the_cache_key_follows_every_input():
    driver = {"driver/m.cc": b"int a;", "driver/m_llm.cc": b"int b;"}
    key = B.cache_key(driver)
    assert key == B.cache_key(dict(reversed(list(driver.items()))))            # order does not matter
    assert key != B.cache_key({**driver, "driver/m.cc": b"int c;"})             # a changed byte does
    assert key != B.cache_key({**driver, "driver/m.h": b""})                     # so does another file
    assert key != B.cache_key(driver, build="build-asan")                        # and the flavour and flags
    assert key != B.cache_key(driver, make_args=("CXXFLAGS=-O1",))


def test_the_cache_dir_follows_dlavm_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path))
    assert B.default_cache_dir() == tmp_path / "serve"
    monkeypatch.delenv("DLAVM_CACHE_DIR")
    assert B.default_cache_dir() == B.REPO_ROOT / "build" / "serve"


def test_a_failing_make_is_one_line_with_its_error():
    need_gxx()
    steps = []
    with pytest.raises(B.ServeBuildError) as e:
        B._run_make(["no-such-target"], "build", lambda *a: steps.append(a), "building x", [0])
    msg = str(e.value)
    assert "\n" not in msg and "building x failed" in msg and "no-such-target" in msg
    assert steps and steps[0][0] == "build"    # progress from the start


def test_an_artifact_without_the_llm_driver_is_refused(tmp_path):
    from dlavm.artifact import load_artifact
    art = load_artifact(llm_artifact())
    assert set(B.driver_sources(art)) >= {"driver/llama.cc", "driver/llama_llm.cc"}
    files = {k: v for k, v in art.manifest.files.items() if k != "driver/llama_llm.cc"}
    older = dataclasses.replace(art, manifest=dataclasses.replace(art.manifest, files=files))
    with pytest.raises(B.ServeBuildError, match="no driver/<model>_llm.cc"):
        B.driver_sources(older)
    nodriver = {k: v for k, v in files.items() if not k.startswith("driver/")}
    with pytest.raises(B.ServeBuildError, match="no C\\+\\+ driver"):
        B.driver_sources(dataclasses.replace(art, manifest=dataclasses.replace(art.manifest, files=nodriver)))
    with pytest.raises(B.ServeBuildError, match="is not an LLM"):
        B.driver_sources(dataclasses.replace(art, manifest=dataclasses.replace(art.manifest, llm=None)))
