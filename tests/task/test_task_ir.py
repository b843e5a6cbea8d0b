"""Task IR: printer, passes (fold, dce, unroll, specialise, unroll_to_bound) and wait-bit assignment."""
from __future__ import annotations

from dlavm import sym
from dlavm.target import get_target
from dlavm.task import (Emit, For, If, Program, assign_waits, dce, flatten, fold, format_program, simplify_loops,
                        specialize, unroll, unroll_to_bound)

SEQ = sym.Var("seq", 1, 40)


def emit(op="eltwise", unit="sfu", **fields):
    return Emit(op, dict(fields), unit)


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


# Operand ranges come from the instruction model (dlavm.target.insn_model) on the fields:
# eltwise reads a and b (count*2 bytes each) and writes dst; an fp16 mvm reads x (m*k*2) and
# w (n*k*2) and writes out (m*n*2); dma reads src and writes dst (rows*row_bytes).
TINY = get_target("tiny")


def elt(src, dst, nbytes):
    return Emit("eltwise", {"fn": "add", "a": src, "b": src, "dst": dst, "count": nbytes // 2}, "sfu")


def mvm(x, out, m=1, k=32, n=32, w=8192):
    return Emit("mvm", {"wfmt": "fp16", "x": x, "w": w, "out": out, "m": m, "k": k, "n": n}, "mvm")


def test_waits_cover_raw_same_unit_and_war_across_units():
    entries = [(elt(0, 64, 64), None),
               (elt(64, 128, 64), None),                      # RAW on the same unit
               (mvm(x=512, out=0), None),                     # WAR with the first sfu read
               (Emit("dma", {"src": 512, "dst": 1024, "row_bytes": 64, "rows": 1}, "dma"), None)]  # independent
    w = [e.wait for e, _ in assign_waits(entries, TINY)]
    assert w == [frozenset(), {"sfu"}, {"sfu"}, frozenset()]


def test_guarded_instruction_does_not_count_as_a_completion_point():
    entries = [(mvm(x=512, out=0), None),
               (elt(0, 64, 64), sym.lt(sym.const(1), SEQ)),
               (elt(0, 256, 64), None)]
    w = [e.wait for e, _ in assign_waits(entries, TINY)]
    assert w[1] == {"mvm"} and w[2] == {"mvm"}  # the guarded wait may become a nop


def test_symbolic_sizes_use_their_upper_bound_for_overlap():
    entries = [(mvm(x=4096, out=0, m=SEQ, k=16, n=1), None),     # writes [0, seq*2)
               (elt(64, 4096 + 2048, 16), None)]
    assert assign_waits(entries, TINY)[1][0].wait == {"mvm"}  # 0 + 80 bytes at seq=40 overlaps 64


def test_symbolic_address_counts_from_its_lower_to_its_upper_bound():
    # kv_append writes rows at dst + pos*d*2: with pos in [0, 39] the write may start anywhere
    # from dst to dst + 39*32, so a read of dst's first bytes must wait for it.
    pos = SEQ - 1
    kv = Emit("kv_append", {"src": 8192, "dst": 0, "m": 1, "kv_heads": 1, "d": 16, "pos": pos,
                            "head_stride": 2048, "capacity": 64}, "sfu")
    entries = [(kv, None), (mvm(x=0, out=16384, k=16), None)]
    assert assign_waits(entries, TINY)[1][0].wait == {"sfu"}
