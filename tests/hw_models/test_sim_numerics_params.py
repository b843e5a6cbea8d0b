"""The numerics parameters are target fields the simulator honours: ``int4_group``, ``int8_block``,
``tree_lanes`` (doc/targets.md). Each variant is bit-exact against isa_reference.py run with the same
parameter, and differs from the default on the same bytes (so the field is really read)."""
from __future__ import annotations

import numpy as np
import pytest

import isa_reference as ref
from sim_device import Device
from dlavm.target import get_target, isa, layout

F16, F32 = np.float16, np.float32
TINY = get_target("tiny")


def _mvm(target, fmt, x, wbytes, sbytes, n):
    dev = Device(target)
    m, k = x.shape
    out = dev.alloc(m * n * 4)
    dev.run(isa.make("mvm", wfmt=fmt, x=dev.put(x), w=dev.put(wbytes, "hbm"),
                     wscale=dev.put(sbytes, "hbm") if sbytes is not None else 0, out=out, m=m, k=k, n=n,
                     out_fp32=True))
    return dev.get(out, F32, (m, n))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 100, 128, 200])
def test_int4_group_64_is_bit_exact_against_the_reference(rng, k):
    t64 = TINY.replace(name="tiny-g64", int4_group=64)
    m, n = 3, 9
    x = rng.standard_normal((m, k)).astype(F16)
    q, s = layout.quantize_int4(rng.standard_normal((n, k)).astype(F32), 64)
    packed = layout.pack_int4(q, 64)
    assert s.shape == (n, -(-k // 64))
    y = _mvm(t64, "int4", x, packed, s, n)
    np.testing.assert_array_equal(y, ref.mvm_acc("int4", x, q, s, 64))


def test_int4_group_changes_how_the_same_bytes_are_read(rng):
    """Two 64-wide groups with their own scales: read with 128-wide groups (one scale) they differ."""
    m, k, n = 2, 128, 8
    x = rng.standard_normal((m, k)).astype(F16)
    q, s = layout.quantize_int4(rng.standard_normal((n, k)).astype(F32), 64)
    packed = layout.pack_int4(q, 64)
    y64 = _mvm(TINY.replace(name="tiny-g64", int4_group=64), "int4", x, packed, s, n)
    y128 = _mvm(TINY, "int4", x, packed, s, n)
    assert not np.array_equal(y64, y128)


@pytest.mark.parametrize("block", [8, 32])
def test_int8_block_is_honoured(rng, block):
    m, k, n = 3, 200, 9
    x = (rng.standard_normal((m, k)) * 100).astype(F16)   # large partial sums: block roundings show
    q, s = layout.quantize_int8(rng.standard_normal((n, k)).astype(F32))
    y = _mvm(TINY.replace(name=f"tiny-b{block}", int8_block=block), "int8", x, q, s, n)
    np.testing.assert_array_equal(y, ref.mvm_acc("int8", x, q, s, 128, int8_block=block))
    assert not np.array_equal(y, ref.mvm_acc("int8", x, q, s, 128, int8_block=TINY.int8_block))


@pytest.mark.parametrize("lanes", [2, 16, 256])
def test_tree_lanes_are_honoured_by_mvm_and_sfu(rng, lanes):
    t = TINY.replace(name=f"tiny-tree{lanes}", tree_lanes=lanes)
    m, k, n = 2, 300, 5
    x = rng.standard_normal((m, k)).astype(F16)
    w = rng.standard_normal((n, k)).astype(F16)
    np.testing.assert_array_equal(_mvm(t, "fp16", x, w, None, n), ref.dot_f16(x, w, lanes))

    dev = Device(t)
    rows, cols, eps = 3, 300, 1e-5
    v = rng.standard_normal((rows, cols)).astype(F16)
    g = rng.standard_normal(cols).astype(F16)
    dst = dev.alloc(v.nbytes)
    dev.run(isa.make("rmsnorm", src=dev.put(v), dst=dst, gamma=dev.put(g), rows=rows, cols=cols, eps=eps))
    v32 = v.astype(F32)
    mean = (ref.tree_sum(v32 * v32, lanes) / F32(cols)).astype(F32)
    inv = (F32(1) / np.sqrt((mean + F32(eps)).astype(F32))).astype(F32)
    np.testing.assert_array_equal(dev.get(dst, F16, (rows, cols)),
                                  ((v32 * inv[:, None]).astype(F32) * g.astype(F32)).astype(F16))


def test_tree_lanes_change_the_rounding(rng):
    x = (rng.standard_normal((4, 1000)) * 1000).astype(F16)
    w = rng.standard_normal((6, 1000)).astype(F16)
    assert not np.array_equal(_mvm(TINY.replace(name="tiny-tree2", tree_lanes=2), "fp16", x, w, None, 6),
                              _mvm(TINY, "fp16", x, w, None, 6))
