"""Artifacts: save / load / run identically; corrupt, foreign or out-of-bounds use is refused
with a clear message; the CLI commands run the same library code."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm import sym
from dlavm.artifact import MANIFEST_VERSION, Dim, ManifestError
from dlavm.target import get_target
from dlavm.runtime.loader import ArtifactError, verify_artifact
from dlavm.runtime.runtime import BoundsError

from dlavm.compiler import compile as dlavm_compile, load
from tests.e2e import device_graphs as G

SEQ = sym.Var("seq", 1, 24)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    mod, _, _ = G.llama_block(np.random.default_rng(0), SEQ, 128)
    cm = dlavm_compile(mod, target="tiny")
    path = cm.save(tmp_path_factory.mktemp("art") / "llama")
    return cm, path


def test_saved_artifact_runs_bit_identically(saved):
    cm, path = saved
    m = verify_artifact(path)
    assert m.format == "dlavm-artifact" and m.version == MANIFEST_VERSION and m.target.name == "tiny"
    assert m.dims == {"seq": Dim(1, 24)}
    for rel in ("streams/forward.0.bin", "streams/forward.0.asm", "driver/model.h", "driver/model.cc"):
        assert rel in m.files
    assert m == dataclasses.replace(cm.manifest, files=m.files)   # saved as compiled, plus the driver files
    loaded = load(path)
    ids = np.array([3, 1, 4, 1, 5, 9, 2])
    np.testing.assert_array_equal(loaded.run(ids)[0], cm.run(ids)[0])


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_corrupt_file_is_refused_naming_it(saved, tmp_path):
    _, path = saved
    bad = _copy(path, tmp_path / "bad")
    w = next((bad / "weights").glob("*.bin"))
    data = bytearray(w.read_bytes())
    data[0] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f'file "weights/{w.name}" does not match its sha256'):
        load(bad)


def test_wrong_version_and_missing_file_are_refused(saved, tmp_path):
    _, path = saved
    bad = _copy(path, tmp_path / "v2")
    m = json.loads((bad / "manifest.json").read_text())
    m["version"] = 1
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=f"manifest.json: version: is 1, this reader reads version "
                                            f"{MANIFEST_VERSION}"):
        load(bad)
    gone = _copy(path, tmp_path / "gone")
    (gone / "streams" / "forward.0.bin").unlink()
    with pytest.raises(ArtifactError, match='file "streams/forward.0.bin" is missing'):
        load(gone)


def test_other_target_is_refused(saved):
    _, path = saved
    with pytest.raises(ArtifactError, match="compiled for target 'tiny'"):
        verify_artifact(path, target=get_target("vcu128"))


def test_shape_past_its_bound_is_a_clear_error(saved):
    cm, _ = saved
    with pytest.raises(BoundsError, match=r"dim seq=25 is outside the bounds \[1, 24\]"):
        cm.run(np.zeros(25, np.int64))


def test_cli_compile_run_disasm_profile(tmp_path):
    from dlavm.cli.main import main
    cmds = main.commands
    r = CliRunner()
    out = tmp_path / "mlp"
    res = r.invoke(cmds["compile"], ["mlp", "--target", "tiny", "--max-seq", "16", "-o", str(out)],
                   catch_exceptions=False)
    assert res.exit_code == 0 and "dev.mvm" in res.output and "artifact written" in res.output
    res = r.invoke(cmds["run"], [str(out), "--seq", "5"], catch_exceptions=False)
    assert res.exit_code == 0 and "output 0: shape [1, 5, 32]" in res.output and "cycles" in res.output
    res = r.invoke(cmds["disasm"], [str(out)], catch_exceptions=False)
    assert res.exit_code == 0 and "mvm wfmt=int4" in res.output and "m={seq}" in res.output
    trace = tmp_path / "t.json"
    res = r.invoke(cmds["profile"], [str(out), "--seq", "16", "--trace", str(trace)], catch_exceptions=False)
    assert res.exit_code == 0 and "dev.mvm#" in res.output
    assert "% of port peak" in res.output and "% of device peak" in res.output
    assert "traceEvents" in json.loads(trace.read_text())


def test_the_stored_target_is_checked_against_its_fingerprint(saved):
    cm, _ = saved
    assert cm.manifest.target.fingerprint == get_target("tiny").fingerprint() == cm.target.fingerprint()
    other = dataclasses.replace(cm.manifest.target, fingerprint=get_target("vcu128").fingerprint())
    with pytest.raises(ManifestError, match="target.description: does not match target.fingerprint"):
        other.load()


def test_device_of_another_target_is_refused(saved):
    from hw_models import Simulator
    from dlavm.runtime.runtime import RunError
    _, path = saved
    with pytest.raises(RunError, match="compiled for target 'tiny' but the device implements 'vcu128'"):
        load(path, hal=Simulator("vcu128"))


def test_shape_only_model_profiles_in_timing_only_mode():
    from dlavm.compiler import format_profile, profile
    mod, _, _ = G.llama_block(np.random.default_rng(0), SEQ, 128)
    mod.params = {k: None for k in mod.params}  # as on torch's meta device
    cm = dlavm_compile(mod, target="tiny")
    assert cm.manifest.weights_complete is False
    assert [w.name for w in cm.manifest.weights] == ["pwl.silu"]  # tables are data, not weights
    with pytest.raises(Exception, match="compiled without weight data"):
        cm.run(np.zeros(3, np.int64))
    p = profile(cm.manifest, cm._read, 24, functional=False)
    assert p["cycles"] > 0 and 0 < p["roofline_fraction"] <= 1
    assert p["macs"] > 0 and "dev.attention" in format_profile(p)
