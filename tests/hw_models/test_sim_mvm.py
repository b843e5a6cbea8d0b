"""MVM engine: every weight format and epilogue, bit-exact against doc/isa.md
(isa_reference.py) and within stated tolerance of float64 / torch math."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isa_reference as ref
from sim_device import Device
from dlavm.target import isa, layout
from hw_models import IllegalInstructionError

F16, F32 = np.float16, np.float32

# tiny: Tin = 16, Tout = 8, int4 group = 128; K/N edges 1, T-1, T, T+1, group multiples.
K_EDGES = [1, 15, 16, 17, 128, 256, 300]
N_EDGES = [1, 7, 8, 9, 33]


def _weights(dev, fmt, n, k, rng):
    w = rng.standard_normal((n, k)).astype(F32) * 0.5
    g = dev.t.int4_group
    if fmt == "int4":
        q, s = layout.quantize_int4(w, g)
        return q, s, dev.put(layout.pack_int4(q, g), "hbm"), dev.put(s, "hbm")
    if fmt == "int8":
        q, s = layout.quantize_int8(w)
        return q, s, dev.put(q, "hbm"), dev.put(s, "hbm")
    wf = w.astype(F16)
    return wf, None, dev.put(wf, "hbm"), 0


def _dequant(fmt, q, s, g):
    if fmt == "int4":
        return q.astype(np.float64) * np.repeat(s.astype(np.float64), g, axis=1)[:, : q.shape[1]]
    if fmt == "int8":
        return q.astype(np.float64) * s.astype(np.float64)[:, None]
    return q.astype(np.float64)


@pytest.mark.parametrize("fmt", ["int4", "int8", "fp16"])
@pytest.mark.parametrize("k", K_EDGES)
def test_mvm_plain_bit_exact(dev, rng, fmt, k):
    for m, n in ((1, N_EDGES[k % len(N_EDGES)]), (3, 9)):
        x = rng.standard_normal((m, k)).astype(F16)
        q, s, wa, sa = _weights(dev, fmt, n, k, rng)
        xa, out = dev.put(x), dev.alloc(m * n * 2)
        dev.run(isa.make("mvm", wfmt=fmt, x=xa, w=wa, wscale=sa, out=out, m=m, k=k, n=n))
        y = dev.get(out, F16, (m, n))
        expect = ref.mvm_acc(fmt, x, q, s, dev.t.int4_group).astype(F16)
        np.testing.assert_array_equal(y, expect)
        # Against float64 math: fp32 accumulation + one fp16 rounding.
        exact = x.astype(np.float64) @ _dequant(fmt, q, s, dev.t.int4_group).T
        np.testing.assert_allclose(y.astype(np.float64), exact, rtol=2e-3, atol=2e-3 * np.sqrt(k))


@pytest.mark.parametrize("fmt", ["int4", "int8", "fp16"])
@pytest.mark.parametrize("res", ["none", "add", "mul"])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_mvm_epilogue(dev, rng, fmt, res, affine, relu):
    m, k, n = 2, 130, 17
    x = rng.standard_normal((m, k)).astype(F16)
    q, s, wa, sa = _weights(dev, fmt, n, k, rng)
    aff = rng.standard_normal((2, n)).astype(F16)
    r = rng.standard_normal((m, n)).astype(F16)
    out = dev.alloc(m * n * 4)
    dev.run(isa.make("mvm", wfmt=fmt, x=dev.put(x), w=wa, wscale=sa, out=out, m=m, k=k, n=n,
                     affine=affine, aff=dev.put(aff), res=res, resid=dev.put(r), relu=relu, out_fp32=True))
    y = ref.mvm_acc(fmt, x, q, s, 128)
    if affine:
        y = ((y * aff[0].astype(F32)).astype(F32) + aff[1].astype(F32)).astype(F32)
    if res == "add":
        y = (y + r.astype(F32)).astype(F32)
    elif res == "mul":
        y = (y * r.astype(F32)).astype(F32)
    if relu:
        y = np.where(y < 0, F32(0), y)
    np.testing.assert_array_equal(dev.get(out, F32, (m, n)), y)


@pytest.mark.parametrize("n", [1, 8, 9, 100])
def test_mvm_argmax(dev, rng, n):
    m, k = 3, 64
    x = rng.standard_normal((m, k)).astype(F16)
    q, s, wa, sa = _weights(dev, "int8", n, k, rng)
    out = dev.alloc(m * 8)
    dev.run(isa.make("mvm", wfmt="int8", argmax=True, x=dev.put(x), w=wa, wscale=sa, out=out, m=m, k=k, n=n))
    rec = dev.get(out, np.uint32, (m, 2))
    y = ref.mvm_acc("int8", x, q, s, 128)
    np.testing.assert_array_equal(rec[:, 0], np.argmax(y, axis=1))
    np.testing.assert_array_equal(rec[:, 1].view(F32), y.max(axis=1))
    # The last row's result is also in the RESULT registers (greedy decode reads them).
    assert dev.sim.read_reg(isa.reg("RESULT_IDX")) == int(np.argmax(y[-1]))
    assert dev.sim.read_reg(isa.reg("RESULT_VAL")) == int(rec[-1, 1])


@pytest.mark.parametrize("fmt", ["int4", "int8", "fp16"])
def test_mvm_at_the_activation_buffer_limit(dev, rng, fmt):
    """K as large as the target's activation buffer allows (M=1), and one past it."""
    k, n = dev.t.act_buffer_bytes // 2, 9
    x = rng.standard_normal((1, k)).astype(F16)
    q, s, wa, sa = _weights(dev, fmt, n, k, rng)
    out = dev.alloc(n * 4)
    dev.run(isa.make("mvm", wfmt=fmt, x=dev.put(x, "ddr"), w=wa, wscale=sa, out=out, m=1, k=k, n=n, out_fp32=True))
    np.testing.assert_array_equal(dev.get(out, F32, (1, n)), ref.mvm_acc(fmt, x, q, s, dev.t.int4_group))
    with pytest.raises(IllegalInstructionError, match="exceeds act_buffer_bytes"):
        dev.sim.issue(isa.make("mvm", wfmt=fmt, x=0, w=wa, wscale=sa, out=out, m=1, k=k + 1, n=n))


def test_mvm_argmax_ties_pick_lowest_index(dev):
    k, n = 16, 12
    x = np.ones((1, k), dtype=F16)
    w = np.zeros((n, k), dtype=F16)
    w[[3, 7, 9]] = 1.0
    out = dev.alloc(8)
    dev.run(isa.make("mvm", wfmt="fp16", argmax=True, x=dev.put(x), w=dev.put(w, "hbm"), out=out, m=1, k=k, n=n))
    assert dev.get(out, np.uint32, (2,))[0] == 3


def test_mvm_int4_extreme_values_are_exact(dev):
    """Worst-case magnitudes: fp16 max activations x int4 -8 stay exact per group."""
    k, n, m = 256, 8, 1
    x = np.full((m, k), 65504.0, dtype=F16)
    x[0, ::3] = np.float16(6e-8)                 # subnormals mixed with the max
    q = np.full((n, k), -8, dtype=np.int8)
    q[:, 1::2] = 7
    s = np.full((n, 2), 1e-3, dtype=F16)
    out = dev.alloc(m * n * 4)
    dev.run(isa.make("mvm", wfmt="int4", x=dev.put(x), w=dev.put(layout.pack_int4(q, 128), "hbm"),
                     wscale=dev.put(s, "hbm"), out=out, m=m, k=k, n=n, out_fp32=True))
    np.testing.assert_array_equal(dev.get(out, F32, (m, n)), ref.mvm_acc("int4", x, q, s, 128))


def test_mvm_matches_torch_linear(dev, rng):
    torch = pytest.importorskip("torch")
    m, k, n = 4, 96, 40
    x = rng.standard_normal((m, k)).astype(F16)
    w = (rng.standard_normal((n, k)) * 0.1).astype(F16)
    b = rng.standard_normal(n).astype(F16)
    aff = np.stack([np.ones(n, F16), b])
    out = dev.alloc(m * n * 2)
    dev.run(isa.make("mvm", wfmt="fp16", affine=True, aff=dev.put(aff), x=dev.put(x), w=dev.put(w, "hbm"),
                     out=out, m=m, k=k, n=n, relu=True))
    expect = torch.relu(torch.nn.functional.linear(torch.from_numpy(x).float(), torch.from_numpy(w).float(),
                                                   torch.from_numpy(b).float())).half().numpy()
    np.testing.assert_allclose(dev.get(out, F16, (m, n)).astype(F32), expect.astype(F32), rtol=1e-3, atol=1e-3)



@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from(["int4", "int8", "fp16"]), m=st.integers(1, 4), k=st.integers(1, 400),
       n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_mvm_bit_exact_on_random_shapes(fmt, m, k, n, seed):
    rng = np.random.default_rng(seed)
    dev = Device("tiny")
    x = (rng.standard_normal((m, k)) * rng.choice([1e-3, 1.0, 100.0])).astype(F16)
    q, s, wa, sa = _weights(dev, fmt, n, k, rng)
    out = dev.alloc(m * n * 4)
    dev.run(isa.make("mvm", wfmt=fmt, x=dev.put(x), w=wa, wscale=sa, out=out, m=m, k=k, n=n, out_fp32=True))
    np.testing.assert_array_equal(dev.get(out, F32, (m, n)), ref.mvm_acc(fmt, x, q, s, dev.t.int4_group))
