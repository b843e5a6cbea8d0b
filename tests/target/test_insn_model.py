"""The shared instruction models (dlavm/target/insn_model.py): complete, symbolic-safe, and the only
cost model the compiler's consumers use. (The accesses themselves are checked against the bytes the
simulator touches in tests/hw_models/test_insn_conformance.py.)"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from dlavm import sym
from dlavm.backend.report import estimate_cycles
from dlavm.target import get_target, insn_model, isa
from dlavm.task.deps import operand_ranges
from dlavm.task.ir import Emit

TINY = get_target("tiny")


def test_every_opcode_has_exactly_one_model():
    assert set(insn_model.INSN_MODELS) == {o.mnemonic for o in isa.OPS}


@pytest.mark.parametrize("call", [
    lambda: insn_model.accesses("matmul", {}, TINY),
    lambda: insn_model.cycles("matmul", {}, TINY),
    lambda: insn_model.latency("matmul", TINY),
    lambda: insn_model.macs("matmul", {}),
    lambda: estimate_cycles(Emit("matmul", {}, "mvm"), TINY),
])
def test_an_unknown_instruction_is_an_error_never_zero(call):
    with pytest.raises(insn_model.InsnModelError, match="no instruction model for 'matmul'"):
        call()


def test_latency_is_the_units_target_field():
    for op in isa.OPS:
        expect = 0 if op.unit == "seq" else getattr(TINY, f"{op.unit}_latency")
        assert insn_model.latency(op.mnemonic, TINY) == expect


SEQ = sym.Var("seq", 1, 200)

#: Instructions with symbolic fields as lowering writes them (dynamic token count, KV length, position).
SYMBOLIC = [
    ("mvm", dict(wfmt="int4", res="add", x=0, w=1 << 20, wscale=2 << 20, out=3 << 20, resid=4 << 20,
                 m=sym.smin(sym.const(128), SEQ), k=200, n=40)),
    ("kv_append", dict(src=0, dst=1 << 20, m=SEQ, kv_heads=2, d=32, pos=sym.const(200) - SEQ,
                       head_stride=200 * 64, capacity=200)),
    ("mat_qk", dict(out_fp32=True, q=0, kc=1 << 20, out=2 << 20, m=SEQ, heads=4, kv_heads=2, l=SEQ, d=32,
                    k_stride=200 * 64)),
    ("softmax", dict(in_fp32=True, causal=True, src=0, dst=1 << 20, rows=SEQ * 4, cols=SEQ, m=SEQ, pos0=0)),
    ("rope", dict(src=0, dst=1 << 20, table=2 << 20, m=SEQ, heads=2, d=32, pos0=sym.const(200) - SEQ)),
    ("dma", dict(src=SEQ * 64, dst=1 << 20, row_bytes=64, rows=SEQ, src_stride=128, dst_stride=64)),
]


@pytest.mark.parametrize("op,fields", SYMBOLIC, ids=[s[0] for s in SYMBOLIC])
@settings(max_examples=25, deadline=None)
@given(seq=st.one_of(st.sampled_from([1, 127, 128, 129, 200]), st.integers(1, 200)))
def test_symbolic_accesses_evaluate_to_the_concrete_ones_and_stay_in_their_bounds(op, fields, seq):
    """The formulas work on sym fields: evaluated at a size they equal the int formulas at that size,
    and the wait-bit analysis's interval for the symbolic operand holds every byte of the concrete one."""
    env = {"seq": seq}

    def at(v):
        return sym.evaluate(v, env) if isinstance(v, sym.Expr) else v

    concrete = insn_model.accesses(op, {k: at(v) for k, v in fields.items()}, TINY)
    symbolic = insn_model.accesses(op, fields, TINY)
    assert [(a.name, a.write) for a in symbolic] == [(a.name, a.write) for a in concrete]
    for s, c in zip(symbolic, concrete):
        assert (at(s.addr), at(s.row_bytes), at(s.rows), at(s.stride)) == (c.addr, c.row_bytes, c.rows, c.stride)
    reads, writes = operand_ranges(Emit(op, fields, isa.op_format(op).unit), TINY)
    for c in concrete:
        if c.nbytes:
            lo, hi = c.addr, c.addr + c.span
            assert any(a <= lo and hi <= b for a, b in (writes if c.write else reads)), (op, c.name)


def test_estimate_is_the_model_cycles_or_the_memory_time():
    hbm, sram = TINY.figures.region("hbm").base, TINY.figures.region("sram").base
    # Compute-bound: operands in SRAM move no channel bytes.
    f = dict(wfmt="fp16", x=sram, w=sram + 65536, out=sram + 2 * 65536, m=4, k=64, n=64)
    # (its tiles, after the first tile's fill: weights on chip, the pipeline in and out)
    assert estimate_cycles(Emit("mvm", f, "mvm"), TINY) == insn_model.cycles("mvm", f, TINY) \
        == 4 * 4 * 8 + 2 * TINY.mvm_latency
    # Memory-bound: a DMA of 1 MiB HBM -> HBM moves 2 MiB over all channels.
    d = dict(src=hbm, dst=hbm + (1 << 21), row_bytes=1 << 20, rows=1)
    assert estimate_cycles(Emit("dma", d, "dma"), TINY) == (2 << 20) // TINY.figures.hbm_bytes_per_cycle
    # Symbolic sizes are priced at their upper bound.
    fs = dict(f, m=sym.smin(sym.const(4), SEQ))
    assert estimate_cycles(Emit("mvm", fs, "mvm"), TINY) == estimate_cycles(Emit("mvm", f, "mvm"), TINY)
