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
from functools import lru_cache

from dlavm.target.schema import Target


def ns_to_cycles(t: Target, ns: int) -> int:
    """Whole accelerator cycles covering ``ns`` nanoseconds (0 stays 0)."""
    return math.ceil(ns * Fraction(t.clock_mhz).limit_denominator(10**6) / 1000) if ns else 0


@lru_cache(maxsize=64)
def _terms(t: Target) -> tuple[int, int, int, int, int, int]:
    """(row_miss, rtw, wtr cycles; hbm_side ratio numerator, denominator (0, 0 when absent); outstanding
    bytes in flight (0: no limit)) of ``t``."""
    row_miss = ns_to_cycles(t, t.hbm_trp_ns + t.hbm_trcd_ns)
    rtw, wtr = ns_to_cycles(t, t.hbm_trtw_ns), ns_to_cycles(t, t.hbm_twtr_ns)
    num = den = 0
    if t.hbm_mts:
        # cycles per byte on the HBM side: clock_mhz / (MT/s * bytes per transfer), stretched by refresh
        r = Fraction(t.clock_mhz).limit_denominator(10**6) / (t.hbm_mts * Fraction(t.hbm_pc_bits, 8))
        if t.hbm_trefi_ns:
            r *= Fraction(t.hbm_trefi_ns, t.hbm_trefi_ns - t.hbm_trfc_ns)
        num, den = r.numerator, r.denominator
    window = t.hbm_outstanding * t.dma_burst_bytes
    return row_miss, rtw, wtr, num, den, window


@lru_cache(maxsize=64)
def _refresh_port(t: Target, width: int) -> tuple[int, int]:
    """(port cycles starved per refresh interval, refresh interval) in cycles, for a port ``width`` bytes
    wide; (0, 1) when refresh does not reach the port."""
    if not t.hbm_trefi_ns or not t.hbm_outstanding:
        return 0, 1
    trefi, trfc = ns_to_cycles(t, t.hbm_trefi_ns), ns_to_cycles(t, t.hbm_trfc_ns)
    starved = max(0, trfc - -(-t.hbm_outstanding * t.dma_burst_bytes // width))
    return starved, trefi


def row_miss_cycles(t: Target) -> int:
    """Cycles to open a row on an HBM pseudo-channel (tRP + tRCD), in accelerator cycles."""
    return _terms(t)[0]


def turnaround_cycles(t: Target) -> tuple[int, int]:
    """(read-to-write, write-to-read) bus turnaround of one HBM pseudo-channel, in accelerator cycles."""
    _, rtw, wtr, *_ = _terms(t)
    return rtw, wtr


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _cdiv(a, b):
    if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
        return -(-a // b)
    if _is_array(a):
        return -(-a // b)
    from dlavm import sym
    return sym.ceildiv(a, b)


def _max(a, b):
    if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
        return max(a, b)
    if _is_array(a) or _is_array(b):
        import numpy as np
        return np.maximum(a, b)
    from dlavm import sym
    return sym.smax(a, b)


def channel_cycles(t: Target, nbytes, width: int, hbm: bool = True, streams=1, turnarounds=0):
    """Cycles one channel takes to move ``nbytes`` (int, numpy int array or ``dlavm.sym`` expression) for
    one instruction: see the module docstring. ``hbm``: the channel is an HBM pseudo-channel (the DDR port
    has only setup, width and bursts); ``streams``: separate address streams the bytes come in (each opens a
    row); ``turnarounds``: bus turnaround cycles to add (:func:`turnaround_cycles`). An array's channels
    that move 0 bytes take 0 cycles; a scalar is one operand's load and always pays the fixed part."""
    port = _cdiv(nbytes, width) + _cdiv(nbytes, t.dma_burst_bytes) * t.burst_overhead_cycles
    fixed = t.dma_setup_cycles
    if hbm:
        row_miss, _, _, num, den, window = _terms(t)
        starved, trefi = _refresh_port(t, width)
        if starved:
            port = port + _cdiv(port * starved, trefi - starved)
        stream = port
        if num:
            stream = _max(stream, _cdiv(nbytes * num, den))
        if window:
            stream = _max(stream, _cdiv(nbytes * t.dma_setup_cycles, window))
        fixed = fixed + streams * row_miss + turnarounds
    else:
        stream = port
    total = fixed + stream
    if _is_array(nbytes):
        import numpy as np
        return np.where(nbytes > 0, total, 0)
    return total
