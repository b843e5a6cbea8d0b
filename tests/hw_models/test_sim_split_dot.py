"""The MVM's fast integer-weight path: ``grouped_dot_split`` (exact fp32 BLAS on split activations,
weights laid out once) against straightforward references, and the memory's cache of laid-out
weights (``DeviceMemory.derived``) against writes that must drop it."""
from __future__ import annotations

import os
import time
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isa_reference as ref
from sim_device import Device
from dlavm.target import isa, layout
from hw_models import numerics
from hw_models.errors import UninitializedReadError
from hw_models.memory import DeviceMemory
from hw_models.numerics import (INT4_MAX, INT8_MAX, group_int4_weights, group_weights, grouped_dot_exact,
                                grouped_dot_split, split_bits, split_fp16)

F16, F32, F64 = np.float16, np.float32, np.float64


def integer_reference(x: np.ndarray, q: np.ndarray, group: int, scales) -> np.ndarray:
    """doc/isa.md 7.2 in integers: D_g = sum X_k q_k with X = x * 2**24 (exact int64), then
    fp32(D_g * 2**-24), times the scale, accumulated in fp32 from +0 in group order."""
    m, kp = x.shape
    n = q.shape[0]
    xi = (x.astype(F64) * 2.0 ** 24).astype(np.int64)
    qi = q.astype(np.int64)
    acc = np.zeros((m, n), dtype=F32)
    for g0 in range(0, kp, group):
        d = np.zeros((m, n), dtype=np.int64)
        for k in range(g0, g0 + group):   # one product at a time: no BLAS, no float
            d += xi[:, k:k + 1] * qi[None, :, k]
        dg = (d.astype(F64) * 2.0 ** -24).astype(F32)   # |D| < 2**53: the float64 is exact
        if scales is not None:
            dg = dg * scales[:, g0 // group].astype(F32)[None, :]
        acc = acc + dg
    return acc


def fp16_values(rng: np.random.Generator, shape, mode: str) -> np.ndarray:
    """fp16 activations: ``normal``; ``wide`` (every binade, subnormals, +-max, +-0); ``max``."""
    if mode == "normal":
        return rng.standard_normal(shape).astype(F16)
    if mode == "max":
        return (rng.choice([-1, 1], shape) * 65504.0).astype(F16)
    bits = rng.integers(0, 0x7C00, shape, dtype=np.uint16)          # every finite magnitude
    bits |= rng.integers(0, 2, shape, dtype=np.uint16) << 15
    x = bits.view(F16).copy()
    x.reshape(-1)[rng.integers(0, x.size, max(1, x.size // 8))] = F16(65504) * rng.choice([-1, 1])
    return x


def int_weights(rng, n, kp, qmax, mode):
    if mode == "max":
        return np.full((n, kp), -qmax, dtype=np.int16)
    return rng.integers(-qmax, qmax, (n, kp)).astype(np.int16)


def test_split_pieces_sum_to_x():
    """Every finite fp16 value is the exact sum of its float32 pieces."""
    x = np.arange(0, 0x7C00, dtype=np.uint16)
    x = np.concatenate([x, x | 0x8000]).view(F16)
    for bits in (11, 14):
        pieces = split_fp16(x, bits)
        assert all(p.dtype == F32 for p in pieces)
        total = np.zeros(x.shape, F64)
        for i, p in enumerate(pieces):
            units = np.abs(p.astype(F64)) * 2.0 ** (24 - i * bits)   # an integer below 2**bits
            np.testing.assert_array_equal(units, np.floor(units))
            assert units.max() < 2 ** bits
            total += p
        np.testing.assert_array_equal(total, x.astype(F64))


def test_split_bits_bound():
    # (2**b - 1) * qmax * group <= 2**24 < (2**(b+1) - 1) * qmax * group
    for qmax, group in [(INT4_MAX, 2), (INT4_MAX, 128), (INT4_MAX, 1024), (INT8_MAX, 1), (INT8_MAX, 64)]:
        b = split_bits(group, qmax)
        assert (2 ** b - 1) * qmax * group <= 2 ** 24 < (2 ** (b + 1) - 1) * qmax * group


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), m=st.sampled_from([1, 2, 5]), n=st.sampled_from([1, 3, 8, 33, 70]),
       fmt=st.sampled_from(["int4-g2", "int4-g16", "int4-g128", "int4-g1024", "int8-b1", "int8-b16", "int8-b64"]),
       groups=st.integers(1, 3), block=st.sampled_from([1, 4, 16, 512]),
       xmode=st.sampled_from(["normal", "wide", "max"]), qmode=st.sampled_from(["random", "max"]),
       scaled=st.booleans(), chunk=st.sampled_from([1, 4096, numerics.CHUNK_ELEMS]))
def test_split_dot_matches_integer_reference(seed, m, n, fmt, groups, block, xmode, qmode, scaled, chunk):
    """Bit for bit against integer arithmetic and against the float64 path, on random shapes, every
    fp16 binade, the extreme sums (|x| = 65504, |q| = qmax), blocks past N and every chunking."""
    rng = np.random.default_rng(seed)
    kind, g = fmt.split("-")
    group = int(g[1:])
    qmax = INT4_MAX if kind == "int4" else INT8_MAX
    kp = group * groups
    x = fp16_values(rng, (m, kp), xmode)
    q = int_weights(rng, n, kp, qmax, qmode)
    scales = rng.standard_normal((n, groups)).astype(F16) if scaled else None
    with mock.patch.object(numerics, "CHUNK_ELEMS", chunk):
        got = grouped_dot_split(x, group_weights(q, group, qmax, block), scales)
    want = integer_reference(x, q, group, scales)
    assert got.dtype == F32 and got.shape == (m, n)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(got.view(np.uint32), grouped_dot_exact(x, q, group, scales).view(np.uint32))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), m=st.integers(1, 4), n=st.sampled_from([1, 5, 17]),
       special=st.sampled_from([np.inf, -np.inf, np.nan]), scaled=st.booleans())
def test_split_dot_nonfinite_rows_as_float64_path(seed, m, n, special, scaled):
    """A row holding inf or NaN gives what the float64 path gives (bits, NaN included); the other
    rows are unaffected."""
    rng = np.random.default_rng(seed)
    group, kp = 16, 48
    x = rng.standard_normal((m, kp)).astype(F16)
    bad_rows = rng.integers(0, 2, m).astype(bool)
    bad_rows[rng.integers(0, m)] = True
    for r in np.flatnonzero(bad_rows):
        x[r, rng.integers(0, kp, rng.integers(1, 4))] = special
    q = rng.integers(-8, 8, (n, kp)).astype(np.int8)
    q[:, :group] = 0                               # inf * 0 = NaN in the first group
    scales = rng.standard_normal((n, kp // group)).astype(F16) if scaled else None
    with np.errstate(invalid="ignore"):    # inf * 0 and inf - inf, on purpose
        got = grouped_dot_split(x, group_weights(q, group, INT4_MAX, 4), scales)
        want = grouped_dot_exact(x, q, group, scales)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("qmax, group", [(INT4_MAX, 128), (INT4_MAX, 1024), (INT8_MAX, 64)])
def test_split_dot_largest_sums(qmax, group):
    """Sums at the split's bound with their lowest bits set. Row e: all x positive, 15 in 16 at
    exponent e (their significands fill the top bits of a piece when e lines up with one) and the
    rest at e - 4 (bits down to the piece's lowest), every q = 1 - qmax (odd, so products keep their
    low bits; no cancellation). With one bit more per piece (split_bits + 1) these sums need 25 bits
    and round in fp32."""
    rng = np.random.default_rng(3)
    rows = []
    for e in range(1, 31):
        for _ in range(3):
            exp = np.where(rng.integers(0, 16, group) == 0, max(e - 4, 0), e)
            rows.append((exp << 10) | rng.integers(0, 1 << 10, group))
    x = np.array(rows, dtype=np.uint16).view(F16)
    q = np.full((3, group), 1 - qmax, dtype=np.int16)
    got = grouped_dot_split(x, group_weights(q, group, qmax), None)
    np.testing.assert_array_equal(got.view(np.uint32), integer_reference(x, q, group, None).view(np.uint32))
    # the property the split rests on, checked without BLAS: a piece's group sum is exact in fp32
    # (one fp32 rounding per add, in order: np.cumsum)
    for piece in split_fp16(x, split_bits(group, qmax)):
        terms = piece * F32(1 - qmax)
        np.testing.assert_array_equal(np.cumsum(terms, axis=1, dtype=F32)[:, -1], terms.astype(F64).sum(axis=1))


@pytest.mark.parametrize("scale", [0.0, -0.0, 2.0 ** -20, 1.0, 100.0])
def test_split_dot_skips_zero_pieces(scale):
    """x whose pieces are partly or all zero (all zeros, -0, only the low piece, no top piece, all three):
    the same bits as integer arithmetic, with scales of every sign, zero and inf (0 * inf is NaN)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 256)) * scale).astype(F16)
    q = rng.integers(-8, 8, (9, 256)).astype(np.int16)
    scales = rng.standard_normal((9, 2)).astype(F16)
    scales[0] = np.inf
    scales[1] = -0.0
    with np.errstate(invalid="ignore"):    # 0 * inf, on purpose
        got = grouped_dot_split(x, group_weights(q, 128, INT4_MAX, 4), scales)
        want = integer_reference(x, q, 128, scales)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(want)], want.view(np.uint32)[~np.isnan(want)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_split_dot_in_a_forked_child():
    """The worker threads do not survive fork: a child that multiplies after its parent did still
    finishes (with a pool of its own)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 4096)).astype(F16)
    w = group_weights(rng.integers(-8, 8, (4096, 4096)).astype(np.int8), 128, INT4_MAX)
    want = grouped_dot_split(x, w, None)          # starts the parent's pool (many work items)
    pid = os.fork()
    if pid == 0:
        try:
            ok = np.array_equal(grouped_dot_split(x, w, None), want)
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung in grouped_dot_split")


def test_grouped_weights_give_back_the_integers():
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (37, 64)).astype(np.int8)
    for block in (1, 8, 37, 512):
        w = group_weights(q, 16, INT8_MAX, block)
        np.testing.assert_array_equal(w.ints(), q)


@pytest.mark.parametrize("n, block", [(1, 512), (37, 8), (37, 37), (600, 512)])
def test_int4_weights_unpacked_nibble_by_nibble(n, block):
    rng = np.random.default_rng(n)
    packed = rng.integers(0, 256, (n, 64), dtype=np.uint8)
    q = np.empty((n, 128), dtype=np.int16)
    for r in range(n):
        for j in range(64):
            byte = int(packed[r, j])
            for half, v in ((0, byte & 15), (1, byte >> 4)):
                q[r, 2 * j + half] = v - 16 if v >= 8 else v
    w = group_int4_weights(packed, 128, 16, block)
    np.testing.assert_array_equal(w.ints(), q)
    np.testing.assert_array_equal(w.data, group_weights(q, 16, INT4_MAX, block).data)
    assert w.qmax == INT4_MAX


# ---------------------------------------------------------------- the memory's cache of derived values
def _mem(**kw) -> tuple[DeviceMemory, int]:
    dev = Device("tiny")
    mem = DeviceMemory(dev.t, **kw)
    return mem, dev.t.figures.region("hbm").base


def _count_builds(mem, addr, nbytes, key="k"):
    calls = []

    def build(raw):
        calls.append(1)
        return raw.astype(np.int32)
    return mem.derived(addr, nbytes, key, build), calls


@pytest.mark.parametrize("offset, size, dropped", [
    (0, 1, True), (99, 1, True), (-1, 2, True), (-10, 200, True), (50, 4, True),
    (-1, 1, False), (100, 1, False), (4096, 8, False), ((1 << 20) + 7, 1, False),
])
def test_derived_value_dropped_exactly_by_overlapping_writes(offset, size, dropped):
    mem, base = _mem()
    addr = base + (1 << 20) - 40          # the range [addr, addr + 100) crosses a page boundary
    mem.write(addr - 64, np.arange(300, dtype=np.uint8))
    first, calls = _count_builds(mem, addr, 100)
    again = mem.derived(addr, 100, "k", lambda raw: pytest.fail("rebuilt without a write"))
    assert again is first and len(calls) == 1
    mem.write(addr + offset, np.full(size, 7, np.uint8))
    value, calls = _count_builds(mem, addr, 100)
    assert len(calls) == int(dropped)
    np.testing.assert_array_equal(value, mem.read(addr, 100).astype(np.int32))


def test_derived_keys_and_budget():
    mem, base = _mem(derived_bytes=1000)
    mem.write(base, np.arange(256, dtype=np.uint8))
    a, _ = _count_builds(mem, base, 200, "a")          # 800 bytes kept
    assert mem.derived_kept_bytes == 800
    b, calls = _count_builds(mem, base, 200, "b")      # another key: built, over budget: not kept
    assert len(calls) == 1 and mem.derived_kept_bytes == 800
    _, calls = _count_builds(mem, base, 200, "b")
    assert len(calls) == 1
    mem.write(base + 199, b"\x01")
    assert mem.derived_kept_bytes == 0


def test_derived_logs_reads_and_checks_uninitialised_bytes():
    mem, base = _mem()
    mem.write(base, bytes(64))
    with pytest.raises(UninitializedReadError):
        mem.derived(base, 65, "k", lambda raw: raw)
    mem.derived(base, 64, "k", lambda raw: raw)
    mem.start_recording()
    mem.derived(base, 64, "k", lambda raw: pytest.fail("rebuilt"))
    assert mem.stop_recording() == ([(base, base + 64)], [])


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_mvm_sees_weights_rewritten_by_host_and_by_dma(fmt, cache):
    """The same mvm run three times: weights W1; W2 written by the host; W1 copied back by a dma
    (with the laid-out weights kept, and with none kept)."""
    dev = Device("tiny", **({} if cache else {"weight_cache_bytes": 0}))
    rng = np.random.default_rng(7)
    m, k, n, g = 2, 320, 33, dev.t.int4_group   # weight bytes a multiple of 32: one dma row

    def pack(w):
        if fmt == "int4":
            q, s = layout.quantize_int4(w, g)
            return q, s, layout.pack_int4(q, g)
        q, s = layout.quantize_int8(w)
        return q, s, q
    (q1, s1, p1), (q2, s2, p2) = (pack(rng.standard_normal((n, k)).astype(F32)) for _ in range(2))
    x = rng.standard_normal((m, k)).astype(F16)
    wa, sa, xa, out = dev.put(p1, "hbm"), dev.put(s1, "hbm"), dev.put(x), dev.alloc(m * n * 2)
    copy = dev.put(p1, "hbm")                      # a second copy of W1, for the dma
    mvm = isa.make("mvm", wfmt=fmt, x=xa, w=wa, wscale=sa, out=out, m=m, k=k, n=n)

    def check(q, s):
        dev.run(mvm)
        want = ref.mvm_acc(fmt, x, q, s, g, dev.t.int8_block).astype(F16)
        np.testing.assert_array_equal(dev.get(out, F16, (m, n)), want)
    check(q1, s1)
    assert (dev.sim.mem.derived_kept_bytes > 0) == cache
    dev.sim.write_array(wa, p2)
    dev.sim.write_array(sa, s2)
    check(q2, s2)
    dev.run(isa.make("dma", src=copy, dst=wa, row_bytes=p1.nbytes, rows=1, src_stride=p1.nbytes,
                     dst_stride=p1.nbytes))
    dev.sim.write_array(sa, s1)
    check(q1, s1)
