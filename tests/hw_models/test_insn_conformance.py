"""Declared accesses vs bytes touched: for every opcode, at generated fields including edge sizes.

``dlavm.target.insn_model.accesses`` declares which bytes an instruction reads and writes; the
compiler's wait bits, the report's memory time and the simulator's timing and bounds checks all
rely on it. Here each instruction is *executed* by the simulator's unit (``hw_models/units``,
written from doc/isa.md independently of the model) with the memory model recording every byte
range the unit read and wrote, and the two byte sets must be equal: a declared byte the unit
never touches would cost wait bits and bandwidth for nothing, a touched byte not declared would
be a race the wait bits miss. Equality (not containment) holds for every unit: none of them skips
a byte it declares (e.g. causal ``softmax`` reads the masked scores too, as the hardware streams
whole rows).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dlavm.target import get_target, insn_model, isa
from hw_models import Simulator
from hw_models.units import UNIT_OPS, UnitOp

TARGET = get_target("tiny")
#: The int4 operand sizes depend on the group size: check a second one.
TARGETS = (TARGET, TARGET.replace(name="tiny-g64", int4_group=64))
#: Each address field of an instruction gets its own 1 MiB slot of HBM, at a generated offset.
SLOT = 1 << 20
ALIGN = 32


def _merge(ranges) -> list[tuple[int, int]]:
    """The union of ``[start, end)`` ranges as sorted disjoint ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [tuple(r) for r in out]


def _addresses(draw, op: str) -> dict:
    hbm = TARGET.figures.region("hbm").base
    names = [f.name for f in isa.op_format(op).fields if f.kind == "addr"]
    return {n: hbm + i * SLOT + draw(st.integers(0, 64)) * ALIGN for i, n in enumerate(names)}


def _aligned_at_least(draw, nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN + draw(st.integers(0, 3)) * ALIGN


EDGE_K = (1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200, 256)   # around tin, int8_block, int4_group
EDGE_ELEMS = st.one_of(st.sampled_from((1, 7, 8, 9, 127, 128, 129, 255, 256, 257)), st.integers(1, 600))


@st.composite
def instructions(draw, op: str) -> isa.Instruction:
    f = _addresses(draw, op)
    if op == "dma":
        f.update(row_bytes=draw(st.integers(0, 16)) * ALIGN, rows=draw(st.integers(0, 6)),
                 src_stride=draw(st.integers(0, 40)) * ALIGN, dst_stride=draw(st.integers(0, 40)) * ALIGN)
    elif op == "mvm":
        k = draw(st.sampled_from(EDGE_K))
        argmax = draw(st.booleans())
        f.update(wfmt=draw(st.sampled_from(TARGET.weight_formats)), affine=draw(st.booleans()),
                 res=draw(st.sampled_from(isa.RESIDUAL_MODES)), relu=draw(st.booleans()), argmax=argmax,
                 out_fp32=False if argmax else draw(st.booleans()),
                 m=draw(st.integers(1, 5)), k=k, n=draw(st.sampled_from((1, 7, 8, 9, 33))))
    elif op in ("mat_qk", "mat_pv"):
        hkv, l, d = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.sampled_from((16, 32, 48)))
        stride = _aligned_at_least(draw, l * d * 2)
        f.update(m=draw(st.integers(1, 3)), heads=hkv * draw(st.integers(1, 2)), kv_heads=hkv, l=l, d=d)
        if op == "mat_qk":
            f.update(k_stride=stride, out_fp32=draw(st.booleans()), scale=0.125)
        else:
            f.update(v_stride=stride)
    elif op in ("rmsnorm", "layernorm"):
        f.update(rows=draw(st.integers(1, 4)), cols=draw(EDGE_ELEMS), eps=1e-5)
    elif op == "softmax":
        f.update(in_fp32=draw(st.booleans()), causal=draw(st.booleans()), rows=draw(st.integers(1, 6)),
                 cols=draw(EDGE_ELEMS), m=draw(st.integers(1, 3)), pos0=draw(st.integers(0, 300)))
    elif op == "eltwise":
        count = draw(EDGE_ELEMS)  # period: no broadcast (0), or a row of b repeated (a divisor of count)
        period = draw(st.sampled_from([0] + [p for p in range(1, count + 1) if count % p == 0]))
        f.update(fn=draw(st.sampled_from(isa.ELTWISE_OPS)), count=count, period=period)
    elif op == "act":
        f.update(count=draw(EDGE_ELEMS), nseg=draw(st.integers(1, 40)), lo=-4.0, inv_step=2.0)
    elif op == "rope":
        m = draw(st.integers(1, 4))
        f.update(interleaved=draw(st.booleans()), m=m, heads=draw(st.integers(1, 3)),
                 d=draw(st.sampled_from((8, 16, 24, 64))), pos0=draw(st.integers(0, TARGET.max_seq_len - m)))
    elif op == "kv_append":
        m, hkv, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.sampled_from((16, 32)))
        cap = draw(st.integers(m, 64))
        f.update(m=m, kv_heads=hkv, d=d, pos=draw(st.integers(0, cap - m)), capacity=cap,
                 head_stride=_aligned_at_least(draw, cap * d * 2))
    elif op not in ("nop", "fence"):
        raise AssertionError(f"no field generator for {op}: add one so its accesses are checked")
    return isa.make(op, **f)


def _declared(insn: isa.Instruction, target=TARGET) -> tuple[list, list]:
    reads, writes = [], []
    for a in insn_model.accesses(insn.op, insn.fields, target):
        (writes if a.write else reads).extend(a.row_ranges())
    return _merge(reads), _merge(writes)


def _touched(insn: isa.Instruction, target=TARGET) -> tuple[list, list]:
    sim = Simulator(target, check_uninit=False, check_hazards=False, trace=False, record_accesses=True)
    sim.issue(insn)
    [(_, op, reads, writes)] = sim.touched
    assert op == insn.op
    return _merge(reads), _merge(writes)


@pytest.mark.parametrize("op", [o.mnemonic for o in isa.OPS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_declared_accesses_are_the_bytes_the_unit_touches(op, data):
    insn = data.draw(instructions(op), label=op)
    target = data.draw(st.sampled_from(TARGETS), label="target")
    declared_reads, declared_writes = _declared(insn, target)
    reads, writes = _touched(insn, target)
    assert reads == declared_reads, f"{op} on {target.name}: read {reads}, declared {declared_reads}"
    assert writes == declared_writes, f"{op} on {target.name}: wrote {writes}, declared {declared_writes}"


def test_a_unit_touching_an_undeclared_byte_is_caught(monkeypatch):
    """The comparison can fail: an eltwise unit that reads 16 values past ``a`` differs from its declaration."""
    insn = isa.make("eltwise", fn="add", a=0, b=SLOT, dst=2 * SLOT, count=16)
    honest = UNIT_OPS["eltwise"]

    def overreading(i, mem, t):
        mem.read(i["a"] + i["count"] * 2, 32, "eltwise.a (past the end)")
        return honest.execute(i, mem, t)

    assert _touched(insn) == _declared(insn)
    monkeypatch.setitem(UNIT_OPS, "eltwise", UnitOp("eltwise", honest.check, overreading))
    reads, writes = _touched(insn)
    assert writes == _declared(insn)[1] and reads != _declared(insn)[0]


def test_recording_is_off_by_default():
    sim = Simulator(TARGET, check_uninit=False)
    sim.issue(isa.make("eltwise", fn="add", a=0, b=SLOT, dst=2 * SLOT, count=16))
    assert sim.touched == []
    with pytest.raises(RuntimeError, match="without start_recording"):
        sim.mem.stop_recording()   # the memory model was never recording
