"""Mutated real artifacts through the Python loader and runtime: refused with one line, or the same output.

A few hundred cases of every mutation class (tests/artifact/artifact_fuzz.py); bench/fuzz_artifacts.py runs
thousands. Prints the table of outcomes per class (``pytest -s``)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from dlavm.artifact import ArtifactError, read_artifact_file

from .artifact_fuzz import CLASSES, is_failure, make_bases, run_artifact, run_case, schedule

CASES = 320


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(tmp_path_factory.mktemp("fuzz_bases"))


def test_mutated_artifacts_are_refused_or_run_as_compiled(bases, tmp_path):
    table = collections.Counter()
    failures = []
    for i, (cls, seed) in enumerate(schedule(CASES, seed=11)):
        case = run_case(bases[i % len(bases)], cls, seed, tmp_path, time_limit=20.0)
        table[cls, case.outcome] += 1
        if is_failure(case):
            failures.append(case)
    print("\nclass           " + " ".join(f"{o:>14}" for o in sorted({o for _, o in table})))
    for cls in CLASSES:
        print(f"{cls:<16}" + " ".join(f"{table[cls, o]:>14}" for o in sorted({o for _, o in table})))
    assert not failures, "\n".join(f"{c.base} {c.cls} {c.detail}: {c.outcome} {c.message}" for c in failures[:20])
    assert all(sum(n for (c, _), n in table.items() if c == cls) for cls in CLASSES)
    # damage a loader can see is refused; a file changed after loading is not seen
    for cls in ("bitflip", "truncate", "extend", "field-unsealed", "path", "symlink", "special-file"):
        assert {o for (c, o) in table if c == cls} == {"refused"}, cls
    assert {o for (c, o) in table if c == "toctou"} == {"same"}
    assert table["field-sealed", "refused"] > table["field-sealed", "same"]


def test_a_weight_changed_between_load_and_run_is_not_seen(bases, tmp_path):
    import shutil
    base = bases[0]
    d = tmp_path / "art"
    shutil.copytree(base.directory, d)
    rel = sorted(p for p in (d / "weights").iterdir() if p.name.endswith(".int4.bin"))[0].relative_to(d)

    def change():
        data = bytearray((d / rel).read_bytes())
        data[: 64] = bytes(64)
        (d / rel).write_bytes(bytes(data))
    from dlavm.compiler import load
    from dlavm.runtime.runtime import Runtime
    from dlavm.sim_device import open_simulator
    cm = load(d)                 # verified now, run after the change
    out = run_artifact(base, d, between=change)
    assert all(np.array_equal(a, b) for a, b in zip(out, base.outputs))    # the verified bytes ran
    y = cm.runtime().run(base.entry, *base.inputs, dims=base.dims)
    assert all(np.array_equal(a, b) for a, b in zip(y, base.outputs))
    # the change matters: the bytes now on disk give another result
    disk = Runtime(cm.manifest, lambda r: (d / r).read_bytes(), open_simulator(cm.manifest))
    y = disk.run(base.entry, *base.inputs, dims=base.dims)
    assert not all(np.array_equal(a, b) for a, b in zip(y, base.outputs))
    from dlavm.runtime.loader import verify_artifact
    with pytest.raises(ArtifactError, match=f'file "{rel}" does not match its sha256'):
        verify_artifact(d)
    with pytest.raises(ArtifactError, match=f'file "{rel}" does not match its sha256'):
        read_artifact_file(d, verify_artifact(base.directory), str(rel))
