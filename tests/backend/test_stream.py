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
    # one entry per tiled mvm (32 and 21 tokens per tile): a loop's body is stored once
    assert len(insns) == st.count == 2
    assert [(lp.start, lp.end) for lp in st.loops] == [(0, 1), (1, 2)]
    assert all("seq" in lp.trips for lp in st.loops)
    fields = {(p.index, p.field) for p in st.patches}
    assert {(0, "m"), (1, "m"), (0, "x"), (1, "out")} <= fields
    for p in st.patches:
        fmt = isa.op_format(insns[p.index].op)
        assert p.word == fmt.field_offset(p.field) // 4
    assert not st.guards
    # the static stream is the worst case: a full tile
    assert [i["m"] for i in insns] == [32, 21]


def _launched(rt, name, seq):
    """The mvm row counts of every entry each launch runs, as the device gets them."""
    s = rt.manifest.streams[name]
    data = rt.patched_stream(name, {"seq": seq})
    out = []
    for lo, hi, j, k in rt.launches(name, {"seq": seq}):
        if j is not None:
            lp = s.loops[j]
            rt.patched_stream(name, {"seq": seq}, {lp.var: k}, data=data, lo=lp.start, hi=lp.end)
        if hi > lo:
            out.append([i["m"] for i in isa.decode_stream(bytes(data[lo * 64:hi * 64]))])
    return out


def test_loops_are_relaunched_once_per_extra_trip(mlp):
    cm, _ = mlp
    rt = cm.runtime()
    name = next(iter(cm.manifest.streams))
    # one tile each: one launch of the whole stream, nothing re-patched
    assert _launched(rt, name, 1) == [[1, 1]]
    assert _launched(rt, name, 21) == [[21, 21]]
    # 22 tokens: the second mvm takes 2 tiles of <= 21 rows: its body again, at its second trip
    assert _launched(rt, name, 22) == [[22, 21], [1]]
    # 40 tokens: 2 tiles of <= 32, 2 of <= 21; the first loop's second trip continues into the second loop
    assert _launched(rt, name, 40) == [[32], [8, 21], [19]]


def test_stream_size_does_not_depend_on_the_bound():
    rng = np.random.default_rng(0)
    counts = []
    for hi in (40, 400, 4000):
        mod, _, _ = G.mlp(rng, sym.Var("seq", 1, hi), 128)
        (st,) = dlavm_compile(mod, target=TARGET).manifest.streams.values()
        counts.append((st.count, len(st.patches), len(st.loops)))
    assert counts[0] == counts[1] == counts[2]


def test_listing_reassembles_to_the_stream(mlp):
    cm, _ = mlp
    (st,) = cm.manifest.streams.values()
    listing = cm._read(st.asm).decode()
    assert "m={min(32, seq + -32*i" in listing.replace(" ", "") or "loop i" in listing
    assert "loop " in listing
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
    assert "stream forward.0: 2 instructions, " in text and ", 2 loops" in text
