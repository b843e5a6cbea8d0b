"""How long one memory channel takes to move an instruction's bytes: one definition.

The simulator's timing model (``hw_models/timing.py``, vectorised over channels) and the instruction
models' fill terms (:mod:`dlavm.target.insn_model`, on ints and ``dlavm.sym`` expressions) both call
:func:`channel_cycles`; doc/simulator.md ("HBM model") states the formula and the source of every
constant. For ``b`` bytes on one channel (port width ``w`` bytes per cycle)::

    fixed  = dma_setup_cycles + streams * row_miss + turnarounds
    stream = max(port, hbm_side, outstanding)
    port        = p + ceil(p * starved / (tREFI - starved)),
                  p = ceil(b / w) + ceil(b / dma_burst_bytes) * burst_overhead_cycles
    starved     = max(0, tRFC - ceil(hbm_outstanding * dma_burst_bytes / w))   (refresh the window cannot hide)
    hbm_side    = ceil(b / (HBM bytes per cycle * (1 - tRFC / tREFI)))     (HBM pseudo-channels only)
    outstanding = ceil(b * dma_setup_cycles / (hbm_outstanding * dma_burst_bytes))
    cycles = fixed + stream   (a channel that moves nothing takes 0)

(times in accelerator cycles). A refresh stops the pseudo-channel for tRFC; the port keeps streaming
through it only on data already fetched for its outstanding bursts (the window of ``hbm_outstanding *
dma_burst_bytes``, ``window / w`` cycles of the port), so each tREFI the port starves for what the window
does not cover. ``hbm_outstanding`` 0 (no limit) hides every refresh from the port.

A term whose target field is 0 is absent (``tiny`` has none of them: setup, width and bursts only).
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

from dlavm.target.schema import Target


def ns_to_cycles(t: Target, ns: int) -> int:
    """Whole accelerator cycles covering ``ns`` nanoseconds (0 stays 0)."""
    return math.ceil(ns * Fraction(t.clock_mhz).limit_denominator(10**6) / 1000) if ns else 0


class ChannelModel:
    """The formula's constants for one target, computed once (:func:`channel_model`)."""

    def __init__(self, t: Target):
        self.setup, self.burst, self.overhead = t.dma_setup_cycles, t.dma_burst_bytes, t.burst_overhead_cycles
        self.row_miss = ns_to_cycles(t, t.hbm_trp_ns + t.hbm_trcd_ns)
        self.rtw, self.wtr = ns_to_cycles(t, t.hbm_trtw_ns), ns_to_cycles(t, t.hbm_twtr_ns)
        self.num = self.den = 0   # HBM side: cycles per byte = num / den (0: not modelled)
        if t.hbm_mts:
            # clock_mhz / (MT/s * bytes per transfer), stretched by refresh's share of the time
            r = Fraction(t.clock_mhz).limit_denominator(10**6) / (t.hbm_mts * Fraction(t.hbm_pc_bits, 8))
            if t.hbm_trefi_ns:
                r *= Fraction(t.hbm_trefi_ns, t.hbm_trefi_ns - t.hbm_trfc_ns)
            self.num, self.den = r.numerator, r.denominator
        self.window = t.hbm_outstanding * t.dma_burst_bytes   # bytes in flight per port (0: no limit)
        self.refresh = ((ns_to_cycles(t, t.hbm_trefi_ns), ns_to_cycles(t, t.hbm_trfc_ns))
                        if t.hbm_trefi_ns and t.hbm_outstanding else None)
        self._starved: dict[int, int] = {}
        self._binds: dict[int, tuple[bool, bool]] = {}

    def binds(self, width: int) -> tuple[bool, bool]:
        """Whether the HBM side, and the outstanding limit, can ever exceed ``ceil(b / width)`` for a port
        ``width`` bytes wide: when not, leaving the term out changes no result (it is at most the port's)."""
        if width not in self._binds:
            self._binds[width] = (bool(self.num) and self.num * width > self.den,
                                  bool(self.window) and self.setup * width > self.window)
        return self._binds[width]

    def starved(self, width: int) -> int:
        """Port cycles a refresh starves, each tREFI, beyond what the outstanding window holds."""
        if self.refresh is None:
            return 0
        if width not in self._starved:
            self._starved[width] = max(0, self.refresh[1] - -(-self.window // width))
        return self._starved[width]

    def array(self, b, width: int, hbm: bool, streams=1, turnarounds=0):
        """:func:`channel_cycles` on a numpy int64 array of bytes per channel (0 where 0)."""
        import numpy as np
        port = -(-b // width)
        if self.overhead:
            port = port + -(-b // self.burst) * self.overhead
        fixed = self.setup
        if hbm:
            st = self.starved(width)
            if st:
                port = port + -(-(port * st) // (self.refresh[0] - st))
            side, cap = self.binds(width)
            if side:
                port = np.maximum(port, -(-(b * self.num) // self.den))
            if cap:
                port = np.maximum(port, -(-(b * self.setup) // self.window))
            if self.row_miss:
                fixed = fixed + streams * self.row_miss
            fixed = fixed + turnarounds
        return np.where(b > 0, fixed + port, 0)

    def generic(self, nbytes, width: int, hbm: bool, streams=1, turnarounds=0):
        """:func:`channel_cycles` on an int or a ``dlavm.sym`` expression (always pays the fixed part)."""
        port = _cdiv(nbytes, width) + _cdiv(nbytes, self.burst) * self.overhead
        fixed = self.setup
        if hbm:
            st = self.starved(width)
            if st:
                port = port + _cdiv(port * st, self.refresh[0] - st)
            side, cap = self.binds(width)
            if side:
                port = _max(port, _cdiv(nbytes * self.num, self.den))
            if cap:
                port = _max(port, _cdiv(nbytes * self.setup, self.window))
            fixed = fixed + streams * self.row_miss + turnarounds
        return fixed + port


_MODELS: dict[int, tuple[Target, ChannelModel]] = {}


def channel_model(t: Target) -> ChannelModel:
    """The :class:`ChannelModel` of ``t``, computed once per target object."""
    hit = _MODELS.get(id(t))
    if hit is None or hit[0] is not t:
        if len(_MODELS) > 256:
            _MODELS.clear()
        hit = _MODELS[id(t)] = (t, ChannelModel(t))
    return hit[1]


def row_miss_cycles(t: Target) -> int:
    """Cycles to open a row on an HBM pseudo-channel (tRP + tRCD), in accelerator cycles."""
    return channel_model(t).row_miss


def turnaround_cycles(t: Target) -> tuple[int, int]:
    """(read-to-write, write-to-read) bus turnaround of one HBM pseudo-channel, in accelerator cycles."""
    m = channel_model(t)
    return m.rtw, m.wtr


def _cdiv(a, b):
    if type(a) is int or isinstance(a, numbers.Integral):
        return -(-a // b)
    from dlavm import sym
    return sym.ceildiv(a, b)


def _max(a, b):
    if (type(a) is int or isinstance(a, numbers.Integral)) and (type(b) is int or isinstance(b, numbers.Integral)):
        return max(a, b)
    from dlavm import sym
    return sym.smax(a, b)


def channel_cycles(t: Target, nbytes, width: int, hbm: bool = True, streams=1, turnarounds=0):
    """Cycles one channel takes to move ``nbytes`` (int, numpy int array or ``dlavm.sym`` expression) for
    one instruction: see the module docstring. ``hbm``: the channel is an HBM pseudo-channel (the DDR port
    has only setup, width and bursts); ``streams``: separate address streams the bytes come in (each opens a
    row); ``turnarounds``: bus turnaround cycles to add (:func:`turnaround_cycles`). An array's channels
    that move 0 bytes take 0 cycles; a scalar is one operand's load and always pays the fixed part."""
    m = channel_model(t)
    if hasattr(nbytes, "shape") and hasattr(nbytes, "dtype"):
        return m.array(nbytes, width, hbm, streams, turnarounds)
    return m.generic(nbytes, width, hbm, streams, turnarounds)
