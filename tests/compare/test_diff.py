"""`dlavm diff`: relocated vs raw addresses, symbolic and specialised dynamic words, exit codes."""
from __future__ import annotations

import dataclasses
import struct

import pytest
from click.testing import CliRunner

from dlavm.artifact import Buffer, open_artifact
from dlavm.cli.main import main as cli_main
from dlavm.compare import golden
from dlavm.compare.cases import find_case
from dlavm.compare.diff import diff_listings, format_diff
from dlavm.compare.listing import from_manifest, parse, render
from dlavm.target import isa


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """The tiny Llama golden case saved as an artifact (shape-only, no driver)."""
    cm = golden.compile_case(find_case("tiny/llama_block"))
    return cm, cm.save(tmp_path_factory.mktemp("a") / "llama", driver=False)


def _diff(*args):
    return CliRunner().invoke(cli_main, ["diff"] + [str(a) for a in args])


def _moved(cm, delta=0x1000):
    """(manifest, files) of ``cm`` with every weight buffer moved up by ``delta`` bytes."""
    m = cm.manifest
    w = m.memory["weights"]
    end = w.base + w.used
    moved = dataclasses.replace(w, buffers={n: Buffer(b.addr + delta, b.size) for n, b in w.buffers.items()})
    m = dataclasses.replace(m, memory={**m.memory, "weights": moved})
    files = dict(cm.build.files)
    for s in m.streams.values():
        insns = []
        for insn in isa.decode_stream(files[s.file]):
            vals = dict(insn.fields)
            for f in insn.format.fields:
                used = vals[f.name] or f.name not in ("aff", "resid", "wscale")   # 0 there: operand unused
                if f.kind == "addr" and used and w.base <= vals[f.name] < end:
                    vals[f.name] += delta
            insns.append(isa.make(insn.op, wait=insn.wait, **vals))
        files[s.file] = isa.encode_stream(insns)
    return m, files


def test_a_moved_buffer_is_a_move_when_relocated_and_many_words_when_raw(art):
    cm, _ = art
    m2, files2 = _moved(cm)
    a = from_manifest(cm.manifest, lambda r: cm.build.files[r], {"seq": 1}, source="A")
    b = from_manifest(m2, lambda r: files2[r], {"seq": 1}, source="B")
    res = diff_listings(a, b)
    text = format_diff(res)
    assert not res.changes and not res.gaps
    assert "moved 35 buffer(s) by +0x1000: weights:model.layers.0.input_layernorm.weight.f16" in text
    raw = diff_listings(from_manifest(cm.manifest, lambda r: cm.build.files[r], {"seq": 1}, raw=True),
                        from_manifest(m2, lambda r: files2[r], {"seq": 1}, raw=True))
    assert len(raw.changes) > 30 and "mvm.w: x14  layers 0-1" in format_diff(raw)
    assert "+0x1000 (e.g. 0x200 -> 0x1200)  x14" in format_diff(raw)


def test_dynamic_words_compare_symbolically_and_at_given_sizes(art):
    cm, _ = art
    rd = lambda r: cm.build.files[r]  # noqa: E731
    sym_text = render(from_manifest(cm.manifest, rd))
    # a token loop's body is listed once (its variable as `i`): the row count depends on it, its first entry
    # is noted with the trip count
    assert "m=128{min(seq-i*128,128)}" in sym_text and " ; loop i<{(seq+127)//128}" in sym_text
    at1 = render(from_manifest(cm.manifest, rd, {"seq": 1}))
    assert "m=1{min(seq-i*128,128)}" in at1 and " ; loop i<{(seq+127)//128}=1" in at1
    at129 = render(from_manifest(cm.manifest, rd, {"seq": 129}))
    assert "m=128{min(seq-i*128,128)}" in at129 and " ; loop i<{(seq+127)//128}=2" in at129
    res = diff_listings(from_manifest(cm.manifest, rd, {"seq": 1}), from_manifest(cm.manifest, rd, {"seq": 129}))
    text = format_diff(res)
    assert "rows=" not in text and "rmsnorm.rows: x" in text
    assert "header at: seq=1 -> seq=129" in text


def test_listing_text_round_trips(art):
    cm, _ = art
    text = render(from_manifest(cm.manifest, lambda r: cm.build.files[r], {"seq": 129}))
    assert render(parse(text)) == text


def test_cli_exit_codes_and_golden_comparison(art, tmp_path):
    cm, path = art
    same = _diff(path, path)
    assert same.exit_code == 0 and "identical" in same.output
    gold = golden.golden_path(find_case("tiny/llama_block"), {"seq": 129})
    res = _diff(gold, path)                       # the golden's own 'at' specialises the artifact
    assert res.exit_code == 0, res.output
    res = _diff(golden.golden_path(find_case("tiny/llama_block"), {"seq": 1}), gold)
    assert res.exit_code == 2 and "different dims" in res.output
    res = _diff(path, path, "--at", "seq=300")
    assert res.exit_code == 2 and "outside the bounds [1, 256]" in res.output
    res = _diff(path, path, "--at", "kv=3")
    assert res.exit_code == 2 and "no dynamic dim 'kv'" in res.output
    (tmp_path / "junk.txt").write_text("hello\n")
    res = _diff(tmp_path / "junk.txt", path)
    assert res.exit_code == 2 and "junk.txt" in res.output
    res = _diff(tmp_path, path)
    assert res.exit_code == 2 and f"{tmp_path}: not an artifact (no manifest.json" in res.output


def test_cli_reports_differences_with_exit_1(art, tmp_path):
    cm, path = art
    s = open_artifact(path).streams["forward.0"]
    data = bytearray((path / s.file).read_bytes())
    off = 1 * isa.INSN_BYTES + 4 * isa.op_format("mvm").field("n").word
    struct.pack_into("<I", data, off, 255)
    b = tmp_path / "b.bin"
    b.write_bytes(bytes(data))
    a = tmp_path / "a.bin"
    a.write_bytes((path / s.file).read_bytes())
    res = _diff(a, b)
    assert res.exit_code == 1
    assert "mvm.n: x1" in res.output and "256 -> 255" in res.output
    asm_file = tmp_path / "a.asm"
    asm_file.write_text((path / s.asm).read_text())
    assert _diff(asm_file, a).exit_code == 0          # an .asm listing is a stream too


def test_a_stream_file_compares_with_an_artifact_in_raw_addresses(art, tmp_path):
    cm, path = art
    s = cm.manifest.streams["forward.0"]
    b = tmp_path / "s.bin"
    b.write_bytes((path / s.file).read_bytes())
    res = _diff(path, b)          # symbolic artifact: the static stream, addresses raw like the .bin
    assert res.exit_code == 0, res.output
    res = _diff(path, b, "--at", "seq=1")
    # at seq=1 every dynamic word is its value, the static stream holds the bound (a loop body: its last tile)
    assert res.exit_code == 1 and "mvm.m: x14" in res.output and "1 -> 128  x12" in res.output


def test_a_corrupt_artifact_is_an_error_naming_the_file(art, tmp_path):
    import shutil
    _, path = art
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    f = bad / "streams" / "forward.0.bin"
    f.write_bytes(b"\xff" + f.read_bytes()[1:])
    res = _diff(bad, path)
    assert res.exit_code == 2 and "not a valid artifact" in res.output and "forward.0.bin" in res.output


def test_a_golden_against_a_raw_stream_of_its_artifact(art, tmp_path):
    _, path = art
    gold = golden.golden_path(find_case("tiny/llama_block"), {"seq": 129})
    res = _diff(path, gold, "--raw-addresses")
    assert res.exit_code == 2 and "holds relocated addresses" in res.output
    res = _diff(gold, path, "--at", "seq=1")
    assert res.exit_code == 2 and "is specialised at seq=129, not at seq=1" in res.output


def test_two_artifacts_from_different_compilers(art, tmp_path, monkeypatch):
    from tests.compare.test_golden import _patched, _swap_kv_appends
    _, path = art
    _patched(monkeypatch, "dev.attention", _swap_kv_appends)
    new = golden.compile_case(find_case("tiny/llama_block")).save(tmp_path / "new", driver=False)
    res = _diff(path, new, "--at", "seq=129", "--context", "2")
    assert res.exit_code == 1
    assert "kv_append.dst: x4  layers 0-1  ops dev.attention#8,dev.attention#21  (2 patterns)" in res.output
    assert "    kv:scratch.attn.kcache -> kv:scratch.attn.vcache  x2  layers 0-1  at forward.0 #6 #23" in res.output
    assert "0005 L0 dev.mvm#7 mvm" in res.output    # two neighbours each side
