"""Assembler and disassembler: binary instruction streams <-> readable text.

Text format, one instruction per line::

    [OFFSET:] MNEMONIC [field=value ...] [wait=unit,unit]   # comment

Values: integers in decimal or ``0x`` hex (addresses are byte addresses),
floats for ``f32`` fields, ``0``/``1``/``true``/``false`` for flags, choice
names for enums. Omitted fields are zero. The disassembler prints every
field in layout order, addresses in hex and floats with ``repr``, so
``assemble(disassemble(b)) == b`` for every valid stream ``b`` and
``disassemble(assemble(t))`` is the canonical form of ``t``.
"""
from __future__ import annotations

import re
from typing import Any

from dlavm.target.isa import (INSN_BYTES, WAIT_UNITS, EncodingError, Instruction, decode_stream,
                              encode_stream, make, op_format)


class AsmSyntaxError(EncodingError):
    """A line of assembly text cannot be parsed; names the line number."""


_OFFSET = re.compile(r"^\s*[0-9a-fA-F]+:\s*")


def _parse_value(kind: str, text: str) -> Any:
    if kind == "flag":
        low = text.lower()
        if low in ("1", "true"):
            return True
        if low in ("0", "false"):
            return False
        raise ValueError(f"flag value {text!r} must be 0/1/true/false")
    if kind == "enum":
        return text
    if kind == "f32":
        return float(text)
    return int(text, 0)


def parse_line(line: str, lineno: int = 1) -> Instruction | None:
    """The instruction on one text line, or None for a blank/comment line."""
    text = _OFFSET.sub("", line.split("#", 1)[0]).strip()
    if not text:
        return None
    mnemonic, *args = text.split()
    try:
        fmt = op_format(mnemonic)
    except EncodingError as exc:
        raise AsmSyntaxError(f"line {lineno}: {exc}") from None
    values: dict[str, Any] = {}
    wait: tuple[str, ...] = ()
    for arg in args:
        if "=" not in arg:
            raise AsmSyntaxError(f"line {lineno}: expected field=value, got {arg!r}")
        name, value = arg.split("=", 1)
        if name == "wait":
            wait = tuple(u for u in value.split(",") if u and u != "-")
            continue
        try:
            values[name] = _parse_value(fmt.field(name).kind, value)
        except (EncodingError, ValueError) as exc:
            raise AsmSyntaxError(f"line {lineno}: {mnemonic}.{name}: {exc}") from None
    try:
        return make(mnemonic, wait=wait, **values)
    except EncodingError as exc:
        raise AsmSyntaxError(f"line {lineno}: {exc}") from None


def parse(text: str) -> list[Instruction]:
    """All instructions in an assembly text."""
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        insn = parse_line(line, i)
        if insn is not None:
            out.append(insn)
    return out


def assemble(text: str) -> bytes:
    """Binary stream of an assembly text (raises :class:`AsmSyntaxError` / :class:`EncodingError`)."""
    insns = parse(text)
    try:
        return encode_stream(insns)
    except EncodingError as exc:
        raise AsmSyntaxError(str(exc)) from None


def format_insn(insn: Instruction) -> str:
    """Canonical text of one instruction (every field, layout order)."""
    fmt = op_format(insn.op)
    parts = [insn.op]
    for f in fmt.fields:
        v = insn.fields[f.name]
        if f.kind == "addr":
            parts.append(f"{f.name}={v:#x}")
        elif f.kind == "flag":
            parts.append(f"{f.name}={int(bool(v))}")
        elif f.kind == "f32":
            parts.append(f"{f.name}={float(v)!r}")
        else:
            parts.append(f"{f.name}={v}")
    if insn.wait:
        parts.append("wait=" + ",".join(u for u in WAIT_UNITS if u in insn.wait))
    return " ".join(parts)


def disassemble(data: bytes, offsets: bool = False, base: int = 0) -> str:
    """Text of a binary stream; with ``offsets`` each line starts ``OFFSET:`` (hex, from ``base``)."""
    lines = []
    for i, insn in enumerate(decode_stream(data)):
        prefix = f"{base + i * INSN_BYTES:08x}: " if offsets else ""
        lines.append(prefix + format_insn(insn))
    return "\n".join(lines) + ("\n" if lines else "")


def main(argv: list[str] | None = None) -> int:
    """``python -m dlavm.target.asm {asm,disasm} IN OUT``: convert a stream file."""
    import argparse
    from pathlib import Path
    ap = argparse.ArgumentParser(prog="python -m dlavm.target.asm", description=main.__doc__)
    ap.add_argument("mode", choices=["asm", "disasm"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--base", type=lambda s: int(s, 0), default=0, help="address of the stream (disasm offsets)")
    args = ap.parse_args(argv)
    if args.mode == "asm":
        args.dst.write_bytes(assemble(args.src.read_text()))
    else:
        args.dst.write_text(disassemble(args.src.read_bytes(), offsets=True, base=args.base))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
