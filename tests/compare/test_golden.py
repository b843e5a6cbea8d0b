"""The golden streams under compare/ equal what the current compiler emits; a changed lowering
rule fails them with a grouped diff naming op, field and layer (doc/compare.md)."""
from __future__ import annotations

import dataclasses

import pytest

from dlavm import sym
from dlavm.compare import golden
from dlavm.compare.cases import CASES, find_case
from dlavm.compare.diff import format_diff
from dlavm.devops.spec import Lowering
from dlavm.ir.op import device_spec, get_op
from dlavm.task.ir import For
from dlavm.task.reloc import BufRef


@pytest.fixture(scope="module")
def compiled():
    return {c.key: golden.compile_case(c) for c in CASES}


def test_every_golden_matches_the_current_compiler(compiled):
    bad = [st for st in golden.check(CASES, compiled=compiled) if st.state != "same"]
    msg = "\n".join(f"{st.state}: {st.path}\n{format_diff(st.diff) if st.diff else ''}" for st in bad)
    assert not bad, msg + "\nreview the diff, then run `dlavm golden --update`"


def test_goldens_cover_every_case_target_and_binding():
    paths = {golden.golden_path(c, at) for c in CASES for at in c.at}
    assert {c.target for c in CASES} == {"tiny", "vcu128"}
    assert {p.name for p in paths} >= {"llama_block.seq1.asm", "llama_block.seq129.asm"}
    assert all(p.exists() for p in paths)


def _reverse_tile_loops(fn):
    """A lowering rule whose token-tile loops run last tile first (the 'swap a loop order' change)."""
    def rule(ctx, node):
        out = []
        for s in fn(ctx, node):
            if isinstance(s, For):
                last = sym.upper_bound(s.extent) - 1
                def flip(v, s=s, last=last):
                    if isinstance(v, BufRef):  # an address: flip its offset
                        return BufRef(v.key, v.fn, flip(v.offset))
                    return sym.substitute(v, {s.var: last - s.var}) if isinstance(v, sym.Expr) else v
                s = For(s.var, s.extent, tuple(dataclasses.replace(e, fields={k: flip(v) for k, v in e.fields.items()})
                                               for e in s.body))
            out.append(s)
        return out
    return rule


def _swap_kv_appends(fn):
    """The attention rule with its two kv_append instructions (K then V) swapped."""
    def rule(ctx, node):
        out = list(fn(ctx, node))
        out[0], out[1] = out[1], out[0]
        return out
    return rule


def _patched(monkeypatch, op, wrap):
    """Device op ``op``'s lowering rules wrapped by ``wrap`` (its spec replaced on the op until undo)."""
    o = get_op(op)
    spec = device_spec(o)
    changed = dataclasses.replace(spec, lowering=tuple(Lowering(wrap(r.fn), r.requires) for r in spec.lowering))
    monkeypatch.setitem(o._extra, "spec", changed)   # Op.set_attr's store, restored by monkeypatch.undo()


def test_swapping_the_tile_loop_order_fails_with_a_grouped_diff(monkeypatch):
    case = find_case("tiny/llama_block")
    _patched(monkeypatch, "dev.mvm", _reverse_tile_loops)
    st = {s.path.name: s for s in golden.check([case])}["llama_block.seq129.asm"]
    assert st.state == "differs"
    text = format_diff(st.diff)
    # op, field, old -> new with its expression, how many, which layers and ops, and where
    assert "mvm.m: x" in text and "mvm.x: x" in text
    assert "128{min(seq-i*128,128)} -> 1{min(i*128+seq-128,128)}  x12  layers 0-1  at forward.0 #1 #3 #5" in text
    assert "ops dev.mvm#3," in text
    assert "> 0001 L0 dev.mvm#3 mvm" in text                     # the instruction, with its neighbours
    assert "0000 L0 dev.rmsnorm#2 rmsnorm" in text
    assert text.count("\n") < 60                                  # grouped: ~100 changed fields, a screenful
    monkeypatch.undo()
    assert all(s.state == "same" for s in golden.check([case]))   # reverting makes it pass


def test_swapping_two_instructions_names_the_op_field_and_layers(monkeypatch):
    case = find_case("vcu128/llama_block")
    _patched(monkeypatch, "dev.attention", _swap_kv_appends)
    st = golden.check([case])[0]
    assert st.state == "differs"
    text = format_diff(st.diff)
    assert "kv_append.dst: x4  layers 0-1" in text
    assert "kv:scratch.attn.kcache -> kv:scratch.attn.vcache  x2  layers 0-1" in text


def test_update_writes_goldens_that_then_check_clean(tmp_path):
    case = find_case("tiny/device_ops")
    written = golden.update([case], tmp_path)
    assert {s.state for s in written} == {"missing"}
    assert (tmp_path / "tiny" / "device_ops.seq33.asm").read_text() == golden.golden_path(case, {"seq": 33}).read_text()
    assert {s.state for s in golden.check([case], tmp_path)} == {"same"}
