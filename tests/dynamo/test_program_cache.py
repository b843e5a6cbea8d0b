"""The compiled-program cache under ``torch.compile(backend="dlavm")``: a second process compiles
nothing and gets the same outputs; a damaged entry is rebuilt, never run; processes racing on an
empty cache all succeed; every input of the compilation (a weight, the target, the weight format, a
bound) is part of the key.

Run as a script (``python test_program_cache.py CACHE_DIR OUT.npy [GO_FILE]``) this file is the
"other process": it compiles :class:`MLP` with the cache in ``CACHE_DIR``, saves its outputs and
prints its ``STATS`` line; with ``GO_FILE`` it prints ``ready`` and waits for that file first, so
that the test can start several processes' compilations at once.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

TOL = dict(atol=5e-3, rtol=5e-3)     # fp16 on the device (see test_backend.py)
SCRIPT_TIMEOUT = 300                 # seconds a script process may take (importing torch is most of it)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.l2 = nn.Linear(32, 8)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x))).softmax(-1)


def model(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().eval()


def inputs(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(1))


def run_compiled(m: nn.Module, x: torch.Tensor, **options) -> torch.Tensor:
    """``m(x)`` compiled by the dlavm backend on the tiny target (``options`` added), from a fresh dynamo."""
    import dlavm.dynamo
    torch._dynamo.reset()
    dlavm.dynamo.reset_stats()
    dynamic = options.pop("dynamic", None)
    with torch.no_grad():
        return torch.compile(m, backend="dlavm", dynamic=dynamic, options={"target": "tiny", **options})(x)


def stats_line() -> str:
    from dlavm.dynamo import STATS
    return (f"STATS graphs={STATS.graphs} compiles={STATS.compiles} cache_hits={STATS.cache_hits} "
            f"device_calls={STATS.device_calls}")


def _main(argv: list) -> None:
    cache_dir, out = argv[0], argv[1]
    import dlavm.dynamo  # noqa: F401 -- imported before the go signal, so that the processes start close together
    if len(argv) > 2:
        go = Path(argv[2])
        print("ready", flush=True)
        for _ in range(SCRIPT_TIMEOUT * 100):
            if go.exists():
                break
            time.sleep(0.01)
        else:
            raise SystemExit(f"no go file {go} within {SCRIPT_TIMEOUT} s")
    y = run_compiled(model(), inputs(), cache_dir=cache_dir)
    np.save(out, y.numpy())
    print(stats_line(), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])

# ------------------------------------------------------------------ the tests
import pytest  # noqa: E402 -- the script above runs without pytest

from dlavm.dynamo import STATS  # noqa: E402
from dlavm.program_cache import KEY_FILE  # noqa: E402


def _script(cache_dir: Path, out: Path, go: Path | None = None) -> subprocess.Popen:
    argv = [sys.executable, __file__, str(cache_dir), str(out)] + ([str(go)] if go else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _finish(proc: subprocess.Popen) -> dict:
    """The STATS figures the script process printed (it must succeed)."""
    out, err = proc.communicate(timeout=SCRIPT_TIMEOUT)
    assert proc.returncode == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("STATS ")]
    assert len(lines) == 1, out
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[0])}


def _entries(cache_dir: Path) -> list:
    """The entry folders of the cache (no temporary or discarded ones)."""
    return sorted(p for p in cache_dir.glob("*/*") if p.is_dir() and not p.name.startswith("."))


def _leftovers(cache_dir: Path) -> list:
    return sorted(p.name for p in cache_dir.glob("*/.*"))


def test_a_second_process_compiles_nothing_and_gets_identical_outputs(tmp_path):
    cache = tmp_path / "cache"
    here = run_compiled(model(), inputs(), cache_dir=cache)
    assert (STATS.compiles, STATS.cache_hits) == (1, 0)
    assert len(_entries(cache)) == 1
    figures = _finish(_script(cache, tmp_path / "there.npy"))
    assert figures["compiles"] == 0 and figures["cache_hits"] == 1 and figures["device_calls"] == 1, figures
    assert np.array_equal(np.load(tmp_path / "there.npy"), here.numpy())
    assert len(_entries(cache)) == 1


def test_processes_started_at_once_on_an_empty_cache_all_succeed_with_identical_outputs(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [_script(cache, tmp_path / f"out{i}.npy", go) for i in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        figures = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for f in figures:
        assert f["compiles"] + f["cache_hits"] == 1 and f["device_calls"] == 1, figures
    outs = [np.load(tmp_path / f"out{i}.npy") for i in range(2)]
    assert np.array_equal(outs[0], outs[1])
    torch.testing.assert_close(torch.from_numpy(outs[0]), model()(inputs()).detach(), **TOL)
    assert len(_entries(cache)) == 1 and _leftovers(cache) == []
    run_compiled(model(), inputs(), cache_dir=cache)     # what they stored is a good entry
    assert (STATS.compiles, STATS.cache_hits) == (0, 1)


def test_two_lookups_that_both_build_store_one_entry(tmp_path):
    """Two lookups of one key that both miss (each build waits for the other's): one entry is stored,
    the other build is dropped, both get a program, nothing is left behind."""
    from dlavm.compiler import compile as dlavm_compile, load
    from dlavm.program_cache import ProgramCache
    cm = dlavm_compile(model(), (inputs(),), target="tiny", weights="fp16")
    both_built = threading.Barrier(2, timeout=60)

    def build():
        both_built.wait()
        return cm

    parts = {"kind": "test", "model": "mlp"}
    results = [None, None]

    def lookup(i):
        results[i] = ProgramCache(tmp_path / "cache").get(parts, build)

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [how for _cm, how in results] == ["miss", "miss"]
    [entry] = _entries(tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []
    again, how = ProgramCache(tmp_path / "cache").get(parts, lambda: pytest.fail("a stored entry was rebuilt"))
    assert how == "hit"
    x = inputs().numpy()
    assert np.array_equal(again.run(x)[0], cm.run(x)[0])
    assert np.array_equal(load(entry).run(x)[0], cm.run(x)[0])


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:8] = bytes(b ^ 0x5A for b in data[:8])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_key(path: Path) -> None:
    held = json.loads(path.read_text())
    held["key"] = "0" * 64
    path.write_text(json.dumps(held))


DAMAGE = {
    "truncated weights": ("weights/l1.weight.fp16.bin", _truncate),
    "changed weight bytes": ("weights/l2.weight.fp16.bin", _flip_bytes),
    "changed stream": ("streams/forward.0.bin", _flip_bytes),
    "key.json of another key": (KEY_FILE, _other_key),
    "no key.json": (KEY_FILE, Path.unlink),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_rebuilt_never_run_with_a_logged_reason(tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    good = run_compiled(model(), inputs(), cache_dir=cache)
    [entry] = _entries(cache)
    rel, spoil = DAMAGE[damage]
    intact = {p.relative_to(entry): p.read_bytes() for p in entry.rglob("*") if p.is_file()}
    spoil(entry / rel)
    caplog.set_level(logging.WARNING, logger="dlavm.program_cache")
    again = run_compiled(model(), inputs(), cache_dir=cache)
    # not a cache hit, and the outputs are the first program's bit for bit: the damaged one never ran
    assert torch.equal(again, good)
    assert (STATS.compiles, STATS.cache_hits, STATS.device_calls) == (1, 0, 1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "dlavm.program_cache"]
    assert len(warnings) == 1 and entry.name in warnings[0] and "is damaged (" in warnings[0] \
        and "rebuilding it" in warnings[0], warnings
    assert _entries(cache) == [entry] and _leftovers(cache) == []
    assert {p.relative_to(entry): p.read_bytes() for p in entry.rglob("*") if p.is_file()} == intact
    caplog.clear()
    run_compiled(model(), inputs(), cache_dir=cache)     # the rebuilt entry is a good one
    assert (STATS.compiles, STATS.cache_hits) == (0, 1) and not caplog.records


def _tiny_copy(tmp_path: Path) -> str:
    """A target file describing the tiny target under another name: another target fingerprint."""
    from dlavm.target import get_target
    path = tmp_path / "tiny_copy.json"
    path.write_text(json.dumps({**get_target("tiny").to_dict(), "name": "tiny_copy"}))
    return str(path)


def test_every_input_of_the_compilation_is_part_of_the_key(tmp_path):
    cache = tmp_path / "cache"
    x = inputs(8)
    variants = [
        ("the first", model(0), {}),
        ("another weight", model(1), {}),
        ("another target", model(0), {"target": _tiny_copy(tmp_path)}),
        ("another weight format", model(0), {"weights": "int8"}),
        ("a dynamic size bounded by 16", model(0), {"dynamic": True, "dim_bound": 16}),
        ("a dynamic size bounded by 32", model(0), {"dynamic": True, "dim_bound": 32}),
    ]
    for count, (what, m, options) in enumerate(variants, 1):
        y = run_compiled(m, x, cache_dir=cache, **options)
        assert (STATS.compiles, STATS.cache_hits) == (1, 0), what
        assert len(_entries(cache)) == count, what
        tol = dict(atol=3e-2, rtol=3e-2) if options.get("weights") == "int8" else TOL   # 8-bit weights
        torch.testing.assert_close(y, m(x).detach(), **tol, msg=what)
    for what, m, options in variants:      # each is found again: the keys are stable
        run_compiled(m, x, cache_dir=cache, **options)
        assert (STATS.compiles, STATS.cache_hits) == (0, 1), what
    assert len(_entries(cache)) == len(variants)


def test_without_a_cache_nothing_is_written_and_every_compilation_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path / "default"))
    for _ in range(2):
        run_compiled(model(), inputs(), cache_dir=False)
        assert (STATS.compiles, STATS.cache_hits) == (1, 0)
    assert not (tmp_path / "default").exists()


def test_the_default_cache_folder_is_the_programs_folder_of_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLAVM_CACHE_DIR", str(tmp_path / "default"))
    run_compiled(model(), inputs())
    assert len(_entries(tmp_path / "default" / "programs")) == 1


def test_a_cache_folder_that_cannot_be_written_leaves_the_program_uncached_with_a_warning(tmp_path, caplog):
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("")
    caplog.set_level(logging.WARNING, logger="dlavm.program_cache")
    for _ in range(2):
        y = run_compiled(model(), inputs(), cache_dir=not_a_folder)
        torch.testing.assert_close(y, model()(inputs()).detach(), **TOL)
        assert (STATS.compiles, STATS.cache_hits) == (1, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "dlavm.program_cache"]
    assert len(warnings) == 2 and all("cannot write the program cache" in w and "not cached" in w for w in warnings)
    assert not_a_folder.read_text() == ""
