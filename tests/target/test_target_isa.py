"""Instruction encoding, register map, assembler and disassembler."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlavm.target import asm, isa, layout


def _value(f: isa.Field, draw):
    if f.kind == "flag":
        return draw(st.booleans())
    if f.kind == "enum":
        return draw(st.sampled_from(f.choices))
    if f.kind == "f32":
        return struct.unpack("<f", struct.pack("<f", draw(st.floats(allow_nan=False, width=32))))[0]
    if f.kind == "addr":
        return draw(st.integers(0, (1 << 32) - 1)) * 32
    return draw(st.integers(0, (1 << f.width) - 1))


@st.composite
def instructions(draw):
    fmt = draw(st.sampled_from(isa.OPS))
    values = {f.name: _value(f, draw) for f in fmt.fields}
    wait = draw(st.sets(st.sampled_from(isa.WAIT_UNITS)))
    return isa.make(fmt.mnemonic, wait=wait, **values)


@settings(max_examples=50, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=6))
def test_binary_text_binary_round_trip(insns):
    binary = isa.encode_stream(insns)
    assert len(binary) == len(insns) * isa.INSN_BYTES == len(insns) * 64
    assert isa.decode_stream(binary) == insns
    text = asm.disassemble(binary)
    assert asm.assemble(text) == binary
    assert asm.disassemble(asm.assemble(text)) == text           # canonical form is a fixed point
    assert asm.assemble(asm.disassemble(binary, offsets=True)) == binary


def test_layout_is_unique_and_within_the_word():
    assert len({op.opcode for op in isa.OPS}) == len(isa.OPS)
    for op in isa.OPS:
        bits = set()
        for f in op.fields:
            assert 1 <= f.word < isa.INSN_WORDS and f.lo + f.width <= 32
            span = {(f.word, b) for b in range(f.lo, f.lo + f.width)}
            assert not span & bits, f"{op.mnemonic}.{f.name} overlaps"
            bits |= span
    assert len({r.addr for r in isa.REGISTERS}) == len(isa.REGISTERS)


def test_assembler_accepts_comments_defaults_and_hex():
    text = """
    # a comment
    dma src=0x40 dst=0x1800000000 row_bytes=64 rows=1   # trailing comment
    mvm wfmt=int8 m=1 k=128 n=32 wait=dma
    fence wait=mvm,dma
    """
    insns = asm.parse(text)
    assert [i.op for i in insns] == ["dma", "mvm", "fence"]
    assert insns[0]["src"] == 0x40 and insns[0]["src_stride"] == 0
    assert insns[1].wait == {"dma"} and insns[2].wait == {"dma", "mvm"}
    assert asm.format_insn(insns[2]) == "fence wait=dma,mvm"


@pytest.mark.parametrize("line,msg", [
    ("frobnicate x=1", "line 1: unknown instruction 'frobnicate'"),
    ("dma src", "expected field=value"),
    ("dma bogus=1", "no field 'bogus'"),
    ("dma src=0x41", "not a multiple of 32"),
    ("mvm wfmt=int2", "'int2' is not one of"),
    ("mvm m=0x100000000", "does not fit in 32 bits"),
    ("dma src=zz", "dma.src"),
    ("nop wait=host", "cannot wait for"),
])
def test_assembler_errors_name_the_line_and_field(line, msg):
    with pytest.raises(asm.AsmSyntaxError, match=msg):
        asm.assemble(line)


def test_decode_rejects_unknown_opcode_and_reserved_bits():
    words = list(isa.encode(isa.make("nop")))
    words[0] = 0x7E
    with pytest.raises(isa.EncodingError, match="unknown opcode 0x7e"):
        isa.decode(words)
    words = list(isa.encode(isa.make("dma")))
    words[15] = 1
    with pytest.raises(isa.EncodingError, match="reserved bits set in word 15"):
        isa.decode(words)
    with pytest.raises(isa.EncodingError, match="multiple of 64"):
        isa.decode_stream(b"\0" * 10)


def test_field_offsets_for_patching():
    assert isa.op_format("mvm").field_offset("m") == isa.op_format("mvm").field("m").word * 4
    assert isa.reg("INSN_PUSH") == 0x80
    with pytest.raises(isa.EncodingError):
        isa.reg("NOPE")


def test_layout_markdown_lists_every_op():
    md = isa.layout_markdown()
    for op in isa.OPS:
        assert f"`{op.mnemonic}`" in md


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_int4_pack_round_trip(n, k, seed):
    q = np.random.default_rng(seed).integers(-8, 8, size=(n, k)).astype(np.int8)
    packed = layout.pack_int4(q, 128)
    assert packed.shape == (n, layout.padded_k(k, 128) // 2)
    np.testing.assert_array_equal(layout.unpack_int4(packed, k), q)
    assert layout.weight_bytes("int4", n, k, 128)[0] == packed.nbytes


def test_int4_nibble_order():
    q = np.array([[1, -1] + [0] * 126], dtype=np.int8)
    assert layout.pack_int4(q, 128)[0, 0] == 0xF1     # element 0 low nibble, element 1 high nibble


def test_doc_isa_tables_match_the_encoding():
    """doc/isa.md section 9 is generated from isa.OPS; regenerate it if this fails."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "doc" / "isa.md").read_text()
    assert isa.layout_markdown() in doc
    for r in isa.REGISTERS:
        if not r.name.startswith("INSN") or r.name == "INSN_PUSH":
            assert f"| 0x{r.addr:03X} | {r.name} | {r.access} |" in doc, r.name


def test_doc_isa_example_listing_round_trips():
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "doc" / "isa.md").read_text()
    lines = [line.strip() for line in doc.splitlines() if re.match(r"\s+[0-9a-f]{8}: ", line)]
    assert lines
    text = "\n".join(lines) + "\n"
    assert asm.disassemble(asm.assemble(text), offsets=True) == text


def test_asm_file_tool_round_trip(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("dma src=0x40 dst=0x80 row_bytes=32 rows=1\nfence wait=dma\n")
    assert asm.main(["asm", str(src), str(tmp_path / "p.bin")]) == 0
    assert asm.main(["disasm", str(tmp_path / "p.bin"), str(tmp_path / "p.txt"), "--base", "0x1000"]) == 0
    listing = (tmp_path / "p.txt").read_text()
    assert listing.splitlines()[1] == "00001040: fence wait=dma"
    assert asm.assemble(listing) == (tmp_path / "p.bin").read_bytes()


def test_fused_int4_packing_equals_quantize_then_pack():
    """layout.quantize_pack_int4 (the compiler's path) gives the bytes of the two-step path."""
    import numpy as np

    from dlavm.target import layout
    rng = np.random.default_rng(11)
    for n, k in [(1, 1), (3, 127), (5, 128), (4, 129), (8, 300), (2, 256)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        w[0, : min(k, 128)] = 0.0                      # an all-zero group takes scale 1
        q, s = layout.quantize_int4(w, 128)
        packed, scales = layout.quantize_pack_int4(w, 128)
        assert np.array_equal(packed, layout.pack_int4(q, 128)) and np.array_equal(scales, s)
