"""Task IR: printer, passes (fold, dce, unroll, specialise, unroll_to_bound) and wait-bit assignment."""
from __future__ import annotations

from dlavm import sym
from dlavm.task import (Emit, For, If, Program, assign_waits, dce, flatten, fold, format_program, simplify_loops,
                        specialize, unroll, unroll_to_bound)

SEQ = sym.Var("seq", 1, 40)


def emit(op="eltwise", unit="sfu", reads=(), writes=(), **fields):
    return Emit(op, dict(fields), unit, tuple(reads), tuple(writes))


def tiled(extent=sym.ceildiv(SEQ, 16)):
    i = sym.Var("i", 0, 2)
    m = sym.smin(sym.const(16), SEQ - i * 16)
    return Program("p", (For(i, extent, (emit(count=m, a=i * 32),)),), (SEQ,))


def test_printer_shows_loops_dynamic_fields_and_waits():
    prog = Program("p", (For(sym.Var("i", 0, 2), sym.ceildiv(SEQ, 16),
                             (If(sym.lt(SEQ, 5), (emit(count=SEQ),), (emit(count=3),)),)),
                         Emit("mvm", {"m": 1}, "mvm", wait=frozenset({"sfu"}), comment="x")), (SEQ,))
    assert format_program(prog) == """\
program p(seq in [1, 40]) {
  for i in range({(seq + 15) // 16}) {
    if {seq < 5} {
      eltwise count={seq}
    } else {
      eltwise count=3
    }
  }
  mvm m=1 wait=sfu  # x
}"""


def test_fold_replaces_constant_branches_and_trivial_loops():
    i = sym.Var("i", 0, 0)
    prog = Program("p", (If(sym.const(1), (emit(count=sym.const(4)),), (emit(count=5),)),
                         For(i, sym.const(1), (emit(count=i + 2),)),
                         For(sym.Var("j", 0, 3), sym.const(0), (emit(count=1),))))
    body = fold(prog).body
    assert [s.fields["count"] for s in body] == [4, 2]
    assert all(isinstance(s.fields["count"], int) for s in body)


def test_dce_drops_empty_regions_and_bare_nops():
    prog = Program("p", (For(sym.Var("i", 0, 3), SEQ, ()), If(sym.lt(SEQ, 3), ()),
                         Emit("nop", {}, "seq"), Emit("nop", {}, "seq", wait=frozenset({"mvm"})), emit(count=1)))
    body = dce(prog).body
    assert [s.op for s in body] == ["nop", "eltwise"]


def test_unroll_constant_loops_only_up_to_max_trip():
    i = sym.Var("i", 0, 3)
    prog = Program("p", (For(i, sym.const(4), (emit(count=i + 1),)),))
    assert [s.fields["count"] for s in unroll(prog, max_trip=4).body] == [1, 2, 3, 4]
    assert isinstance(unroll(prog, max_trip=3).body[0], For)


def test_specialize_makes_a_static_program():
    p = specialize(tiled(), {"seq": 20})
    assert p.dims == ()
    counts = [s.fields["count"] for s, _ in flatten(unroll(p))]
    assert counts == [16, 4]


def test_unroll_to_bound_guards_iterations_past_the_trip_count():
    entries = flatten(unroll_to_bound(tiled()))
    assert len(entries) == 3  # ceil(40 / 16) iterations for every seq
    assert entries[0][1] is None  # the first iteration always runs (seq >= 1)
    for k, (e, g) in enumerate(entries[1:], start=1):
        for seq in (1, 16, 17, 33, 40):
            want = k < -(-seq // 16)
            assert bool(sym.evaluate(g, {"seq": seq})) == want
    assert sym.evaluate(entries[2][0].fields["count"], {"seq": 40}) == 8


def test_simplify_loops_is_idempotent():
    p = simplify_loops(tiled())
    assert format_program(simplify_loops(p)) == format_program(p)


def test_waits_cover_raw_same_unit_and_war_across_units():
    a, b, c = (0, 64), (64, 64), (128, 64)
    entries = [(emit("eltwise", "sfu", reads=[a], writes=[b]), None),
               (emit("eltwise", "sfu", reads=[b], writes=[c]), None),        # RAW on the same unit
               (emit("mvm", "mvm", reads=[(512, 64)], writes=[a]), None),    # WAR with the first sfu read
               (emit("dma", "dma", reads=[(512, 64)], writes=[(1024, 64)]), None)]  # independent
    w = [e.wait for e, _ in assign_waits(entries)]
    assert w == [frozenset(), {"sfu"}, {"sfu"}, frozenset()]


def test_guarded_instruction_does_not_count_as_a_completion_point():
    a, b = (0, 64), (64, 64)
    entries = [(emit("mvm", "mvm", writes=[a]), None),
               (emit("eltwise", "sfu", reads=[a], writes=[b]), sym.lt(sym.const(1), SEQ)),
               (emit("eltwise", "sfu", reads=[a], writes=[(256, 64)]), None)]
    w = [e.wait for e, _ in assign_waits(entries)]
    assert w[1] == {"mvm"} and w[2] == {"mvm"}  # the guarded wait may become a nop


def test_symbolic_sizes_use_their_upper_bound_for_overlap():
    entries = [(emit("mvm", "mvm", writes=[(0, SEQ * 2)]), None),
               (emit("eltwise", "sfu", reads=[(64, 16)], writes=[(4096, 16)]), None)]
    assert assign_waits(entries)[1][0].wait == {"mvm"}  # 0 + 80 bytes at seq=40 overlaps 64
