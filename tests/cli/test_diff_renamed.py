"""`dlavm diff` of two artifacts whose weights were renamed (as a format change renames them): one line per
renamed buffer, paired by equal bytes (artifacts) or by position and size (listing files), and no
instruction difference for a rename; a weight whose bytes changed is not taken for a renamed one."""
from __future__ import annotations

import hashlib
import json
import shutil

from click.testing import CliRunner

from dlavm.artifact import MANIFEST_SUM, manifest_sum_text
from dlavm.cli.errors import EXIT_NEGATIVE
from dlavm.cli.main import main
from dlavm.compare.diff import diff_listings, format_diff
from dlavm.compare.listing import open_pair, render


def _renamed_copy(src, dst, old="model.", new="net.", change=None):
    """A consistent copy of artifact ``src`` with ``old`` renamed ``new`` in every name and file path (the
    bytes unchanged), resealed; ``change`` (a weight name) also gets its first byte flipped. Returns the
    copy and how many weights were renamed."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())

    def walk(v):
        if isinstance(v, str):
            return v.replace(old, new)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        return v
    for rel in m["files"]:
        if old in rel:
            (dst / rel).rename(dst / rel.replace(old, new))
    m = walk(m)
    if change is not None:
        blob = next(w for w in m["weights"] if w["name"] == change)
        data = bytearray((dst / blob["file"]).read_bytes())
        data[0] ^= 0xFF
        (dst / blob["file"]).write_bytes(bytes(data))
        m["files"][blob["file"]] = hashlib.sha256(data).hexdigest()
    text = json.dumps(m, indent=1)
    (dst / "manifest.json").write_text(text)
    (dst / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))
    return dst, sum(old in w["name"] for w in json.loads((src / "manifest.json").read_text())["weights"])


def test_renamed_weights_are_paired_by_their_bytes(bad_input_paths, tmp_path):
    a = bad_input_paths["mlp"]
    b, n = _renamed_copy(a, tmp_path / "b")
    assert n > 10
    res = CliRunner().invoke(main, ["diff", str(a), str(b)])
    assert res.exit_code == EXIT_NEGATIVE, res.stderr
    out = res.output
    assert f"renamed {n} buffer(s) (equal bytes):" in out
    assert "weights:model.layers.0.input_layernorm.weight.f16 -> weights:net.layers.0.input_layernorm.weight.f16" in out
    assert "only in A" not in out and "only in B" not in out and "changed field" not in out
    assert out.rstrip().endswith(f"{n} difference(s)")


def test_without_bytes_renamed_weights_pair_by_position_and_size(bad_input_paths, tmp_path):
    """Listing files carry no weight bytes: the unpaired buffers line up in address order."""
    a = bad_input_paths["mlp"]
    b, _ = _renamed_copy(a, tmp_path / "b")
    la, lb = open_pair(a, b)
    (tmp_path / "a.txt").write_text(render(la))
    (tmp_path / "b.txt").write_text(render(lb))
    res = CliRunner().invoke(main, ["diff", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    assert res.exit_code == EXIT_NEGATIVE
    assert "(same position and size):" in res.output and "changed field" not in res.output


def test_an_artifact_against_a_listing_file_pairs_by_position(bad_input_paths, tmp_path):
    a = bad_input_paths["mlp"]
    b, n = _renamed_copy(a, tmp_path / "b")
    (tmp_path / "b.txt").write_text(render(open_pair(a, b)[1]))
    res = diff_listings(*open_pair(a, tmp_path / "b.txt"))
    assert [how for kind, *_, how in (m for m in res.memory if m[0] == "renamed")] == ["position"] * n
    assert not res.changes and not res.gaps


def test_a_weight_with_other_bytes_is_not_a_rename(bad_input_paths, tmp_path):
    a = bad_input_paths["mlp"]
    changed = "model.layers.0.mlp.up_proj.weight.int4"
    b, n = _renamed_copy(a, tmp_path / "b", change=changed.replace("model.", "net."))
    res = diff_listings(*open_pair(a, b))
    renamed = {x for kind, x, *_ in res.memory if kind == "renamed"}
    assert len(renamed) == n - 1
    only = {(kind, lab) for kind, lab, *_ in res.memory if kind.startswith("only")}
    assert only == {("only in A", f"weights:{changed}"), ("only in B", f"weights:{changed.replace('model.', 'net.')}")}
    text = format_diff(res)
    # the instructions using it now name another buffer: shown once, as a field change of the mvm that reads it
    assert f"weights:{changed} -> weights:net." in text and "changed field" in text


def test_the_same_artifact_is_still_identical(bad_input_paths):
    a = bad_input_paths["mlp"]
    res = CliRunner().invoke(main, ["diff", str(a), str(a)])
    assert res.exit_code == 0 and "identical" in res.output
