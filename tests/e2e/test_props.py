"""Property: for random model sizes, buffer limits and dynamic sizes, every instruction's operands
stay inside the buffers the compiler planned, and the simulator (address, uninitialised-read and
hazard checks on) runs the program."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from dlavm import sym
from dlavm.target import get_target, insn_model
from dlavm.task import flatten, specialize, unroll

from dlavm.compiler import compile as dlavm_compile
from tests.e2e import device_graphs as G


def _inside(a, n, buffers):
    return any(b <= a and a + n <= b + size for b, size in buffers)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bound=st.integers(2, 40), act_kib=st.sampled_from([1, 2, 4, 64]), inter=st.sampled_from([32, 48, 96]),
       data=st.data())
def test_operands_stay_inside_planned_buffers(bound, act_kib, inter, data):
    target = get_target("tiny").replace(name=f"tiny-act{act_kib}k", act_buffer_bytes=act_kib * 1024)
    seq = sym.Var("seq", 1, bound)
    mod, ref, _ = G.llama_block(np.random.default_rng(bound), seq, 128, I=inter)
    cm = dlavm_compile(mod, target=target)
    buffers = [(b.addr, b.size) for pool in cm.manifest.memory.values() for b in pool.buffers.values()]
    n = data.draw(st.integers(1, bound), label="seq")
    for prog in cm.build.programs.values():
        for e, guard in flatten(unroll(specialize(prog, {"seq": n}), max_trip=None)):
            assert guard is None
            fields = {k: sym.as_expr(v).value if isinstance(v, sym.Expr) else v for k, v in e.fields.items()}
            for acc in insn_model.accesses(e.op, fields, target):   # the operands the instruction touches
                a, size = acc.addr, acc.span
                if size:
                    assert _inside(a, size, buffers), f"{e.op} {e.comment}: [{a:#x}, +{size}) outside every buffer"
    ids = np.random.default_rng(n).integers(0, 50, n)
    y = cm.run(ids)[0]
    np.testing.assert_allclose(y, ref(ids), atol=2e-3 * np.abs(ref(ids)).max() + 1e-3)
