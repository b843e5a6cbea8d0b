"""The single definition of the instruction format and the host register map.

Everything a compiler backend, driver, debugger or simulator needs to turn
an instruction into bits and back lives here as data (:data:`OPS`,
:data:`REGISTERS`) plus pure encode/decode functions. The *meaning* of each
instruction is specified in doc/isa.md and implemented independently by the
simulator (``hw_models``); this module knows only where the bits go.

Instruction word: ``INSN_WORDS`` (16) little-endian 32-bit words, 64 bytes.
Word 0 holds the opcode (bits 7:0) and the wait mask (bits 15:8, one bit per
unit in :data:`WAIT_UNITS`); word 1 packs the small fields (flags, enums) of
an opcode LSB first; every 32-bit field takes one word from word 2 on.
Address fields hold byte address / ``ADDRESS_UNIT`` (32), so device
addresses reach 2**37 bytes and are aligned by construction.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from dlavm.target.schema import ADDRESS_UNIT

INSN_WORDS = 16
INSN_BYTES = INSN_WORDS * 4
#: Units an instruction can wait for, in wait-mask bit order.
WAIT_UNITS = ("dma", "mvm", "mat", "sfu")
#: All execution units; "seq" is the issue stage itself (NOP, FENCE).
UNITS = WAIT_UNITS + ("seq",)
#: Head dims of ``kv_append``, ``mat_qk`` and ``mat_pv`` must be a multiple of this (doc/isa.md
#: sections 2 and 8: 16 fp16 lanes = one 32-byte row); ``dlavm.passes.pad_heads`` pads other head dims.
HEAD_DIM_MULTIPLE = 16
#: Head dims of ``rope`` must be a multiple of this (doc/isa.md section 8).
ROPE_DIM_MULTIPLE = 8
#: Bytes of one ``mvm`` argmax record per row: int32 index then fp32 value (doc/isa.md, ``mvm``).
ARGMAX_RECORD_BYTES = 8


class EncodingError(ValueError):
    """An instruction or register access cannot be encoded; names the field."""


class UnalignedAddressError(EncodingError):
    """An address field is not a multiple of ``ADDRESS_UNIT`` bytes."""


@dataclass(frozen=True)
class Field:
    """One field of an instruction: bits ``[lo, lo + width)`` of word ``word``.

    ``kind``: ``uint`` (unsigned int), ``addr`` (byte address, stored / 32),
    ``f32`` (IEEE binary32 bits), ``flag`` (1 bit bool), ``enum`` (index into
    ``choices``).
    """

    name: str
    word: int
    lo: int
    width: int
    kind: str
    choices: tuple[str, ...] = ()
    doc: str = ""

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def default(self) -> Any:
        return {"flag": False, "enum": self.choices[0] if self.choices else 0, "f32": 0.0}.get(self.kind, 0)


@dataclass(frozen=True)
class OpFormat:
    """An opcode: its mnemonic, executing unit and field layout."""

    mnemonic: str
    opcode: int
    unit: str
    fields: tuple[Field, ...]
    doc: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise EncodingError(f"{self.mnemonic}: no field {name!r}; fields are "
                            f"{[f.name for f in self.fields]}")

    def field_offset(self, name: str) -> int:
        """Byte offset of a field's word inside the 64-byte instruction.

        Drivers use it to patch a dynamic field (token count, KV length) of a
        pre-packed AUX stream in device memory.
        """
        return self.field(name).word * 4


def _op(mnemonic: str, opcode: int, unit: str, doc: str, *specs: tuple) -> OpFormat:
    """Lay out fields: small ones packed into word 1, 32-bit ones from word 2."""
    fields, bit, word = [], 0, 2
    for spec in specs:
        name, kind, arg, fdoc = spec
        if kind == "flag":
            width, choices = 1, ()
        elif kind == "enum":
            choices = tuple(arg)
            width, choices = max(1, (len(choices) - 1).bit_length()), choices
        else:
            width, choices = 32, ()
        if width < 32:
            if bit + width > 32:
                raise AssertionError(f"{mnemonic}: small fields overflow word 1")
            fields.append(Field(name, 1, bit, width, kind, choices, fdoc))
            bit += width
        else:
            if word >= INSN_WORDS:
                raise AssertionError(f"{mnemonic}: too many fields")
            fields.append(Field(name, word, 0, 32, kind, choices, fdoc))
            word += 1
    return OpFormat(mnemonic, opcode, unit, tuple(fields), doc)


def _a(name: str, doc: str) -> tuple:
    return (name, "addr", None, doc)


def _u(name: str, doc: str) -> tuple:
    return (name, "uint", None, doc)


def _f(name: str, doc: str) -> tuple:
    return (name, "f32", None, doc)


def _flag(name: str, doc: str) -> tuple:
    return (name, "flag", None, doc)


def _enum(name: str, choices: Iterable[str], doc: str) -> tuple:
    return (name, "enum", tuple(choices), doc)


WEIGHT_FORMATS = ("int4", "int8", "fp16")
RESIDUAL_MODES = ("none", "add", "mul")
ELTWISE_OPS = ("add", "sub", "mul")

OPS: tuple[OpFormat, ...] = (
    _op("nop", 0x00, "seq", "Does nothing (still honours its wait mask)."),
    _op("fence", 0x01, "seq", "Later instructions (of every unit) start only after all instructions issued "
        "so far to the units in its wait mask have completed."),
    _op("dma", 0x08, "dma", "2-D copy: rows x row_bytes from src to dst with byte strides.",
        _a("src", "source address"), _a("dst", "destination address"),
        _u("row_bytes", "bytes per row (multiple of 32)"), _u("rows", "row count"),
        _u("src_stride", "source row stride in bytes (multiple of 32)"),
        _u("dst_stride", "destination row stride in bytes (multiple of 32)")),
    _op("mvm", 0x10, "mvm", "out[M,N] = epilogue(x[M,K] . W[N,K]^T) with fp32 accumulation.",
        _enum("wfmt", WEIGHT_FORMATS, "weight format"),
        _flag("affine", "apply per-channel fp16 scale and bias"),
        _enum("res", RESIDUAL_MODES, "residual operation with res[M,N] fp16"),
        _flag("relu", "apply ReLU"), _flag("argmax", "write (index, value) per row instead of out"),
        _flag("out_fp32", "write fp32 instead of fp16"),
        _a("x", "activations fp16 [M,K]"), _a("w", "weights (layout per wfmt)"),
        _a("wscale", "weight scales fp16 (int4: [N,ceil(K/G)], int8: [N])"),
        _a("out", "output [M,N] (or [M] argmax records)"),
        _a("aff", "affine fp16 [2,N]: scale row then bias row"), _a("resid", "residual fp16 [M,N]"),
        _u("m", "rows (tokens)"), _u("k", "input channels"), _u("n", "output channels")),
    _op("mat_qk", 0x18, "mat", "S[h,m,l] = scale * Q[m,h,:] . K[h/g,l,:] (fp16 x fp16).",
        _flag("out_fp32", "write fp32 scores instead of fp16"),
        _a("q", "queries fp16 [M,H,D]"), _a("kc", "keys fp16 [HKV, *, D], head stride k_stride"),
        _a("out", "scores [H,M,L]"), _u("m", "query tokens"), _u("heads", "query heads H"),
        _u("kv_heads", "key/value heads HKV (divides H)"), _u("l", "key length L"),
        _u("d", "head dim D (multiple of 16)"), _u("k_stride", "bytes between key heads (multiple of 32)"),
        _f("scale", "fp32 score scale, usually 1/sqrt(D)")),
    _op("mat_pv", 0x19, "mat", "O[m,h,:] = sum_l P[h,m,l] * V[h/g,l,:] (fp16 x fp16).",
        _a("p", "probabilities fp16 [H,M,L]"), _a("vc", "values fp16 [HKV, *, D], head stride v_stride"),
        _a("out", "output fp16 [M,H,D]"), _u("m", "query tokens"), _u("heads", "query heads H"),
        _u("kv_heads", "key/value heads HKV"), _u("l", "key length L"), _u("d", "head dim D (multiple of 16)"),
        _u("v_stride", "bytes between value heads (multiple of 32)")),
    _op("rmsnorm", 0x20, "sfu", "y = x / sqrt(mean(x^2) + eps) * gamma, per row.",
        _a("src", "input fp16 [rows,cols]"), _a("dst", "output fp16 [rows,cols]"),
        _a("gamma", "weight fp16 [cols]"), _u("rows", "rows"), _u("cols", "row length"),
        _f("eps", "fp32 epsilon")),
    _op("layernorm", 0x21, "sfu", "y = (x - mean) / sqrt(var + eps) * gamma + beta, per row.",
        _a("src", "input fp16 [rows,cols]"), _a("dst", "output fp16 [rows,cols]"),
        _a("gamma", "weight fp16 [cols]"), _a("beta", "bias fp16 [cols]"),
        _u("rows", "rows"), _u("cols", "row length"), _f("eps", "fp32 epsilon")),
    _op("softmax", 0x22, "sfu", "Row softmax with optional causal mask; fp16 output.",
        _flag("in_fp32", "input is fp32 (else fp16)"), _flag("causal", "mask keys after the query position"),
        _a("src", "scores [rows,cols]"), _a("dst", "probabilities fp16 [rows,cols]"),
        _u("rows", "rows (H*M)"), _u("cols", "row length L"),
        _u("m", "queries per head: row r is query r mod m"), _u("pos0", "position of query 0")),
    _op("eltwise", 0x23, "sfu", "dst[i] = a[i] fn b[i mod period] (fn: add|sub|mul) over count fp16 values; "
        "period 0 means count (no broadcast), else b is a row repeated count/period times.",
        _enum("fn", ELTWISE_OPS, "operation"), _a("a", "fp16 [count]"), _a("b", "fp16 [period or count]"),
        _a("dst", "fp16 [count]"), _u("count", "elements"),
        _u("period", "elements of b (divides count; 0: b has count elements)")),
    _op("act", 0x24, "sfu", "Piecewise-linear activation from a table in memory.",
        _a("src", "fp16 [count]"), _a("dst", "fp16 [count]"),
        _a("table", "fp32 [nseg+2][2] (slope, intercept)"), _u("count", "elements"),
        _u("nseg", "interior segments"), _f("lo", "fp32 left breakpoint"),
        _f("inv_step", "fp32 segments per unit input")),
    _op("rope", 0x25, "sfu", "Rotary embedding of [M,H,D] fp16 at positions pos0..pos0+M-1.",
        _flag("interleaved", "rotate pairs (2i,2i+1) instead of halves (i, i+D/2)"),
        _a("src", "fp16 [M,H,D]"), _a("dst", "fp16 [M,H,D]"),
        _a("table", "fp32 [positions][D]: D/2 cosines then D/2 sines"),
        _u("m", "tokens"), _u("heads", "heads"), _u("d", "head dim (multiple of 8)"), _u("pos0", "first position")),
    _op("kv_append", 0x26, "sfu", "cache[h, pos+m, :] = src[m, h, :] (fp16 copy into the KV cache).",
        _a("src", "fp16 [M,HKV,D]"), _a("dst", "cache base fp16 [HKV, capacity, D]"),
        _u("m", "tokens"), _u("kv_heads", "heads"), _u("d", "head dim (multiple of 16)"),
        _u("pos", "first position"),
        _u("head_stride", "bytes between cache heads (multiple of 32)"),
        _u("capacity", "cache length per head (positions)")),
)

OPS_BY_NAME: dict[str, OpFormat] = {op.mnemonic: op for op in OPS}
OPS_BY_CODE: dict[int, OpFormat] = {op.opcode: op for op in OPS}


def op_format(mnemonic: str) -> OpFormat:
    try:
        return OPS_BY_NAME[mnemonic]
    except KeyError:
        raise EncodingError(f"unknown instruction {mnemonic!r}; known: {sorted(OPS_BY_NAME)}") from None


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction: mnemonic, every field's value, and its wait set.

    Built with :func:`make` so that every field is present (defaults filled
    in); two instructions that encode to the same bits compare equal.
    """

    op: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    wait: frozenset[str] = frozenset()

    @property
    def format(self) -> OpFormat:
        return op_format(self.op)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instruction) and encode(self) == encode(other)

    def __hash__(self) -> int:
        return hash(tuple(encode(self)))


def make(op: str, wait: Iterable[str] = (), **values: Any) -> Instruction:
    """An :class:`Instruction` with all fields (unspecified ones default to 0/False/first choice)."""
    fmt = op_format(op)
    names = {f.name for f in fmt.fields}
    unknown = sorted(set(values) - names)
    if unknown:
        raise EncodingError(f"{op}: unknown field(s) {unknown}; fields are {[f.name for f in fmt.fields]}")
    wait = frozenset(wait)
    bad = sorted(wait - set(WAIT_UNITS))
    if bad:
        raise EncodingError(f"{op}: cannot wait for {bad}; units are {list(WAIT_UNITS)}")
    full = {f.name: values.get(f.name, f.default()) for f in fmt.fields}
    return Instruction(op, full, wait)


def _field_bits(op: str, f: Field, value: Any) -> int:
    where = f"{op}.{f.name}"
    if f.kind == "flag":
        return int(bool(value))
    if f.kind == "enum":
        if isinstance(value, str):
            if value not in f.choices:
                raise EncodingError(f"{where}: {value!r} is not one of {list(f.choices)}")
            return f.choices.index(value)
        if not 0 <= int(value) < len(f.choices):
            raise EncodingError(f"{where}: enum index {value} out of range")
        return int(value)
    if f.kind == "f32":
        return struct.unpack("<I", struct.pack("<f", float(value)))[0]
    value = int(value)
    if f.kind == "addr":
        if value < 0 or value % ADDRESS_UNIT:
            raise UnalignedAddressError(f"{where}: address {value:#x} is not a multiple of {ADDRESS_UNIT} bytes")
        value //= ADDRESS_UNIT
    if not 0 <= value <= f.mask:
        raise EncodingError(f"{where}: value {value} does not fit in {f.width} bits")
    return value


def wait_bits(units: Iterable[str]) -> int:
    """Word 0's wait-mask bits (15:8, one per unit of :data:`WAIT_UNITS`) of waiting for ``units``."""
    return sum(1 << (8 + WAIT_UNITS.index(u)) for u in set(units))


def encode(insn: Instruction) -> tuple[int, ...]:
    """The 16 words of ``insn``; raises :class:`EncodingError` naming a bad field."""
    fmt = op_format(insn.op)
    words = [0] * INSN_WORDS
    words[0] = fmt.opcode | wait_bits(insn.wait)
    for f in fmt.fields:
        words[f.word] |= _field_bits(insn.op, f, insn.fields.get(f.name, f.default())) << f.lo
    return tuple(words)


def decode(words: Iterable[int]) -> Instruction:
    """The instruction encoded by 16 words (inverse of :func:`encode`).

    Raises :class:`EncodingError` on an unknown opcode or non-zero reserved bits.
    """
    words = [int(w) for w in words]
    if len(words) != INSN_WORDS:
        raise EncodingError(f"an instruction is {INSN_WORDS} words, got {len(words)}")
    code = words[0] & 0xFF
    fmt = OPS_BY_CODE.get(code)
    if fmt is None:
        raise EncodingError(f"unknown opcode {code:#04x}")
    if words[0] >> 8 >> len(WAIT_UNITS):
        raise EncodingError(f"{fmt.mnemonic}: reserved bits set in word 0 ({words[0]:#010x})")
    wait = frozenset(u for i, u in enumerate(WAIT_UNITS) if words[0] >> (8 + i) & 1)
    values: dict[str, Any] = {}
    used = [0] * INSN_WORDS
    for f in fmt.fields:
        bits = words[f.word] >> f.lo & f.mask
        used[f.word] |= f.mask << f.lo
        if f.kind == "flag":
            values[f.name] = bool(bits)
        elif f.kind == "enum":
            if bits >= len(f.choices):
                raise EncodingError(f"{fmt.mnemonic}.{f.name}: enum value {bits} out of range")
            values[f.name] = f.choices[bits]
        elif f.kind == "f32":
            values[f.name] = struct.unpack("<f", struct.pack("<I", bits))[0]
        elif f.kind == "addr":
            values[f.name] = bits * ADDRESS_UNIT
        else:
            values[f.name] = bits
    for i in range(1, INSN_WORDS):
        if words[i] & ~used[i] & 0xFFFFFFFF:
            raise EncodingError(f"{fmt.mnemonic}: reserved bits set in word {i} ({words[i]:#010x})")
    return Instruction(fmt.mnemonic, values, wait)


def encode_stream(insns: Iterable[Instruction]) -> bytes:
    """Little-endian bytes of a stream of instructions (64 bytes each)."""
    out = bytearray()
    for insn in insns:
        out += struct.pack(f"<{INSN_WORDS}I", *encode(insn))
    return bytes(out)


def decode_stream(data: bytes) -> list[Instruction]:
    """Instructions of a byte stream (length must be a multiple of 64)."""
    if len(data) % INSN_BYTES:
        raise EncodingError(f"stream length {len(data)} is not a multiple of {INSN_BYTES} bytes")
    return [decode(struct.unpack_from(f"<{INSN_WORDS}I", data, i))
            for i in range(0, len(data), INSN_BYTES)]


# ---------------------------------------------------------------- registers

@dataclass(frozen=True)
class Register:
    """One 32-bit host register (CSB). ``access``: ``ro``, ``rw`` or ``wo``."""

    name: str
    addr: int
    access: str
    doc: str


DEVICE_ID = 0xD1A70001
ISA_VERSION = 0x00010001  # 1.1: eltwise gained the broadcast field 'period'

REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x000, "ro", f"constant {DEVICE_ID:#010x}"),
    Register("VERSION", 0x004, "ro", f"ISA version {ISA_VERSION:#010x} (major.minor in 16.16)"),
    Register("STATUS", 0x008, "ro", "bit i: unit WAIT_UNITS[i] busy; bit 4: AUX busy; bit 5: queue full"),
    Register("CYCLE_LO", 0x00C, "ro", "device cycle counter, low word"),
    Register("CYCLE_HI", 0x010, "ro", "device cycle counter, high word"),
    Register("RESULT_IDX", 0x014, "ro", "argmax index of the last row of the last argmax MVM"),
    Register("RESULT_VAL", 0x018, "ro", "argmax value (fp32 bits) of that row"),
    Register("RETIRED", 0x01C, "ro", "instructions completed (mod 2**32)"),
    *(Register(f"INSN{i}", 0x040 + 4 * i, "rw", f"instruction staging word {i}") for i in range(INSN_WORDS)),
    Register("INSN_PUSH", 0x080, "wo", "any write issues the staged instruction"),
    Register("AUX_BASE_LO", 0x0A0, "rw", "AUX stream byte address, low word (64-byte aligned)"),
    Register("AUX_BASE_HI", 0x0A4, "rw", "AUX stream byte address, high word"),
    Register("AUX_COUNT", 0x0A8, "rw", "instructions in the AUX stream"),
    Register("AUX_START", 0x0AC, "wo", "any write starts the AUX sequencer"),
)

REGS_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
REGS_BY_ADDR: dict[int, Register] = {r.addr: r for r in REGISTERS}


def reg(name: str) -> int:
    """Byte address of register ``name``."""
    try:
        return REGS_BY_NAME[name].addr
    except KeyError:
        raise EncodingError(f"unknown register {name!r}") from None


def layout_markdown() -> str:
    """Markdown tables of every opcode's field layout (pasted into doc/isa.md)."""
    lines = []
    for op in OPS:
        lines.append(f"#### `{op.mnemonic}` (opcode {op.opcode:#04x}, unit {op.unit})\n\n{op.doc}\n")
        if not op.fields:
            continue
        lines.append("| field | word | bits | kind | meaning |\n|---|---|---|---|---|")
        for f in op.fields:
            kind = f.kind + (f" {{{', '.join(f'{i}={c}' for i, c in enumerate(f.choices))}}}" if f.choices else "")
            lines.append(f"| `{f.name}` | {f.word} | {f.lo + f.width - 1}:{f.lo} | {kind} | {f.doc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    import sys
    sys.stdout.write(layout_markdown())
