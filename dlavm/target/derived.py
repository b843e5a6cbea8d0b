"""Every figure derived from a :class:`~dlavm.target.schema.Target`, in one place.

Compiler, runtime, simulator, CLI and benchmarks read these figures from
``target.figures``; none of them recomputes a constant from raw fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dlavm.target.schema import Target


@dataclass(frozen=True)
class Region:
    """One memory region of the device address map: ``[base, base + size)``."""

    name: str
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, addr: int, nbytes: int = 1) -> bool:
        return self.base <= addr and addr + nbytes <= self.end


@dataclass(frozen=True)
class Figures:
    """Derived figures of one target (units in the names)."""

    clock_hz: float
    hbm_bytes_per_cycle_per_channel: int
    hbm_bytes_per_cycle: int
    hbm_bytes: int
    hbm_gbytes_per_s: float           # port peak: channels x port width x clock (what the ports can take)
    device_hbm_gbytes_per_s: float    # device peak: channels x HBM data rate x pseudo-channel width (datasheet)
    device_hbm_bytes_per_cycle: float  # the device peak per accelerator cycle
    ddr_bytes_per_cycle: int
    ddr_gbytes_per_s: float
    peak_macs_per_cycle: int
    peak_tmacs_per_s: float
    mat_macs_per_cycle: int
    sfu_elems_per_cycle: int
    ridge_macs_per_byte: float
    int4_weights_per_cycle: int
    host_rtt_cycles: int
    regions: tuple[Region, ...]

    def attainable_macs_per_cycle(self, macs_per_byte: float) -> float:
        """Roofline: min(peak compute, HBM bandwidth x arithmetic intensity)."""
        return min(float(self.peak_macs_per_cycle), self.hbm_bytes_per_cycle * macs_per_byte)

    def roofline_cycles(self, macs: float, hbm_bytes: float) -> float:
        """The fewest cycles ``macs`` multiply-accumulates and ``hbm_bytes`` of HBM traffic can take through
        the ports: ``max(MACs / peak MACs per cycle, HBM bytes / port peak bytes per cycle)``."""
        return max(macs / self.peak_macs_per_cycle, hbm_bytes / self.hbm_bytes_per_cycle)

    def device_roofline_cycles(self, macs: float, hbm_bytes: float) -> float:
        """As :meth:`roofline_cycles` against the device peak (the board's HBM bandwidth) instead of the
        port peak: what the memory itself allows, whatever the ports."""
        return max(macs / self.peak_macs_per_cycle, hbm_bytes / self.device_hbm_bytes_per_cycle)

    def roofline_percents(self, cycles: float, macs: float, hbm_bytes: float) -> dict[str, float]:
        """``cycles`` as a share of each roofline: ``{"port": % of port peak, "device": % of device
        peak}`` (100 = at the bound; 0 when ``cycles`` is 0)."""
        if not cycles:
            return {"port": 0.0, "device": 0.0}
        return {"port": 100.0 * self.roofline_cycles(macs, hbm_bytes) / cycles,
                "device": 100.0 * self.device_roofline_cycles(macs, hbm_bytes) / cycles}

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(f"no memory region {name!r}; regions are {[r.name for r in self.regions]}")

    def cycles_to_us(self, cycles: float) -> float:
        return cycles / (self.clock_hz / 1e6)


def derive(t: Target) -> Figures:
    """Compute the :class:`Figures` of ``t`` (pure function of its fields)."""
    clock_hz = t.clock_mhz * 1e6
    ch_bpc = t.hbm_bits_per_cycle // 8
    hbm_bpc = ch_bpc * t.hbm_channels
    ddr_bpc = t.ddr_bits_per_cycle // 8
    peak = t.tin * t.tout * t.mvm_groups
    hbm_bytes = t.hbm_channels * t.hbm_channel_bytes
    # without an HBM data rate (hbm_mts = 0) the memory is taken as fast as the ports: device peak = port peak
    dev_gbs = (t.hbm_channels * t.hbm_mts * t.hbm_pc_bits / 8 / 1e3 if t.hbm_mts
               else hbm_bpc * clock_hz / 1e9)
    return Figures(
        clock_hz=clock_hz,
        hbm_bytes_per_cycle_per_channel=ch_bpc,
        hbm_bytes_per_cycle=hbm_bpc,
        hbm_bytes=hbm_bytes,
        hbm_gbytes_per_s=hbm_bpc * clock_hz / 1e9,
        device_hbm_gbytes_per_s=dev_gbs,
        device_hbm_bytes_per_cycle=dev_gbs * 1e9 / clock_hz,
        ddr_bytes_per_cycle=ddr_bpc,
        ddr_gbytes_per_s=ddr_bpc * clock_hz / 1e9,
        peak_macs_per_cycle=peak,
        peak_tmacs_per_s=peak * clock_hz / 1e12,
        mat_macs_per_cycle=t.mat_tin * t.mat_tout,
        sfu_elems_per_cycle=t.sfu_lanes,
        ridge_macs_per_byte=peak / hbm_bpc,
        int4_weights_per_cycle=hbm_bpc * 2,
        host_rtt_cycles=max(1, math.ceil(t.host_rtt_us * t.clock_mhz)),
        regions=(Region("hbm", t.hbm_base, hbm_bytes),
                 Region("ddr", t.ddr_base, t.ddr_bytes),
                 Region("sram", t.sram_base, t.sram_bytes)),
    )
