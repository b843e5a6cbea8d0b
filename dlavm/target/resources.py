"""Resource estimate of the accelerator: LUT, FF, DSP, BRAM36 and URAM per unit, as formulas of a Target.

:func:`estimate` is the one definition of the area model (doc/dse.md, "Resource
estimate"); ``dlavm targets --resources`` and every design-space sweep read it.
It covers the accelerator core: the MVM engine, the fp16 attention array, the
SFU with its adder tree, the DMA ports, the on-chip buffers and the instruction
front end. The platform around it (PCIe and the host DMA shell, the DDR4
memory controller, clocking) is not counted; the HBM controllers and their
switch are hard blocks of the FPGA and cost no fabric.

Two kinds of numbers, told apart on purpose:

* **Memories are counted exactly** from their sizes and port widths
  (:func:`bram36`, :func:`uram`): a BRAM36 holds 4 KiB of data as 512 words of
  72 bits (64 data bits and 8 parity bits), a URAM 32 KiB as 4096 such words
  (Xilinx UG573, UltraScale Architecture Memory Resources).
* **Logic is estimated**: LUT, FF and the DSPs of floating-point operators are
  counts of lanes and operators times the coefficients of :data:`COEFFICIENTS`.
  Those coefficients are **uncalibrated engineering estimates**, each with its
  reasoning: no RTL of the core has been synthesized yet. When it is, its Yosys
  figures replace the values in that one table and every report follows. The
  exception is the MVM's DSP count, which follows from the DSP48E2's operand
  widths (two weight products per DSP sharing the activation).

Every count is a non-decreasing function of each size field of the target
(:data:`SIZE_FIELDS`); a larger ``int4_group`` never costs more (fewer scale
multipliers per output). Fields not in :data:`INPUT_FIELDS` (clock, latencies,
address map, host figures) do not enter the model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dlavm.target.pwl import TABLE_NAMES, table
from dlavm.target.isa import INSN_BYTES, WAIT_UNITS
from dlavm.target.schema import Target, TargetError


@dataclass(frozen=True)
class Resources:
    """FPGA resources: look-up tables, flip-flops, DSP48E2 slices, 36 Kb block RAMs, UltraRAMs."""

    lut: int
    ff: int
    dsp: int
    bram36: int
    uram: int

    def __add__(self, other: "Resources") -> "Resources":
        if not isinstance(other, Resources):
            return NotImplemented
        return Resources(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def as_dict(self) -> dict[str, int]:
        """``{"lut": ..., "ff": ..., "dsp": ..., "bram36": ..., "uram": ...}`` in :data:`KINDS` order."""
        return dataclasses.asdict(self)


#: The resource kinds, in the order of :class:`Resources`' fields.
KINDS = tuple(f.name for f in dataclasses.fields(Resources))
NONE = Resources(0, 0, 0, 0, 0)

# ---------------------------------------------------------------- memories (exact)

#: Data bytes of one BRAM36 (512 x 72-bit words, 64 data bits each; UG573).
BRAM36_BYTES = 4096
#: Data bytes of one URAM288 (4096 x 72-bit words, 64 data bits each; UG573).
URAM_BYTES = 32768
#: Data bits of one word of either memory at its 72-bit width.
MEMORY_WORD_BITS = 64


def _blocks(nbytes: int, width_bits: int, block_bytes: int) -> int:
    if nbytes <= 0:
        return 0
    return max(-(-nbytes // block_bytes), -(-width_bits // MEMORY_WORD_BITS))


def bram36(nbytes: int, width_bits: int) -> int:
    """BRAM36s that hold ``nbytes`` read ``width_bits`` per cycle: enough blocks for the bytes, and at
    least one 64-bit column per 64 bits of port (the count of a ``width_bits``-wide array whose depth
    is a multiple of 512, the usual case)."""
    return _blocks(nbytes, width_bits, BRAM36_BYTES)


def uram(nbytes: int, width_bits: int) -> int:
    """URAMs that hold ``nbytes`` read ``width_bits`` per cycle (as :func:`bram36`, 32 KiB blocks)."""
    return _blocks(nbytes, width_bits, URAM_BYTES)


# ---------------------------------------------------------------- logic coefficients (estimates)

_EST = "Uncalibrated estimate: "

#: name -> (value, reasoning): every coefficient of the area model. Logic values are uncalibrated
#: engineering estimates (the module docstring); synthesis figures of the RTL replace them here.
COEFFICIENTS: dict[str, tuple[float, str]] = {
    # Floating-point operators, shared by the units below.
    "fp32_add_lut": (250, _EST + "a pipelined fp32 adder in fabric: alignment shifter, 24-bit add, leading-zero "
                          "count and normalise shifter, RNE rounding; the order of Xilinx Floating-Point Operator "
                          "(PG060) logic-only adders."),
    "fp32_add_ff": (400, _EST + "pipeline registers of that adder at 200+ MHz (about 10 stages of ~40 bits)."),
    "fp32_mul_dsp": (2, "A 24 x 24-bit significand product needs two DSP48E2 (27 x 18 multipliers) with their "
                        "post-adder; the PG060 'full usage' single multiplier."),
    "fp32_mul_lut": (80, _EST + "exponent add, normalise and RNE rounding around the DSP product."),
    "fp32_mul_ff": (150, _EST + "pipeline registers of that multiplier's fabric part."),
    "fp32_fabric_mul_lut": (600, _EST + "an fp32 multiplier built from LUTs only (24 x 24 partial products, "
                                        "compressor tree, rounding); used where the design keeps DSPs for MACs."),
    "fp32_fabric_mul_ff": (700, _EST + "pipeline registers of the fabric multiplier."),
    "fp32_div_lut": (800, _EST + "a pipelined correctly rounded fp32 divider (radix-2 digit recurrence over "
                                 "26 quotient bits)."),
    "fp32_div_ff": (1400, _EST + "its pipeline: one remainder and quotient register per digit stage."),
    "fp32_sqrt_lut": (500, _EST + "a pipelined correctly rounded fp32 square root (digit recurrence)."),
    "fp32_sqrt_ff": (800, _EST + "its pipeline registers."),

    # MVM engine: lanes = tin * tout * mvm_groups; outputs = tout * mvm_groups.
    "mvm_products_per_dsp": (2, "Two weight products per DSP48E2 sharing the activation: the two weights packed "
                                "into the 27-bit A port, the activation's 12-bit signed fp16 significand on B "
                                "(Xilinx WP486, int8 packing; int4 fits the same way). Follows from operand widths, "
                                "not a fit."),
    "mvm_lut_per_lane": (45, _EST + "per MAC lane: one adder of the exact fixed-point group-sum tree "
                                    "(43 + log2(int4_group) bits at the root, doc/isa.md 7.2; ~30 bits on average at "
                                    "one LUT per bit), the product's exponent alignment (~10) and the int4/int8/fp16 "
                                    "weight unpacking mux (~5)."),
    "mvm_ff_per_lane": (60, _EST + "per MAC lane: the adder tree's stage register (~30 bits) and the packed "
                                   "operand and product registers around the DSP (~30 bits)."),
    "mvm_fp32_add_per_output": (3, "fp32 adders per output: the group accumulation (acc + D_g * s), the affine bias "
                                   "and the residual add (doc/isa.md 7.2, 7.3)."),
    "mvm_fabric_mul_per_output": (2, "fp32 multipliers per output besides the int4 scale products: the affine scale "
                                     "and the residual multiply (doc/isa.md 7.3). Built in fabric so that the "
                                     "engine's DSPs are the MAC array's alone."),
    "mvm_lut_per_output": (400, _EST + "per output: conversion of the ~50-bit exact group sum to fp32 (leading-zero "
                                       "count and shift), ReLU, fp16 rounding and the argmax compare."),
    "mvm_ff_per_output": (500, _EST + "per output: the fp32 accumulator, the conversion pipeline and the argmax "
                                      "record."),

    # Attention array: macs = mat_tin * mat_tout fp16 x fp16 products reduced in fp32.
    "mat_dsp_per_mac": (1, "An fp16 x fp16 product is an 11 x 11-bit significand product: one DSP48E2, exact "
                           "(doc/isa.md 7.4). Follows from operand widths, not a fit."),
    "mat_fp32_add_per_mac": (1, "fp32 adders per MAC: a column of mat_tin products is reduced by a binary tree of "
                                "mat_tin - 1 adders plus its accumulator (the doc/isa.md 7.1 order)."),
    "mat_lut_per_mac": (30, _EST + "per MAC: exponent add and sign of the product and its fp32 assembly."),
    "mat_ff_per_mac": (50, _EST + "per MAC: operand and product registers."),

    # SFU: sfu_lanes fp32 lanes; the shared fp32 adder tree of tree_lanes lanes.
    "sfu_fp32_mul_per_lane": (2, "fp32 multipliers per SFU lane: x * r and the gamma product (rmsnorm, "
                                 "layernorm), the PWL slope product, the RoPE rotation pairs (doc/isa.md 7.5, 7.6)."),
    "sfu_fp32_add_per_lane": (2, "fp32 adders per SFU lane: x - mu and the beta or eps add, the PWL intercept, "
                                 "eltwise add/sub."),
    "sfu_fp32_div_per_lane": (1, "fp32 dividers per SFU lane: softmax's e / s is a correctly rounded division per "
                                 "element (doc/isa.md 7.5), not a reciprocal product."),
    "sfu_lut_per_lane": (300, _EST + "per lane: PWL segment index, max compare, fp16 <-> fp32 conversion, the RoPE "
                                     "pair swizzle and the eltwise broadcast index."),
    "sfu_ff_per_lane": (400, _EST + "per lane: operand and result registers."),
    "sfu_fp32_sqrt": (1, "fp32 square roots in the SFU: one per row (rmsnorm and layernorm's 1 / sqrt), shared by "
                         "the lanes."),
    "sfu_lut_control": (2000, _EST + "row sequencing, the causal mask of softmax and the row statistics "
                                     "registers, once per SFU."),
    "sfu_ff_control": (3000, _EST + "the SFU's control and row-statistics registers."),
    "sfu_lanes_per_table": (2, "SFU lanes served by one copy of a PWL table: a BRAM is true dual port, two "
                               "lookups per cycle."),
    "sfu_tables": (2, "PWL table copies per lane pair: the act table the instruction loads and the softmax exponent "
                      "ROM (doc/isa.md 7.6), each sized for the largest built-in table."),

    # DMA: one AXI port per HBM channel plus the DDR port.
    "dma_lut_per_port": (1500, _EST + "per AXI port: read and write engines, address generation and burst "
                                      "splitting, outstanding-transaction tracking."),
    "dma_ff_per_port": (2500, _EST + "per AXI port: address, length and response registers of the outstanding "
                                     "transactions."),
    "dma_lut_per_bit": (2, _EST + "per data bit of every port: the channel interleave reorder and the operand "
                                  "routing mux to the units."),
    "dma_ff_per_bit": (3, _EST + "per data bit of every port: pipeline registers from the HBM edge of the die to the "
                                 "compute units across super logic regions."),
    "dma_fifos_per_port": (2, "Burst FIFOs per port: one read, one write."),
    "dma_fifo_bursts": (2, "Bursts one FIFO holds: a burst in flight while the previous one drains."),

    # On-chip buffers: the SRAM region and the activation buffer, in URAM.
    "buffer_lut_per_uram": (40, _EST + "per URAM: bank select and the read mux past the built-in cascade."),
    "buffer_ff_per_uram": (60, _EST + "per URAM: the output pipeline register a cascade needs at 200+ MHz."),

    # Front end: one queue of queue_depth instructions per unit that can be waited for.
    "frontend_lut_per_queued_bit": (0.25, _EST + "per bit of every queue entry: a queue_depth:1 read mux, about "
                                                 "a quarter LUT per entry bit with the slices' wide muxes."),
    "frontend_ff_per_queued_bit": (1, _EST + "per bit of every queue entry: the queues are registers (LUT RAM "
                                           "would trade these for LUTs)."),
    "frontend_lut": (6000, _EST + "decode, the wait-mask scoreboard, the register map, the AUX sequencer's fetch and "
                                  "the host register interface."),
    "frontend_ff": (9000, _EST + "their registers."),
}


def _c(name: str) -> float:
    return COEFFICIENTS[name][0]


# ---------------------------------------------------------------- the units

#: Target fields the model reads.
INPUT_FIELDS = ("tin", "tout", "mvm_groups", "int4_group", "mat_tin", "mat_tout", "sfu_lanes", "tree_lanes",
                "hbm_channels", "hbm_bits_per_cycle", "ddr_bits_per_cycle", "dma_burst_bytes", "sram_bytes",
                "act_buffer_bytes", "queue_depth")
#: The input fields that are sizes: every count is non-decreasing in each.
SIZE_FIELDS = tuple(f for f in INPUT_FIELDS if f != "int4_group")


def _logic(lut: float, ff: float, dsp: float = 0, bram: int = 0, urams: int = 0) -> Resources:
    return Resources(math.ceil(lut), math.ceil(ff), math.ceil(dsp), bram, urams)


def _fp32_ops(adds: float = 0, muls: float = 0, fabric_muls: float = 0, divs: float = 0,
              sqrts: float = 0) -> tuple[float, float, float]:
    """(LUT, FF, DSP) of that many fp32 operators."""
    lut = (adds * _c("fp32_add_lut") + muls * _c("fp32_mul_lut") + fabric_muls * _c("fp32_fabric_mul_lut")
           + divs * _c("fp32_div_lut") + sqrts * _c("fp32_sqrt_lut"))
    ff = (adds * _c("fp32_add_ff") + muls * _c("fp32_mul_ff") + fabric_muls * _c("fp32_fabric_mul_ff")
          + divs * _c("fp32_div_ff") + sqrts * _c("fp32_sqrt_ff"))
    return lut, ff, muls * _c("fp32_mul_dsp")


def _mvm(t: Target) -> Resources:
    """Tin x Tout MAC lanes per channel group and an fp32 epilogue per output (doc/isa.md 7.2, 7.3)."""
    lanes = t.tin * t.tout * t.mvm_groups
    outputs = t.tout * t.mvm_groups
    # A Tin-wide slice holds tin / int4_group whole groups when tin > int4_group: one scale product each.
    scale_muls = max(1, t.tin // t.int4_group)
    lut, ff, _ = _fp32_ops(adds=_c("mvm_fp32_add_per_output"),
                           fabric_muls=_c("mvm_fabric_mul_per_output") + scale_muls)
    return _logic(lut=lanes * _c("mvm_lut_per_lane") + outputs * (lut + _c("mvm_lut_per_output")),
                  ff=lanes * _c("mvm_ff_per_lane") + outputs * (ff + _c("mvm_ff_per_output")),
                  dsp=-(-lanes // _c("mvm_products_per_dsp")))   # integer ceil: exact for any lane count


def _mat(t: Target) -> Resources:
    """The fp16 attention array: mat_tin x mat_tout products and their fp32 reduction (doc/isa.md 7.4)."""
    macs = t.mat_tin * t.mat_tout
    lut, ff, _ = _fp32_ops(adds=_c("mat_fp32_add_per_mac"))
    return _logic(lut=macs * (lut + _c("mat_lut_per_mac")), ff=macs * (ff + _c("mat_ff_per_mac")),
                  dsp=macs * _c("mat_dsp_per_mac"))


def _largest_table_bytes() -> int:
    return max(table(name).entries.nbytes for name in TABLE_NAMES)


def _sfu(t: Target) -> Resources:
    """sfu_lanes fp32 lanes, one shared square root, the tree_lanes adder tree and the PWL tables."""
    lanes = t.sfu_lanes
    lane_lut, lane_ff, lane_dsp = _fp32_ops(adds=_c("sfu_fp32_add_per_lane"), muls=_c("sfu_fp32_mul_per_lane"),
                                            divs=_c("sfu_fp32_div_per_lane"))
    shared_lut, shared_ff, _ = _fp32_ops(sqrts=_c("sfu_fp32_sqrt"))
    tree_lut, tree_ff, _ = _fp32_ops(adds=t.tree_lanes - 1)   # a binary tree of T lanes has T - 1 adders
    table_copies = math.ceil(lanes / _c("sfu_lanes_per_table")) * _c("sfu_tables")
    entry_bits = 2 * 32                                        # (slope, intercept) fp32 pair, doc/isa.md 6
    return _logic(lut=lanes * (lane_lut + _c("sfu_lut_per_lane")) + shared_lut + _c("sfu_lut_control") + tree_lut,
                  ff=lanes * (lane_ff + _c("sfu_ff_per_lane")) + shared_ff + _c("sfu_ff_control") + tree_ff,
                  dsp=lanes * lane_dsp,
                  bram=int(table_copies) * bram36(_largest_table_bytes(), entry_bits))


def _dma(t: Target) -> Resources:
    """One AXI port per HBM channel and one for DDR, each with its burst FIFOs."""
    ports = [t.hbm_bits_per_cycle] * t.hbm_channels + [t.ddr_bits_per_cycle]
    fifo_bytes = int(_c("dma_fifo_bursts")) * t.dma_burst_bytes
    bits = sum(ports)
    return _logic(lut=len(ports) * _c("dma_lut_per_port") + bits * _c("dma_lut_per_bit"),
                  ff=len(ports) * _c("dma_ff_per_port") + bits * _c("dma_ff_per_bit"),
                  bram=sum(int(_c("dma_fifos_per_port")) * bram36(fifo_bytes, width) for width in ports))


def _buffers(t: Target) -> Resources:
    """The SRAM region and the activation buffer in URAM, each read at the MVM's activation width
    (tin fp16 values per cycle per channel group)."""
    width = t.tin * 16 * t.mvm_groups
    n = uram(t.sram_bytes, width) + uram(t.act_buffer_bytes, width)
    return _logic(lut=n * _c("buffer_lut_per_uram"), ff=n * _c("buffer_ff_per_uram"), urams=n)


def _frontend(t: Target) -> Resources:
    """Decode, scoreboard, register map, AUX sequencer, and one instruction queue per unit of WAIT_UNITS."""
    queued_bits = len(WAIT_UNITS) * t.queue_depth * INSN_BYTES * 8
    return _logic(lut=_c("frontend_lut") + queued_bits * _c("frontend_lut_per_queued_bit"),
                  ff=_c("frontend_ff") + queued_bits * _c("frontend_ff_per_queued_bit"))


#: unit name -> its formula, in report order.
UNITS = {"mvm": _mvm, "mat": _mat, "sfu": _sfu, "dma": _dma, "buffers": _buffers, "frontend": _frontend}


def estimate(target: Target) -> dict[str, Resources]:
    """The resources of each unit of :data:`UNITS` (in that order), then ``"total"``, their sum.

    Memories are exact counts; logic is an uncalibrated estimate (module docstring).
    """
    units = {name: formula(target) for name, formula in UNITS.items()}
    units["total"] = sum(units.values(), NONE)
    return units


def total(target: Target) -> Resources:
    """The resources of the whole core: ``estimate(target)["total"]``."""
    return estimate(target)["total"]


# ---------------------------------------------------------------- FPGA parts

_XCVU37P = Resources(lut=1_303_680, ff=2_607_360, dsp=9_024, bram36=2_016, uram=960)

#: FPGA parts a report can check against: name -> (capacity, source).
PARTS: dict[str, tuple[Resources, str]] = {
    "xcvu37p": (_XCVU37P, "Xilinx DS890, Virtex UltraScale+ FPGAs Data Sheet: Overview (XCVU37P, the device of "
                          "the VCU128 board)"),
    "xcu280": (_XCVU37P, "Xilinx DS963, Alveo U280 Data Center Accelerator Card Data Sheet (the whole device; its "
                         "platform shell takes part of it)"),
}


def part_capacity(part: str) -> Resources:
    """The capacity of ``part`` (case-insensitive); an unknown part is a TargetError naming the known ones."""
    key = part.lower() if isinstance(part, str) else part
    if key not in PARTS:
        raise TargetError(f"unknown FPGA part {part!r}; known parts: {', '.join(sorted(PARTS))}")
    return PARTS[key][0]


def utilisation(res: Resources, part: str) -> dict[str, float]:
    """Each resource kind of ``res`` as a fraction of ``part``'s capacity (1.0 = all of it)."""
    cap = part_capacity(part).as_dict()
    return {k: v / cap[k] for k, v in res.as_dict().items()}


def exceeded(res: Resources, part: str) -> list[str]:
    """The resource kinds (in :data:`KINDS` order) of which ``res`` needs more than ``part`` has."""
    cap = part_capacity(part).as_dict()
    return [k for k, v in res.as_dict().items() if v > cap[k]]


__all__ = ["Resources", "KINDS", "COEFFICIENTS", "UNITS", "INPUT_FIELDS", "SIZE_FIELDS", "PARTS",
           "BRAM36_BYTES", "URAM_BYTES", "bram36", "uram", "estimate", "total", "part_capacity", "utilisation",
           "exceeded"]
