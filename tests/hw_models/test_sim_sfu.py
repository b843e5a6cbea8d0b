"""SFU ops: bit-exact against the doc/isa.md formulas (isa_reference.py) and
within stated tolerances of torch."""
from __future__ import annotations

import numpy as np
import pytest

import isa_reference as ref
from dlavm.target import isa, pwl

torch = pytest.importorskip("torch")
F16, F32 = np.float16, np.float32
COLS = [1, 7, 8, 9, 127, 128, 129, 300]


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=F32))


@pytest.mark.parametrize("cols", COLS)
def test_rmsnorm(dev, rng, cols):
    rows, eps = 3, 1e-5
    x = rng.standard_normal((rows, cols)).astype(F16)
    g = rng.standard_normal(cols).astype(F16)
    dst = dev.alloc(x.nbytes)
    dev.run(isa.make("rmsnorm", src=dev.put(x), dst=dst, gamma=dev.put(g), rows=rows, cols=cols, eps=eps))
    y = dev.get(dst, F16, (rows, cols))
    x32, g32 = x.astype(F32), g.astype(F32)
    mean = (ref.tree_sum(x32 * x32) / F32(cols)).astype(F32)
    inv = (F32(1) / np.sqrt((mean + F32(eps)).astype(F32))).astype(F32)
    np.testing.assert_array_equal(y, ((x32 * inv[:, None]).astype(F32) * g32).astype(F16))
    expect = torch.nn.functional.rms_norm(_t(x), (cols,), _t(g), eps=eps).numpy()
    np.testing.assert_allclose(y.astype(F32), expect, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("cols", COLS)
def test_layernorm(dev, rng, cols):
    rows, eps = 2, 1e-5
    x = (rng.standard_normal((rows, cols)) * 3 + 1).astype(F16)
    g, b = rng.standard_normal(cols).astype(F16), rng.standard_normal(cols).astype(F16)
    dst = dev.alloc(x.nbytes)
    dev.run(isa.make("layernorm", src=dev.put(x), dst=dst, gamma=dev.put(g), beta=dev.put(b),
                     rows=rows, cols=cols, eps=eps))
    y = dev.get(dst, F16, (rows, cols))
    x32 = x.astype(F32)
    mean = (ref.tree_sum(x32) / F32(cols)).astype(F32)
    dl = (x32 - mean[:, None]).astype(F32)
    var = (ref.tree_sum((dl * dl).astype(F32)) / F32(cols)).astype(F32)
    inv = (F32(1) / np.sqrt((var + F32(eps)).astype(F32))).astype(F32)
    expect_bits = ((((dl * inv[:, None]).astype(F32) * g.astype(F32)).astype(F32)) + b.astype(F32)).astype(F16)
    np.testing.assert_array_equal(y, expect_bits)
    expect = torch.nn.functional.layer_norm(_t(x), (cols,), _t(g), _t(b), eps=eps).numpy()
    np.testing.assert_allclose(y.astype(F32), expect, rtol=3e-3, atol=3e-3)


def _softmax_ref(x32, valid):
    tab = pwl.table("exp")
    mx = np.where(valid, x32, -np.inf).max(axis=1).astype(F32)
    e = ref.pwl((x32 - mx[:, None]).astype(F32), tab.entries, tab.nseg, tab.lo_f32, tab.inv_step)
    e = np.where(valid, e, F32(0))
    return (e / ref.tree_sum(e)[:, None]).astype(F32).astype(F16)


@pytest.mark.parametrize("cols", [1, 8, 9, 129])
@pytest.mark.parametrize("in_fp32", [False, True])
@pytest.mark.parametrize("causal,m,pos0", [(False, 1, 0), (True, 3, 0), (True, 2, 4)])
def test_softmax(dev, rng, cols, in_fp32, causal, m, pos0):
    heads = 2
    rows = heads * m
    if causal and pos0 + m > cols:
        pos0 = max(0, cols - m)
    x = (rng.standard_normal((rows, cols)) * 4).astype(F32 if in_fp32 else F16)
    dst = dev.alloc(rows * cols * 2)
    dev.run(isa.make("softmax", src=dev.put(x), dst=dst, rows=rows, cols=cols, m=m, pos0=pos0,
                     causal=causal, in_fp32=in_fp32))
    y = dev.get(dst, F16, (rows, cols))
    qpos = pos0 + np.arange(rows) % m
    valid = (np.arange(cols)[None, :] <= qpos[:, None]) if causal else np.ones((rows, cols), bool)
    np.testing.assert_array_equal(y, _softmax_ref(x.astype(F32), valid))
    expect = torch.softmax(_t(x).masked_fill(~torch.from_numpy(valid), float("-inf")), dim=1).numpy()
    np.testing.assert_allclose(y.astype(F32), expect, rtol=0, atol=2e-3)


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("count", [1, 8, 9, 1000])
def test_eltwise(dev, rng, op, count):
    a, b = rng.standard_normal(count).astype(F16), rng.standard_normal(count).astype(F16)
    dst = dev.alloc(count * 2)
    dev.run(isa.make("eltwise", fn=op, a=dev.put(a), b=dev.put(b), dst=dst, count=count))
    expect = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](a.astype(F32), b.astype(F32))
    np.testing.assert_array_equal(dev.get(dst, F16, (count,)), expect.astype(F16))
    # torch's fp16 elementwise ops compute in fp32 and round once: identical.
    top = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[op]
    np.testing.assert_array_equal(dev.get(dst, F16, (count,)),
                                  top(torch.from_numpy(a), torch.from_numpy(b)).numpy())


def _act(dev, tab, x):
    """``act`` of fp16 ``x`` through table ``tab`` on the simulator, checked bit for bit against the
    doc/isa.md formula; the fp16 result."""
    dst = dev.alloc(x.nbytes)
    ta = dev.put(np.frombuffer(tab.to_bytes(), dtype=np.uint8))
    dev.run(isa.make("act", src=dev.put(x), dst=dst, table=ta, count=x.size, nseg=tab.nseg,
                     lo=tab.lo_f32, inv_step=tab.inv_step))
    y = dev.get(dst, F16, x.shape)
    np.testing.assert_array_equal(y, ref.pwl(x.astype(F32), tab.entries, tab.nseg, tab.lo_f32,
                                             tab.inv_step).astype(F16))
    return y


@pytest.mark.parametrize("name,tfn,atol", [
    ("silu", torch.nn.functional.silu, 4e-3),
    ("gelu", torch.nn.functional.gelu, 4e-3),
    ("sigmoid", torch.sigmoid, 2e-3),
    ("exp", torch.exp, 2e-3),
])
def test_act_tables(dev, rng, name, tfn, atol):
    tab = pwl.table(name)
    x = (rng.standard_normal(700) * 5).astype(F16)
    if name == "exp":
        x = -np.abs(x)
    # Both exterior entries and both edges; the exp table serves x <= 0 only.
    x[:4] = [tab.lo - 3, tab.hi + 3 if name != "exp" else tab.lo - 30, tab.lo, tab.hi]
    y = _act(dev, tab, x)
    expect = tfn(_t(x)).numpy()
    np.testing.assert_allclose(y.astype(F32), expect, rtol=2e-3, atol=atol)


@pytest.mark.parametrize("name,at_minus_inf,at_plus_inf", [
    ("silu", 0.0, np.inf), ("gelu", 0.0, np.inf), ("sigmoid", 0.0, 1.0), ("exp", 0.0, None),
])
def test_act_tables_at_infinity(dev, name, at_minus_inf, at_plus_inf):
    # A flat exterior entry is a constant for +-inf too (doc/isa.md 7.6): exp(-inf) = 0, which a softmax
    # over a score masked with -inf (or a float32 mask the fp16 conversion makes -inf) needs. NaN propagates.
    tab = pwl.table(name)
    y = _act(dev, tab, np.array([-np.inf, np.inf, np.nan, tab.lo - 1], dtype=F16))
    assert y[0] == at_minus_inf and np.isnan(y[2])
    if at_plus_inf is not None:
        assert y[1] == at_plus_inf


def test_softmax_of_a_masked_score_is_zero_there(dev):
    # HF attention masks add finfo(float32).min, which is -inf in fp16: those columns get 0, not NaN
    x = np.array([[0.5, -np.inf, 1.0, -np.inf], [2.0, 1.0, -np.inf, 0.0]], dtype=F16)
    dst = dev.alloc(x.nbytes)
    dev.run(isa.make("softmax", src=dev.put(x), dst=dst, rows=2, cols=4, m=1, pos0=0, causal=False,
                     in_fp32=False))
    y = dev.get(dst, F16, x.shape)
    np.testing.assert_array_equal(y, _softmax_ref(x.astype(F32), np.ones(x.shape, bool)))
    assert not np.isnan(y).any() and (y[x == -np.inf] == 0).all()
    np.testing.assert_allclose(y.astype(F32), torch.softmax(_t(x), -1).numpy(), atol=2e-3)


def _rope_table(positions, d, theta=10000.0):
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(positions)[:, None] * inv[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(F32)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("pos0,m", [(0, 1), (3, 4), (255, 1)])
def test_rope(dev, rng, interleaved, pos0, m):
    heads, d = 3, 16
    x = rng.standard_normal((m, heads, d)).astype(F16)
    tab = _rope_table(dev.t.max_seq_len, d)
    dst = dev.alloc(x.nbytes)
    dev.run(isa.make("rope", src=dev.put(x), dst=dst, table=dev.put(tab, "ddr"), m=m, heads=heads, d=d,
                     pos0=pos0, interleaved=interleaved))
    y = dev.get(dst, F16, x.shape)
    c = tab[pos0:pos0 + m, None, : d // 2]
    s = tab[pos0:pos0 + m, None, d // 2:]
    x32 = x.astype(F32)
    x1, x2 = (x32[..., 0::2], x32[..., 1::2]) if interleaved else (x32[..., : d // 2], x32[..., d // 2:])
    y1 = ((x1 * c).astype(F32) - (x2 * s).astype(F32)).astype(F32)
    y2 = ((x2 * c).astype(F32) + (x1 * s).astype(F32)).astype(F32)
    e = np.empty_like(x32)
    if interleaved:
        e[..., 0::2], e[..., 1::2] = y1, y2
    else:
        e[..., : d // 2], e[..., d // 2:] = y1, y2
    np.testing.assert_array_equal(y, e.astype(F16))
    # HF Llama rotate_half formulation in float64 (halves layout only).
    if not interleaved:
        xf = x.astype(np.float64)
        cf = np.concatenate([c, c], axis=-1).astype(np.float64)
        sf = np.concatenate([s, s], axis=-1).astype(np.float64)
        rot = np.concatenate([-xf[..., d // 2:], xf[..., : d // 2]], axis=-1)
        np.testing.assert_allclose(y.astype(np.float64), xf * cf + rot * sf, rtol=2e-3, atol=2e-3)
