"""The device description schema: every hardware parameter, as plain data.

A :class:`Target` is a frozen dataclass of primitive fields (ints, floats,
strings, a tuple of format names). Nothing here is derived: every figure
computed from these fields (peak MAC/cycle, bytes/cycle, roofline, address
map sizes, host latency in cycles) lives in :mod:`dlavm.target.derived`, and is
reached through ``target.figures``. Variants are other instances of the same
schema, never subclasses.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

#: Weight formats the ISA can encode (see doc/isa.md, "MVM weight formats").
KNOWN_WEIGHT_FORMATS = ("int4", "int8", "fp16")

#: Byte granule of every device address field in an instruction (doc/isa.md).
ADDRESS_UNIT = 32


class TargetError(ValueError):
    """A device description is malformed; the message names the field."""


@dataclass(frozen=True)
class Target:
    """One accelerator, described as data. Units are in the field names.

    Every field but ``description`` and the HBM-model fields (``hbm_mts`` ..
    ``aux_fetch_bytes``, :data:`OPTIONAL_FIELDS`) is required: the built-in
    ``vcu128.json`` is the one place the reference values are written, and
    variants inherit them with ``"base": "vcu128"`` (see loader.py). An HBM-model
    field left out means its effect is absent (0: an ideal memory behind the
    ports, the timing model before it had these effects).

    Guarantees after construction: every field has its declared type exactly
    (an ``int`` field holds an integer, never a float or a bool; a ``float``
    field is finite), every integer field is positive where a size or count
    is meant, the three memory regions do not overlap and fit
    in ``address_bits``, and ``weight_formats`` only names formats the ISA
    knows. A violation raises :class:`TargetError` naming the field.
    """

    name: str
    clock_mhz: float

    # Off-chip memory. HBM addresses are interleaved across channels every
    # ``hbm_interleave_bytes`` (doc/simulator.md, "Memory model").
    hbm_channels: int
    hbm_bits_per_cycle: int
    hbm_channel_bytes: int
    hbm_interleave_bytes: int
    ddr_bytes: int
    ddr_bits_per_cycle: int

    # On-chip memory: the SRAM region is the addressable scratch buffer;
    # the activation buffer bounds one MVM's activation operand (M x K fp16).
    sram_bytes: int
    act_buffer_bytes: int

    # Address map (byte addresses of the three regions).
    hbm_base: int
    ddr_base: int
    sram_base: int
    address_bits: int
    mem_align_bytes: int

    # MVM engine: Tin inputs x Tout outputs per cycle per channel group.
    tin: int
    tout: int
    mvm_groups: int
    mvm_latency: int
    weight_formats: tuple[str, ...]

    # Numerics parameters (doc/isa.md section 7): input channels per int4
    # scale, input channels per exact int8 block, lanes of the fp32 adder tree.
    int4_group: int
    int8_block: int
    tree_lanes: int

    # fp16 matrix (attention) path.
    mat_tin: int
    mat_tout: int
    mat_latency: int

    # Special-function unit: elements per cycle per pass.
    sfu_lanes: int
    sfu_latency: int

    # DMA / HBM access costs.
    dma_burst_bytes: int
    dma_setup_cycles: int
    burst_overhead_cycles: int
    dma_latency: int

    # Host interface and sequencing.
    host_rtt_us: float
    host_bytes_per_cycle: int
    aux_cycles_per_insn: int
    queue_depth: int
    max_seq_len: int
    description: str = ""

    # HBM pseudo-channel model behind each port (doc/simulator.md, "HBM model"; 0 = effect absent).
    # HBM side: data rate per pin (MT/s) x pseudo-channel width; refresh: tRFC every tREFI (all-bank);
    # a new stream on a channel opens a row (tRP + tRCD); a read<->write switch costs tRTW / tWTR;
    # a port keeps at most hbm_outstanding bursts of dma_burst_bytes in flight, each dma_setup_cycles long.
    hbm_mts: int = 0
    hbm_pc_bits: int = 64
    hbm_trefi_ns: int = 0
    hbm_trfc_ns: int = 0
    hbm_trcd_ns: int = 0
    hbm_trp_ns: int = 0
    hbm_trtw_ns: int = 0
    hbm_twtr_ns: int = 0
    hbm_outstanding: int = 0
    # Bytes the AUX sequencer fetches per stream entry, charged to the memory holding the stream (0: free).
    aux_fetch_bytes: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field_type(self.name, f.name, f.type, getattr(self, f.name))
        object.__setattr__(self, "weight_formats", tuple(self.weight_formats))
        if not self.weight_formats:
            raise TargetError(f"target {self.name!r}: field weight_formats is empty; give at least one of "
                              f"{KNOWN_WEIGHT_FORMATS}")
        for fmt in self.weight_formats:
            if fmt not in KNOWN_WEIGHT_FORMATS:
                raise TargetError(f"target {self.name!r}: weight format {fmt!r} unknown; "
                                  f"the ISA knows {KNOWN_WEIGHT_FORMATS}")
        if self.mem_align_bytes % ADDRESS_UNIT:
            raise TargetError(f"target {self.name!r}: mem_align_bytes must be a multiple of {ADDRESS_UNIT}")
        _check_numerics(self)
        _check_hbm_model(self)
        for name in ("hbm_bits_per_cycle", "ddr_bits_per_cycle"):
            if getattr(self, name) % 8:
                raise TargetError(f"target {self.name!r}: {name} must be a multiple of 8")
        if self.hbm_interleave_bytes % ADDRESS_UNIT:
            raise TargetError(f"target {self.name!r}: hbm_interleave_bytes must be a multiple of {ADDRESS_UNIT}")
        regions = sorted([("hbm", self.hbm_base, self.hbm_channels * self.hbm_channel_bytes),
                          ("ddr", self.ddr_base, self.ddr_bytes),
                          ("sram", self.sram_base, self.sram_bytes)], key=lambda r: r[1])
        for (n0, b0, s0), (n1, b1, _) in zip(regions, regions[1:]):
            if b0 + s0 > b1:
                raise TargetError(f"target {self.name!r}: region {n0} [{b0:#x}, {b0 + s0:#x}) "
                                  f"overlaps region {n1} at {b1:#x}")
        for n, b, s in regions:
            if b % ADDRESS_UNIT:
                raise TargetError(f"target {self.name!r}: {n}_base {b:#x} is not {ADDRESS_UNIT}-byte aligned")
            if b + s > (1 << self.address_bits):
                raise TargetError(f"target {self.name!r}: region {n} ends at {b + s:#x}, "
                                  f"past address_bits={self.address_bits}")
        if self.address_bits > 32 + ADDRESS_UNIT.bit_length() - 1:
            raise TargetError(f"target {self.name!r}: address_bits={self.address_bits} exceeds what a "
                              f"32-bit address field in units of {ADDRESS_UNIT} bytes can reach (37)")

    @cached_property
    def figures(self):
        """Every derived figure (:class:`dlavm.target.derived.Figures`), computed once."""
        from dlavm.target.derived import derive
        return derive(self)

    def to_dict(self) -> dict[str, Any]:
        """The description as JSON-ready data (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["weight_formats"] = list(self.weight_formats)
        return d

    def fingerprint(self) -> str:
        """sha256 of every field (sorted JSON): artifacts record it, and loading
        refuses an artifact whose target description differs."""
        import hashlib
        import json
        # an HBM-model field at its default (effect absent) is left out, so targets described before those
        # fields existed keep their fingerprint (and their artifacts stay loadable)
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in OPTIONAL_FIELDS}
        d = {k: v for k, v in self.to_dict().items()
             if k == "description" or k not in defaults or v != defaults[k]}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def replace(self, **changes: Any) -> "Target":
        """A variant of this target with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


#: Significant bits of one fp16 x weight product, as an integer multiple of 2**-24
#: (doc/isa.md 7.2): fp16 magnitudes are below 2**16, |int4| <= 8 = 2**3, |int8| <= 128 = 2**7.
_PRODUCT_BITS = {"int4": 24 + 16 + 3, "int8": 24 + 16 + 7}
#: Bits float64 holds exactly: a block's partial sums must fit for any summation order.
_EXACT_BITS = 53


def _power_of_two(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def exact_block_limit(fmt: str) -> int:
    """Largest block of ``fmt`` products whose sum float64 holds exactly (int4: 1024, int8: 64)."""
    return 1 << (_EXACT_BITS - _PRODUCT_BITS[fmt])


def _check_numerics(t: "Target") -> None:
    """Refuse numerics parameters the simulator and the kernels cannot honour (names field, value, rule)."""
    def refuse(name: str, rule: str) -> None:
        raise TargetError(f"target {t.name!r}: {name}={getattr(t, name)} {rule}")

    for name in ("int4_group", "tree_lanes"):
        if not _power_of_two(getattr(t, name)) or getattr(t, name) < 2:
            refuse(name, "must be a power of two >= 2 (binary adder tree / packed nibble pairs)")
    if t.int4_group > exact_block_limit("int4"):
        refuse("int4_group", f"exceeds {exact_block_limit('int4')}: a group's exact dot product would need "
                             f"more than {_EXACT_BITS} bits (doc/isa.md 7.2)")
    if t.int4_group % t.tin and t.tin % t.int4_group:
        refuse("int4_group", f"and tin={t.tin} must divide one another: every Tin-wide slice of a weight row "
                             "lies in one scale group or holds whole groups")
    if t.int8_block > exact_block_limit("int8"):
        refuse("int8_block", f"exceeds {exact_block_limit('int8')}: a block's exact dot product would need "
                             f"more than {_EXACT_BITS} bits (doc/isa.md 7.2)")


def _check_hbm_model(t: "Target") -> None:
    """Refuse HBM-model fields that contradict one another (names the field, its value and the rule)."""
    def refuse(name: str, rule: str) -> None:
        raise TargetError(f"target {t.name!r}: field {name} = {getattr(t, name)!r} {rule}")

    if (t.hbm_trefi_ns == 0) != (t.hbm_trfc_ns == 0):
        refuse("hbm_trfc_ns", f"and hbm_trefi_ns = {t.hbm_trefi_ns} must both be 0 (no refresh) or both > 0")
    if t.hbm_trfc_ns and t.hbm_trfc_ns >= t.hbm_trefi_ns:
        refuse("hbm_trfc_ns", f"must be below hbm_trefi_ns = {t.hbm_trefi_ns} (refresh would take all the time)")
    if t.hbm_trfc_ns and not t.hbm_mts:
        refuse("hbm_trfc_ns", "needs hbm_mts > 0: refresh is modelled on the HBM side of the port")
    if t.aux_fetch_bytes not in (0, 64):
        refuse("aux_fetch_bytes", "must be 0 (fetch not charged) or 64 (one AUX stream entry, doc/isa.md)")


#: Largest value of an integer field: the C++ runtime holds every field in a signed 64-bit integer.
INT_FIELD_MAX = 2**63 - 1


def _check_field_type(target: object, name: str, kind: str, value: object) -> None:
    """Refuse a field value of the wrong type or range, naming the field, the value and the rule.

    ``int`` fields take JSON integers only (no ``2.5``, no ``2.0``, no ``true``), in
    ``[1, INT_FIELD_MAX]`` (``[0, ...]`` for the fields of ``_MAY_BE_ZERO``); ``float`` fields take
    finite numbers > 0 (integers too, never booleans); ``str`` fields take strings (``name`` not
    empty); ``weight_formats`` takes a list of strings.
    """
    def refuse(rule: str) -> None:
        raise TargetError(f"target {target!r}: field {name} = {value!r} {rule}")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            refuse(f"must be an integer, not {type(value).__name__}")
        low = 0 if name in _MAY_BE_ZERO else 1
        if not low <= value <= INT_FIELD_MAX:
            refuse(f"must be in [{low}, 2**63 - 1]")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse(f"must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or value <= 0:
            refuse("must be a finite number > 0")
    elif kind == "str":
        if not isinstance(value, str):
            refuse(f"must be a string, not {type(value).__name__}")
        if name == "name" and not value.strip():
            refuse("must not be empty")
    elif not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        refuse("must be a list of format names (strings)")


#: Fields a target file may leave out: their default means "absent" (see :class:`Target`).
OPTIONAL_FIELDS = ("description", "hbm_mts", "hbm_pc_bits", "hbm_trefi_ns", "hbm_trfc_ns", "hbm_trcd_ns",
                   "hbm_trp_ns", "hbm_trtw_ns", "hbm_twtr_ns", "hbm_outstanding", "aux_fetch_bytes")

_MAY_BE_ZERO = {"hbm_base", "burst_overhead_cycles", "dma_latency", "mvm_latency",
                "mat_latency", "sfu_latency", "dma_setup_cycles"} | (set(OPTIONAL_FIELDS) - {"description",
                                                                                               "hbm_pc_bits"})

FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Target))


def target_from_dict(data: dict[str, Any], base: Target | None = None) -> Target:
    """Build a Target from plain data, optionally as overrides of ``base``.

    Unknown keys raise :class:`TargetError` naming them, so a typo in a user
    target file never silently falls back to a default.
    """
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise TargetError(f"unknown target field(s) {unknown}; known fields: {', '.join(FIELD_NAMES)}")
    values = dict(data)
    if base is None:
        if "name" not in values:
            raise TargetError("a target needs a 'name' (or a 'base' to inherit from)")
        missing = [f for f in FIELD_NAMES if f not in values and f not in OPTIONAL_FIELDS]
        if missing:
            raise TargetError(f"target {values['name']!r} lacks field(s) {missing}; give them or "
                              "inherit them with \"base\": \"vcu128\"")
        return Target(**values)
    return dataclasses.replace(base, **values)


__all__ = ["Target", "TargetError", "target_from_dict", "FIELD_NAMES", "OPTIONAL_FIELDS", "KNOWN_WEIGHT_FORMATS",
           "ADDRESS_UNIT", "exact_block_limit"]
