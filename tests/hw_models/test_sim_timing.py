"""Timing model: DMA bandwidth per channel, compute bound, overlap, waits,
fences, queues, host round trips, and the Chrome trace."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_device import Device
from dlavm.target import get_target, isa
from dlavm.target.hbm_model import row_miss_cycles
from hw_models import Simulator

TINY = get_target("tiny")


def _dma_time(t, per_channel):
    """doc/simulator.md: setup + ceil(b / width) + ceil(b / burst) * overhead, per channel."""
    w = t.figures.hbm_bytes_per_cycle_per_channel
    return max(t.dma_setup_cycles + -(-b // w) + -(-b // t.dma_burst_bytes) * t.burst_overhead_cycles
               for b in per_channel if b)


@settings(max_examples=40, deadline=None)
@given(channels=st.sampled_from([1, 2, 3, 4, 8]), units=st.integers(1, 400), offset=st.integers(0, 64))
def test_dma_time_is_setup_plus_bytes_over_channel_bandwidth(channels, units, offset):
    t = TINY.replace(hbm_channels=channels, hbm_channel_bytes=1 << 20)
    sim = Simulator(t, functional=False)
    n, src = units * 32, offset * 32
    sram = t.figures.region("sram").base
    rec_done = sim.issue(isa.make("dma", src=src, dst=sram, row_bytes=n, rows=1))
    rec = sim.records[-1]
    # Independent per-byte channel map: channel = (addr // interleave) % channels.
    per_channel = np.bincount((np.arange(src, src + n) // t.hbm_interleave_bytes) % channels,
                              minlength=channels)
    assert sim.stats()["hbm_channel_bytes"] == per_channel.tolist()
    assert rec.busy_end - rec.start == _dma_time(t, per_channel)
    assert rec.done == rec.busy_end + t.dma_latency and rec_done == 0
    # The bandwidth statement: beyond setup and burst overheads, time is bytes / (K x width).
    width = t.figures.hbm_bytes_per_cycle_per_channel
    bursts = -(-per_channel.max() // t.dma_burst_bytes)
    assert rec.busy_end - rec.start - t.dma_setup_cycles - bursts * t.burst_overhead_cycles \
        >= n / (channels * width)


def test_vcu128_dma_of_a_megabyte_uses_all_32_channels():
    sim = Simulator("vcu128", functional=False)
    t = sim.target
    n = 1 << 20
    sim.issue(isa.make("dma", src=0, dst=t.figures.region("sram").base, row_bytes=n, rows=1))
    rec = sim.records[-1]
    per = n // 32
    # set-up, one row opened on each channel (tRP + tRCD = 28 ns: 6 cycles), then the port's width: the HBM
    # side (72 bytes per cycle less refresh) and 16 outstanding bursts (546 bytes per cycle) do not bind
    assert row_miss_cycles(t) == 6
    assert rec.busy_end - rec.start == (t.dma_setup_cycles + row_miss_cycles(t) + per // 32
                                        + per // t.dma_burst_bytes * t.burst_overhead_cycles)
    assert sim.stats()["hbm_channel_bytes"] == [per] * 32


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 8), k=st.integers(1, 300), n=st.integers(1, 100))
def test_compute_bound_mvm_is_bounded_by_peak(m, k, n):
    t = TINY
    sim = Simulator(t, functional=False)
    sram = t.figures.region("sram").base          # weights on chip: no channel time
    sim.issue(isa.make("mvm", wfmt="fp16", x=sram, w=sram + 0x10000, out=sram + 0x20000, m=m, k=k, n=n))
    rec = sim.records[-1]
    busy = rec.busy_end - rec.start
    # its tiles, after the first tile's fill: its weights are on chip (no load), then the pipeline in and out
    assert busy == m * -(-k // t.tin) * -(-n // (t.tout * t.mvm_groups)) + 2 * t.mvm_latency
    assert busy >= m * k * n / t.figures.peak_macs_per_cycle
    assert rec.done - rec.busy_end == t.mvm_latency


def test_decode_mvm_is_memory_bound_on_vcu128():
    """M=1 int4 4096x4096: time is the weight stream over 32 channels, above the compute floor."""
    sim = Simulator("vcu128", functional=False)
    t, fig = sim.target, sim.target.figures
    sram = fig.region("sram").base
    k = n = 4096
    sim.issue(isa.make("mvm", wfmt="int4", x=sram, w=0, wscale=1 << 24, out=sram + 0x4000, m=1, k=k, n=n))
    rec = sim.records[-1]
    wbytes = n * k // 2 + n * (k // 128) * 2
    assert rec.busy_end - rec.start >= wbytes / fig.hbm_bytes_per_cycle
    assert rec.busy_end - rec.start > rec.compute_cycles >= k * n // fig.peak_macs_per_cycle
    assert sum(sim.stats()["hbm_channel_bytes"]) == wbytes


def _overlap(a, b):
    return min(a.busy_end, b.busy_end) - max(a.start, b.start)


@pytest.mark.parametrize("wait", [False, True])
def test_dma_and_mvm_overlap_unless_waited(wait, tmp_path):
    sim = Simulator("tiny", functional=False)
    sram = sim.target.figures.region("sram").base
    sim.issue(isa.make("dma", src=0, dst=sram, row_bytes=64 * 1024, rows=1))
    sim.issue(isa.make("mvm", wfmt="fp16", x=sram + 0x20000, w=sram + 0x30000, out=sram + 0x40000,
                       m=4, k=256, n=256, wait=["dma"] if wait else []))
    dma, mvm = sim.records
    if wait:
        assert mvm.start >= dma.done and _overlap(dma, mvm) <= 0
    else:
        assert mvm.start == dma.start == 0 and _overlap(dma, mvm) > 0
    # The trace shows the same: one thread per unit, complete events, overlapping spans.
    path = sim.write_trace(tmp_path / "trace.json")
    events = json.loads(path.read_text())["traceEvents"]
    spans = {e["name"]: e for e in events if e["ph"] == "X" and e["name"] in ("dma", "mvm")}
    assert spans["dma"]["tid"] != spans["mvm"]["tid"]
    d, m = spans["dma"], spans["mvm"]
    overlap_us = min(d["ts"] + d["dur"], m["ts"] + m["dur"]) - max(d["ts"], m["ts"])
    assert (overlap_us > 0) == (not wait)
    assert {"name", "ph", "ts", "dur", "pid", "tid"} <= set(d)


def test_fence_blocks_later_instructions():
    sim = Simulator("tiny", functional=False)
    sram = sim.target.figures.region("sram").base
    sim.issue(isa.make("dma", src=0, dst=sram, row_bytes=4096, rows=1))
    sim.issue(isa.make("fence", wait=["dma"]))
    sim.issue(isa.make("eltwise", a=sram, b=sram, dst=sram + 8192, count=64))
    assert sim.records[2].start >= sim.records[0].done


def test_channel_contention_serialises_concurrent_streams():
    sim = Simulator("tiny", functional=False)
    sram = sim.target.figures.region("sram").base
    n = 32 * 1024
    sim.issue(isa.make("dma", src=0, dst=sram, row_bytes=n, rows=1))
    sim.issue(isa.make("mvm", wfmt="fp16", x=sram + 0x10000, w=n, out=sram + 0x20000, m=1, k=128, n=128))
    dma, mvm = sim.records
    # The MVM's weight stream waits for the channels the DMA holds.
    assert mvm.mem_end >= dma.busy_end + sim.target.dma_setup_cycles


def test_full_queue_stalls_the_issuer():
    sim = Simulator("tiny", functional=False, check_hazards=False)   # in-place repeats, on purpose
    depth = sim.target.queue_depth
    sram = sim.target.figures.region("sram").base
    accepted = [sim.issue(isa.make("eltwise", a=sram, b=sram, dst=sram + 4096, count=4096), at=0)
                for _ in range(depth + 2)]
    # One instruction executes and `depth` wait in the queue; the next issuer
    # waits until the oldest queued one (the second) starts.
    assert accepted[:depth + 1] == [0] * (depth + 1)
    assert accepted[depth + 1] == sim.records[1].start > 0


def test_host_round_trips_are_charged():
    sim = Simulator("tiny", functional=False)
    rtt = sim.target.figures.host_rtt_cycles
    sim.read_reg(isa.reg("ID"))
    assert sim.t_host == rtt
    sram = sim.target.figures.region("sram").base
    sim.push(isa.make("eltwise", a=sram, b=sram, dst=sram + 64, count=8))
    assert sim.t_host == rtt * (1 + isa.INSN_WORDS + 1)
    assert sim.records[-1].issue == sim.t_host           # issued by the INSN_PUSH write
    sim.wait()
    assert sim.t_host >= sim.records[-1].done and sim.t_host % rtt == 0


def test_aux_stream_issues_at_its_own_rate():
    dev = Device("tiny", functional=False)
    sram = dev.t.figures.region("sram").base
    prog = [isa.make("nop") for _ in range(5)]
    dev.run(*prog)
    issues = [r.issue for r in dev.sim.records]
    assert np.diff(issues).tolist() == [dev.t.aux_cycles_per_insn] * 4
    assert sram


def test_timing_only_mode_matches_functional_timing(rng):
    results = []
    for functional in (True, False):
        dev = Device("tiny", functional=functional)
        x = dev.put(rng.standard_normal((2, 64)).astype(np.float16))
        w = dev.put(rng.standard_normal((40, 64)).astype(np.float16), "hbm")
        out = dev.alloc(2 * 40 * 2)
        dev.run(isa.make("mvm", wfmt="fp16", x=x, w=w, out=out, m=2, k=64, n=40),
                isa.make("rmsnorm", src=out, dst=out, gamma=x, rows=2, cols=40, eps=1e-5, wait=["mvm"]))
        results.append([(r.op, r.start, r.busy_end, r.done) for r in dev.sim.records])
        results.append(dev.sim.stats()["cycles"])
    assert results[0] == results[2] and results[1] == results[3]


def test_channel_threads_in_the_trace():
    sim = Simulator("tiny", functional=False, trace_channels=True)
    sim.issue(isa.make("dma", src=0, dst=sim.target.sram_base, row_bytes=1024, rows=1))
    events = sim.trace()["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert {"host", "aux", "dma", "mvm", "mat", "sfu", "hbm0", "hbm1", "ddr"} <= names
    xfers = [e for e in events if e["name"] == "xfer"]
    assert sorted(e["tid"] for e in xfers) == [16, 17]


@pytest.mark.parametrize("target", ["vcu128", "v80"])
def test_same_program_runs_on_every_builtin_target(target, rng):
    dev = Device(target)
    x = rng.standard_normal((1, 256)).astype(np.float16)
    w = rng.standard_normal((64, 256)).astype(np.float16)
    out = dev.alloc(128)
    dev.run(isa.make("mvm", wfmt="fp16", x=dev.put(x), w=dev.put(w, "hbm"), out=out, m=1, k=256, n=64))
    np.testing.assert_allclose(dev.get(out, np.float16, (1, 64)).astype(np.float32),
                               x.astype(np.float32) @ w.astype(np.float32).T, rtol=2e-2, atol=2e-2)
    assert dev.sim.stats()["hbm_bytes"] == 64 * 256 * 2


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 2**16), back=st.booleans())
def test_retired_counts_completed_instructions_at_every_time(n, seed, back):
    """RETIRED is computed incrementally (records added since the last read); it must equal the count of
    records done by ``t`` for times read in increasing order, and also for an earlier time."""
    sim = Simulator(TINY, functional=False)
    rng = np.random.default_rng(seed)
    sram = TINY.figures.region("sram").base
    t = 0
    for _ in range(n):     # issue, then read at a later time, so each read sees new records
        rows = int(rng.integers(1, 8))
        sim.issue(isa.make("dma", src=int(rng.integers(0, 64)) * 32, dst=sram, row_bytes=256, rows=rows))
        t += int(rng.integers(0, 600))
        assert sim.timing.retired(t) == sum(1 for r in sim.records if r.done <= t)
    if back:
        assert sim.timing.retired(t // 2) == sum(1 for r in sim.records if r.done <= t // 2)
    assert sim.timing.retired(t + 10**6) == len(sim.records)
