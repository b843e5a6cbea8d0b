"""The timing model: unit timelines, issue queues, dependencies, memory channels.

Rules (doc/simulator.md, "Timing model", states them with the formulas):

* Each unit (dma, mvm, mat, sfu) executes its instructions in issue order,
  one at a time through its issue slot; its queue holds ``queue_depth``
  instructions not yet started. An issuer (host or AUX) that finds the queue
  full stalls until the oldest queued instruction starts.
* An instruction starts at ``max(issue time, unit free, fence floor,
  completion of the last instruction of every unit in its wait mask)``.
* Its off-chip operands occupy memory channels: each HBM pseudo-channel
  (addresses interleaved every ``hbm_interleave_bytes``) and the DDR port is
  a timeline; the instruction's bytes on channel c take
  :func:`dlavm.target.hbm_model.channel_cycles` (set-up, port width and
  bursts; on HBM pseudo-channels also the HBM side's rate under refresh, a
  row opened per operand stream, the outstanding-burst limit, and a bus
  turnaround where the channel's direction changes: reads come first, then
  writes), starting when both the instruction and the channel are free.
  On-chip SRAM costs no channel time.
* The AUX sequencer's fetch of its stream (``aux_fetch_bytes`` per entry,
  when not 0) is a read on the channels holding the stream (:meth:`fetch`).
* The unit is busy until both its compute cycles and its channel transfers
  have finished, and for ``tail`` cycles after the transfer of one operand
  (``tail_after``: an ``mvm``'s last weight tile, the attention's last KV
  head's rows; that operand is requested first, so its transfer is taken to
  come first on its channels); the result is visible ``latency`` cycles later
  (pipeline drain), which is when waiting instructions may start.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from dlavm.target import Target
from dlavm.target.hbm_model import channel_model
from dlavm.target.isa import UNITS, WAIT_UNITS
from dlavm.target.insn_model import Access


@dataclass
class Record:
    """When one instruction ran (cycles)."""

    index: int
    op: str
    unit: str
    issue: int
    start: int
    busy_end: int
    done: int
    mem_end: int
    compute_cycles: int
    macs: int = 0     # multiply-accumulates it performed
    nbytes: int = 0   # bytes it moved (HBM and DDR)
    alone: int = 0    # busy cycles it would take with its unit and every channel idle at its start


def channel_bytes(offsets: np.ndarray, length: int, granule: int, channels: int) -> np.ndarray:
    """Bytes of each HBM channel touched by ranges ``[o, o + length)`` (HBM offsets).

    Channel of byte x is ``(x // granule) % channels``; computed in closed
    form per range, vectorised over ranges and channels.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 1)
    c = np.arange(channels, dtype=np.int64).reshape(1, -1)
    period = granule * channels

    def below(x: np.ndarray) -> np.ndarray:
        return (x // period) * granule + np.clip(x % period - c * granule, 0, granule)

    return (below(offsets + length) - below(offsets)).sum(axis=0)


class TimingModel:
    """Cycle bookkeeping for one simulated device (see module docstring)."""

    def __init__(self, target: Target):
        self.t = target
        fig = target.figures
        self.n_hbm = target.hbm_channels
        self.hbm = fig.region("hbm")
        self.ddr = fig.region("ddr")
        # Channel widths: HBM pseudo-channels then the DDR port.
        self.width = np.array([fig.hbm_bytes_per_cycle_per_channel] * self.n_hbm
                              + [fig.ddr_bytes_per_cycle], dtype=np.int64)
        self.chan_free = np.zeros(self.n_hbm + 1, dtype=np.int64)
        self.chan_bytes = np.zeros(self.n_hbm + 1, dtype=np.int64)
        self.chan_busy = np.zeros(self.n_hbm + 1, dtype=np.int64)
        self.chan_wrote = np.zeros(self.n_hbm + 1, dtype=bool)   # its last transfer ended in writes
        self._hbm_slice, self._ddr_slice = slice(0, self.n_hbm), slice(self.n_hbm, self.n_hbm + 1)
        self._hbm_width, self._ddr_width = int(self.width[0]), int(self.width[self.n_hbm])
        self.chan = channel_model(target)   # the channel formula's constants (dlavm.target.hbm_model)
        self.rtw, self.wtr = self.chan.rtw, self.chan.wtr
        self.unit_free = {u: 0 for u in UNITS}
        self.unit_done = {u: 0 for u in UNITS}
        self.unit_busy = {u: 0 for u in UNITS}
        self.unit_count = {u: 0 for u in UNITS}
        self.starts = {u: deque(maxlen=target.queue_depth) for u in UNITS}
        self.fence_floor = 0
        self.records: list[Record] = []
        # retired(): records[:_seen] were looked at; of those, _pending had not completed at _last_t
        self._seen, self._pending, self._last_t = 0, [], 0
        self.channel_events: list[tuple[int, int, int]] = []   # (channel, start, end)
        self.record_channels = False
        self.macs = 0

    # ----------------------------------------------------------- channels
    def _access_bytes(self, a: Access):
        """Where one access's bytes go: (slice of the channel vector, bytes per channel there), or None when
        it moves nothing off chip. Channels are the HBM channels, then DDR."""
        if a.nbytes == 0:
            return None
        if self.hbm.contains(a.addr):
            offs = a.addr - self.hbm.base + np.arange(a.rows, dtype=np.int64) * a.stride
            if a.rows == 1 or a.stride == a.row_bytes:
                offs, length = offs[:1], a.nbytes
            else:
                length = a.row_bytes
            return self._hbm_slice, channel_bytes(offs, length, self.t.hbm_interleave_bytes, self.n_hbm)
        if self.ddr.contains(a.addr):
            return self._ddr_slice, a.nbytes
        return None

    def traffic(self, accesses: list[Access]) -> np.ndarray:
        """Bytes per channel (HBM channels, then DDR) of an instruction's operands."""
        return self._traffic(accesses)[0]

    def _traffic(self, accesses: list[Access], tail_after: str | None = None) -> tuple:
        """Per channel, each access mapped once: (bytes, of them written, operand streams, the ``tail_after``
        operand's bytes, its streams); the last two are 0 when ``tail_after`` is None."""
        acc = np.zeros((5 if tail_after is not None else 3, self.n_hbm + 1), dtype=np.int64)   # one allocation
        total, wr, streams = acc[0], acc[1], acc[2]
        tail, tail_streams = (acc[3], acc[4]) if tail_after is not None else (0, 0)
        for a in accesses:
            where = self._access_bytes(a)
            if where is None:
                continue
            sl, b = where
            total[sl] += b
            if a.write:
                wr[sl] += b
            streams[sl] += b > 0
            if a.name == tail_after:
                tail[sl] += b
                tail_streams[sl] += b > 0
        return total, wr, streams, tail, tail_streams

    def _transfer(self, b: np.ndarray, streams: np.ndarray | int = 1, turn: np.ndarray | int = 0) -> np.ndarray:
        """Channel cycles of ``b`` bytes per channel (0 where 0): :func:`~dlavm.target.hbm_model.channel_cycles`
        on the HBM pseudo-channels, set-up, width and bursts on the DDR port."""
        out = np.empty_like(b)
        n = self.n_hbm
        s = streams[:n] if isinstance(streams, np.ndarray) else streams
        u = turn[:n] if isinstance(turn, np.ndarray) else turn
        out[:n] = self.chan.array(b[:n], self._hbm_width, True, s, u)
        d = int(b[n])   # the DDR port: one channel, computed on a Python int
        out[n] = self.chan.generic(d, self._ddr_width, False) if d > 0 else 0
        return out

    def _turnarounds(self, per_chan: np.ndarray, wr: np.ndarray) -> np.ndarray | int:
        """Bus turnaround cycles of a transfer on each channel (reads first, then writes), after what the
        channel last did; updates what it last did. DDR: none."""
        if not (self.rtw or self.wtr):
            return 0
        rd_any = (per_chan - wr) > 0
        wr_any = wr > 0
        turn = (rd_any & self.chan_wrote) * self.wtr + (wr_any & (rd_any | ~self.chan_wrote)) * self.rtw
        turn[self.n_hbm] = 0
        used = per_chan > 0
        self.chan_wrote[used] = wr_any[used]
        return turn

    def _channel_phase(self, t0: int, per_chan: np.ndarray, wr: np.ndarray | None = None,
                       streams: np.ndarray | int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each channel's start and end of the instruction's transfers (``wr`` of ``per_chan`` written), and
        their time on idle channels (0 where unused)."""
        end = np.zeros_like(per_chan)
        begin = np.zeros_like(per_chan)
        turn = self._turnarounds(per_chan, np.zeros_like(per_chan) if wr is None else wr)
        dur = self._transfer(per_chan, streams, turn)
        used = np.nonzero(per_chan)[0]
        if used.size == 0:
            return begin, end, dur
        d = dur[used]
        start = np.maximum(self.chan_free[used], t0)
        begin[used] = start
        end[used] = start + d
        self.chan_free[used] = end[used]
        self.chan_bytes += per_chan
        self.chan_busy[used] += d
        if self.record_channels:
            self.channel_events.extend(zip(used.tolist(), start.tolist(), end[used].tolist()))
        return begin, end, dur

    def fetch(self, t: int, addr: int, nbytes: int, entries: int) -> list[int]:
        """Place an instruction-stream fetch of ``nbytes`` at ``addr`` (``entries`` equal entries) on the
        channels holding it from cycle ``t``; returns the cycle each entry is on chip: the fetch's first
        byte after the set-up (and row opening) on its busiest channel, then the entries in order at the
        transfer's rate. Nothing is charged where the stream is on chip."""
        per_chan, _, streams, _, _ = self._traffic([Access("aux", addr, nbytes)])
        if not per_chan.any():
            return [t] * entries
        begin, end, dur = self._channel_phase(t, per_chan, None, streams)
        used = per_chan > 0
        first = int(begin[used].max())
        fixed = self.t.dma_setup_cycles + (self.chan.row_miss if used[: self.n_hbm].any() else 0)
        span = int(end[used].max()) - first - fixed
        return [first + fixed + -(-span * (k + 1) // entries) for k in range(entries)]

    # ----------------------------------------------------------- issue
    def issue_ready(self, unit: str, t_issue: int) -> int:
        """Earliest time an issuer at ``t_issue`` can hand ``unit`` a new instruction."""
        q = self.starts[unit]
        if len(q) == q.maxlen:
            t_issue = max(t_issue, q[0])
        return t_issue

    def schedule(self, op: str, unit: str, wait: frozenset[str], t_issue: int,
                 accesses: list[Access], compute_cycles: int, latency: int, macs: int = 0,
                 tail: int = 0, tail_after: str | None = None) -> Record:
        """Place one instruction on the timelines; returns its :class:`Record`.

        ``t_issue`` must already account for queue stalls (:meth:`issue_ready`). ``tail`` cycles follow the
        end of the transfers of the access named ``tail_after`` (on the channels that carry it; the start
        when it is on chip), or of all of them when ``tail_after`` is None.
        """
        deps = max((self.unit_done[u] for u in wait), default=0)
        if unit == "seq":
            # nop/fence: a fence raises the floor under every later start.
            if op == "fence":
                self.fence_floor = max(self.fence_floor, deps, t_issue)
            rec = Record(len(self.records), op, unit, t_issue, max(t_issue, deps), max(t_issue, deps),
                         max(t_issue, deps), t_issue, 0)
            self.records.append(rec)
            return rec
        t0 = max(t_issue, self.unit_free[unit], deps, self.fence_floor)
        # each access is mapped to channels once: the tail's operand apart from the rest
        per_chan, wr, streams, tail_bytes, tail_streams = self._traffic(accesses, tail_after)
        begin, end, dur = self._channel_phase(t0, per_chan, wr, streams)
        mem_end, mem_alone = int(max(end.max(), t0)), int(dur.max())
        if tail_after is None:
            tail_end, tail_alone = (mem_end, mem_alone) if mem_alone else (t0, 0)
        else:   # the tail's operand is streamed first on its channels (requested first), then the rest
            tb = self._transfer(tail_bytes, tail_streams)
            on = tb > 0
            tail_end, tail_alone = (int((begin + tb)[on].max()), int(tb.max())) if on.any() else (t0, 0)
        # an instruction with nothing off-chip (or a tail operand on chip) is bound by its compute
        busy_end = max(mem_end, tail_end + tail if tail_alone else t0, t0 + compute_cycles)
        alone = max(mem_alone, tail_alone + tail if tail_alone else 0, compute_cycles)
        done = busy_end + latency
        self.unit_free[unit] = busy_end
        self.unit_done[unit] = max(self.unit_done[unit], done)
        self.unit_busy[unit] += busy_end - t0
        self.unit_count[unit] += 1
        self.starts[unit].append(t0)
        self.macs += macs
        rec = Record(len(self.records), op, unit, t_issue, t0, busy_end, done, mem_end, compute_cycles, macs,
                     sum(a.nbytes for a in accesses), alone)
        self.records.append(rec)
        return rec

    def idle_at(self) -> int:
        """Cycle at which every issued instruction has completed."""
        return max(self.unit_done[u] for u in WAIT_UNITS)

    def busy_units(self, t: int) -> list[str]:
        return [u for u in WAIT_UNITS if self.unit_done[u] > t]

    def queue_full(self, t: int) -> bool:
        return any(len(q) == q.maxlen and q[0] > t for q in self.starts.values())

    def retired(self, t: int) -> int:
        """Instructions completed by cycle ``t``. Host time only moves forward, so each call looks only at
        the records added since the last one and those still pending then (a long-running device server
        would otherwise slow down with every instruction it ever ran); an earlier ``t`` counts them all."""
        if t < self._last_t:
            return sum(1 for r in self.records if r.done <= t)
        self._pending = [r for r in self._pending + self.records[self._seen:] if r.done > t]
        self._seen, self._last_t = len(self.records), t
        return self._seen - len(self._pending)
