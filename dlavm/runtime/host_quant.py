"""Host constants stored quantised (``HostConst.quant``, doc/backend.md): pack at compile time, dequantise
when an artifact is loaded. numpy only.

The numbers are the device's weight formats (``dlavm.target.layout``): symmetric, one float16 scale per
``group`` elements of a row (int8: the whole row, int4: the target's ``int4_group``), ``value = q *
scale`` in float32, so a table stored as int8 or int4 holds exactly what ``fake_quant`` gives.
"""
from __future__ import annotations

import numpy as np

from dlavm.target import layout


def quantise(table: np.ndarray, fmt: str, group: int | None = None) -> tuple:
    """``(file bytes, scales bytes, group)`` of the float 2-D ``table`` stored as ``fmt`` (``int8``:
    ``group`` is the row length; ``int4``: ``group`` elements per scale, two nibbles per byte, low first,
    each row padded to an even length)."""
    w = np.asarray(table, dtype=np.float32)
    rows, cols = w.shape
    if fmt == "int8":
        q, s = layout.quantize_int8(w)
        return q.tobytes(), s.astype("<f2").tobytes(), cols
    if fmt != "int4":
        raise ValueError(f"host constants are stored as int8 or int4, not {fmt!r}")
    q, s = layout.quantize_int4(w, group)
    if cols % 2:
        q = np.concatenate([q, np.zeros((rows, 1), np.int8)], axis=1)
    u = q.astype(np.uint8) & 0x0F
    return (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8).tobytes(), s.astype("<f2").tobytes(), group


def dequantise(data: bytes, scales: bytes, fmt: str, group: int, shape) -> np.ndarray:
    """The float32 ``shape`` array that ``data`` and ``scales`` (as :func:`quantise` writes them) hold."""
    rows, cols = (int(d) for d in shape)
    ngroups = -(-cols // group)
    s = np.frombuffer(scales, dtype="<f2").astype(np.float32).reshape(rows, ngroups)
    if fmt == "int8":
        q = np.frombuffer(data, dtype=np.int8).reshape(rows, cols)
    else:
        b = np.frombuffer(data, dtype=np.uint8).reshape(rows, -(-cols // 2))
        nib = np.stack([b & 0x0F, b >> 4], axis=2).reshape(rows, -1)[:, :cols].astype(np.int8)
        q = np.where(nib > 7, nib - 16, nib).astype(np.int8)
    return q.astype(np.float32) * np.repeat(s, group, axis=1)[:, :cols]


__all__ = ["quantise", "dequantise"]
