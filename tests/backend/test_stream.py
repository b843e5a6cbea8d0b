"""AUX streams: patch tables, guards, listing round trip, direct-register mode, compile report."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm import sym
from dlavm.target import asm, get_target, isa

from dlavm.compiler import compile as dlavm_compile
from tests.e2e import device_graphs as G

TARGET = get_target("tiny").replace(name="tiny-smallbuf", act_buffer_bytes=2048)
SEQ = sym.Var("seq", 1, 40)


@pytest.fixture(scope="module")
def mlp():
    mod, ref, _ = G.mlp(np.random.default_rng(0), SEQ, 128)
    return dlavm_compile(mod, target=TARGET), ref


def test_patch_table_names_every_dynamic_field(mlp):
    cm, _ = mlp
    (st,) = cm.manifest.streams.values()
    insns = isa.decode_stream(cm._read(st.file))
    assert len(insns) == st.count == 4  # 2 + 2 token tiles (32 and 21 tokens per tile)
    fields = {(p.index, p.field) for p in st.patches}
    assert fields == {(0, "m"), (1, "m"), (2, "m"), (3, "m")}
    for p in st.patches:
        fmt = isa.op_format(insns[p.index].op)
        assert p.word == fmt.field_offset(p.field) // 4
        assert "seq" in p.expr
    assert [g.index for g in st.guards] == [1, 3]
    # the static stream is the worst case: every tile full
    assert [i["m"] for i in insns] == [32, 8, 21, 19]


def test_patched_stream_disables_tiles_past_the_trip_count(mlp):
    cm, _ = mlp
    rt = cm.runtime()
    name = next(iter(cm.manifest.streams))
    for seq, live in ((1, [1, 0, 1, 0]), (32, [1, 0, 1, 1]), (33, [1, 1, 1, 1])):
        insns = isa.decode_stream(bytes(rt.patched_stream(name, {"seq": seq})))
        assert [int(i.op != "nop") for i in insns] == live
        assert sum(i["m"] for i in insns if i.op == "mvm" and i["n"] == 48) == seq


def test_listing_reassembles_to_the_stream(mlp):
    cm, _ = mlp
    (st,) = cm.manifest.streams.values()
    listing = cm._read(st.asm).decode()
    assert "m={min(seq, 32)}" in listing and "if {" in listing
    assert asm.assemble(listing) == cm._read(st.file)


def test_direct_register_mode_matches_aux_mode(mlp):
    cm, ref = mlp
    rng = np.random.default_rng(1)
    aux, direct = cm.runtime(), cm.runtime(mode="direct")
    for n in (1, 33, 40):
        x = rng.standard_normal((n, 32)).astype(np.float32)
        a = aux.run("forward", x)[0]
        d = direct.run("forward", x)[0]
        np.testing.assert_array_equal(a, d)
    assert direct.hal.stats()["host_reg_accesses"] > aux.hal.stats()["host_reg_accesses"]


@pytest.mark.parametrize("mode", ["aux", "direct"])
def test_serial_mode_runs_each_instruction_alone_with_the_same_results(mlp, mode):
    cm, _ = mlp
    x = np.random.default_rng(2).standard_normal((33, 32)).astype(np.float32)
    normal, serial = cm.runtime(mode=mode), cm.runtime(mode=mode, serial=True)
    np.testing.assert_array_equal(normal.run("forward", x)[0], serial.run("forward", x)[0])
    name = next(iter(cm.manifest.streams))
    assert all(i.wait == frozenset(isa.WAIT_UNITS) for i in isa.decode_stream(bytes(serial.patched_stream(
        name, {"seq": 33}))))
    recs = [r for r in serial.hal.records if r.unit in isa.WAIT_UNITS]
    assert len(recs) >= 2
    for i in range(1, len(recs)):   # each starts after every earlier one has completed
        assert recs[i].start >= max(r.done for r in recs[:i])


def test_report_lists_every_op_with_placement_and_estimates(mlp):
    cm, _ = mlp
    text = cm.report()
    assert "dev.mvm" in text and "device" in text and "dev.to_device" in text
    assert "est cycles" in text and "weights" in text and "activations" in text
    assert "stream forward.0: 4 instructions, 4 patched fields, 2 guarded entries" in text
