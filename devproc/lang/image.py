"""Image kernels of DevProc (numpy and the standard library only; doc/devproc.md, "Ops").

* ``decode_image`` / ``load_image``: PNG (grey, grey+alpha, RGB, RGBA, palette; bit depths 1, 2, 4, 8 for grey
  and palette, 8 otherwise; not interlaced) and binary PPM (P6, maxval 255), converted to RGB as Pillow's
  ``Image.convert("RGB")`` (alpha and tRNS are dropped, sub-byte greys are scaled to 0..255).
* ``resize``: Pillow's ``Image.resize((w, h), BILINEAR | BICUBIC | NEAREST)`` bit for bit: libImaging's
  Resample.c (a separable convolution with 22-bit fixed-point coefficients, the horizontal pass first, each
  pass rounded to 8 bits) and, for NEAREST, Geometry.c's ImagingScaleAffine.
* ``normalize``: torchvision's ``ToTensor`` then ``Normalize``: ``(v / 255 - mean[c]) / std[c]`` in float32.

clib's ``dlavm/devproc_image.h`` implements the same operations (with its own inflate) and gives the same
bytes and the same error messages. Bad input raises ``ImageError``: one line naming the file (or the op)
and the rule broken.
"""
from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np

MAX_SIDE = 16384                 # pixels per side, decoding and resizing
MAX_PIXELS = 1 << 26             # pixels per image
METHODS = ("bilinear", "bicubic", "nearest")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

__all__ = ["ImageError", "MAX_PIXELS", "MAX_SIDE", "METHODS", "decode_image", "load_image", "normalize", "resize"]


class ImageError(ValueError):
    """A file that is not a supported image, or an image operation's bad argument (one line)."""


# ----------------------------------------------------------------------------- files

def load_image(path) -> np.ndarray:
    """The RGB image (uint8 [H, W, 3]) of the PNG or PPM file ``path``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{name}: cannot read the file ({os.strerror(e.errno) if e.errno else e})") from None
    return decode_image(data, name)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """The RGB image (uint8 [H, W, 3]) of a PNG or binary PPM file's bytes; ``name`` is for messages."""
    data = bytes(data)
    if data.startswith(PNG_SIGNATURE):
        return _decode_png(data, name)
    if data.startswith(b"P6"):
        return _decode_ppm(data, name)
    raise ImageError(f"{name}: not a PNG or binary PPM (P6) file")


def _check_size(width: int, height: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image size {width}x{height} (width x height) is empty")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(f"{name}: image size {width}x{height} (width x height) exceeds the limit "
                         f"({MAX_SIDE} per side, {MAX_PIXELS} pixels)")


# ----------------------------------------------------------------------------- PPM

_PPM_SPACE = b" \t\n\r\x0b\x0c"


def _decode_ppm(data: bytes, name: str) -> np.ndarray:
    pos = 2
    fields = []
    for field in ("width", "height", "maxval"):
        start = pos
        while pos < len(data):          # whitespace and comments ('#' to the end of the line)
            if data[pos] in _PPM_SPACE:
                pos += 1
            elif data[pos] == 0x23:
                while pos < len(data) and data[pos] not in b"\n\r":
                    pos += 1
            else:
                break
        if pos == start:
            raise ImageError(f"{name}: PPM header: no whitespace before the {field} at byte {pos}")
        digits = pos
        while pos < len(data) and 0x30 <= data[pos] <= 0x39:
            pos += 1
        if pos == digits:
            raise ImageError(f"{name}: PPM header: the {field} at byte {digits} is not a decimal number")
        if pos - digits > 9:
            raise ImageError(f"{name}: PPM header: the {field} at byte {digits} has more than 9 digits")
        fields.append(int(data[digits:pos]))
    if pos >= len(data) or data[pos] not in _PPM_SPACE:
        raise ImageError(f"{name}: PPM header: the maxval must be followed by one whitespace byte (byte {pos})")
    pos += 1
    width, height, maxval = fields
    _check_size(width, height, name)
    if maxval != 255:
        raise ImageError(f"{name}: PPM maxval {maxval} is not supported (only 255)")
    need = width * height * 3
    if len(data) - pos < need:
        raise ImageError(f"{name}: truncated PPM: {len(data) - pos} pixel bytes, {need} needed")
    return np.frombuffer(data, np.uint8, need, pos).reshape(height, width, 3).copy()


# ----------------------------------------------------------------------------- PNG

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _chunk_name(ctype: bytes) -> str:
    return ctype.decode("ascii")


def _decode_png(data: bytes, name: str) -> np.ndarray:
    pos = len(PNG_SIGNATURE)
    header = None
    palette = None
    idat = []
    idat_state = 0                                  # 0 none yet, 1 in the IDAT run, 2 after it
    while True:
        if len(data) - pos < 8:
            raise ImageError(f"{name}: truncated PNG: no IEND chunk (a chunk header at byte {pos} needs 8 bytes, "
                             f"{len(data) - pos} left)")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            raise ImageError(f"{name}: PNG chunk at byte {pos}: length {length} exceeds 2^31-1")
        if not all(0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A for c in ctype):
            raise ImageError(f"{name}: PNG chunk at byte {pos}: type 0x{ctype.hex()} is not four ASCII letters")
        cname = _chunk_name(ctype)
        if len(data) - pos - 12 < length:
            raise ImageError(f"{name}: truncated PNG: chunk {cname} at byte {pos} needs {length + 12} bytes, "
                             f"{len(data) - pos} left")
        body = data[pos + 8:pos + 8 + length]
        (stored,) = struct.unpack_from(">I", data, pos + 8 + length)
        computed = zlib.crc32(ctype + body)
        if stored != computed:
            raise ImageError(f"{name}: PNG chunk {cname} at byte {pos} has a bad CRC "
                             f"(stored 0x{stored:08x}, computed 0x{computed:08x})")
        pos += 12 + length
        if header is None and cname != "IHDR":
            raise ImageError(f"{name}: the first PNG chunk is {cname}, not IHDR")
        if idat_state == 1 and cname != "IDAT":
            idat_state = 2
        if cname == "IHDR":
            if header is not None:
                raise ImageError(f"{name}: a second IHDR chunk")
            header = _parse_ihdr(body, name)
        elif cname == "PLTE":
            if header[3] == 3:
                if palette is not None:
                    raise ImageError(f"{name}: a second PLTE chunk")
                if length == 0 or length % 3 or length > 768:
                    raise ImageError(f"{name}: the PLTE chunk holds {length} bytes (a multiple of 3 in 3..768)")
                palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif cname == "IDAT":
            if idat_state == 2:
                raise ImageError(f"{name}: the IDAT chunks are not consecutive")
            if header[3] == 3 and palette is None:
                raise ImageError(f"{name}: palette image without a PLTE chunk before IDAT")
            idat_state = 1
            idat.append(body)
        elif cname == "IEND":
            break
        elif ctype[0] <= 0x5A:
            raise ImageError(f"{name}: unknown critical PNG chunk {cname}")
    if not idat_state:
        raise ImageError(f"{name}: PNG without an IDAT chunk")
    width, height, depth, ctype, _ = header
    channels = _CHANNELS[ctype]
    rowbytes = (width * channels * depth + 7) // 8
    raw = _inflate(b"".join(idat), height * (rowbytes + 1), name)
    rows = _unfilter(raw, height, rowbytes, max(1, channels * depth // 8), name)
    samples = _unpack(rows, width * channels, depth)       # [H, W * channels]
    if ctype == 3:
        idx = samples
        bad = idx >= len(palette)
        if bad.any():
            flat = int(np.argmax(bad.reshape(-1)))
            raise ImageError(f"{name}: pixel ({flat % width}, {flat // width}) (x, y) uses palette index "
                             f"{int(idx.reshape(-1)[flat])}, the PLTE chunk has {len(palette)} entries")
        return palette[idx.reshape(height, width)].copy()
    if ctype in (0, 4):
        grey = samples.reshape(height, width, channels)[:, :, 0]
        if depth < 8:
            grey = grey * np.uint8(255 // ((1 << depth) - 1))
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.ascontiguousarray(samples.reshape(height, width, channels)[:, :, :3])


def _parse_ihdr(body: bytes, name: str):
    if len(body) != 13:
        raise ImageError(f"{name}: the IHDR chunk holds {len(body)} bytes, not 13")
    width, height, depth, ctype, compression, filt, interlace = struct.unpack(">IIBBBBB", body)
    if ctype not in _CHANNELS:
        raise ImageError(f"{name}: PNG colour type {ctype} is invalid")
    if depth == 16 and ctype != 3:
        raise ImageError(f"{name}: 16-bit PNG samples are not supported (bit depth 8, or 1, 2, 4 for grey "
                         f"and palette)")
    if depth not in ((1, 2, 4, 8) if ctype in (0, 3) else (8,)):
        raise ImageError(f"{name}: PNG bit depth {depth} is invalid for colour type {ctype}")
    if compression != 0:
        raise ImageError(f"{name}: PNG compression method {compression} is invalid")
    if filt != 0:
        raise ImageError(f"{name}: PNG filter method {filt} is invalid")
    if interlace == 1:
        raise ImageError(f"{name}: interlaced (Adam7) PNG is not supported")
    if interlace != 0:
        raise ImageError(f"{name}: PNG interlace method {interlace} is invalid")
    _check_size(width, height, name)
    return width, height, depth, ctype, interlace


def _inflate(z: bytes, expected: int, name: str) -> np.ndarray:
    """The zlib stream of the IDAT chunks inflated to exactly ``expected`` bytes (RFC 1950/1951)."""
    if len(z) < 2:
        raise ImageError(f"{name}: IDAT data: the zlib stream is truncated")
    cmf, flg = z[0], z[1]
    if cmf & 15 != 8:
        raise ImageError(f"{name}: IDAT data: zlib compression method {cmf & 15} is not deflate (8)")
    if cmf >> 4 > 7:
        raise ImageError(f"{name}: IDAT data: zlib window size exponent {cmf >> 4} exceeds 7")
    if (cmf * 256 + flg) % 31:
        raise ImageError(f"{name}: IDAT data: the zlib header check fails")
    if flg & 0x20:
        raise ImageError(f"{name}: IDAT data: a zlib preset dictionary is not allowed")
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(z[2:], expected + 1)
    except zlib.error as e:
        msg = str(e)
        raise ImageError(f"{name}: IDAT data: corrupt deflate stream ({msg.split(': ', 1)[-1]})") from None
    if len(out) > expected:
        raise ImageError(f"{name}: IDAT data inflates to more than the {expected} bytes the image needs")
    if not d.eof:
        raise ImageError(f"{name}: IDAT data: the deflate stream is truncated")
    tail = d.unused_data
    if len(tail) < 4:
        raise ImageError(f"{name}: IDAT data: the zlib stream is truncated (no Adler-32 checksum)")
    stored, computed = struct.unpack(">I", tail[:4])[0], zlib.adler32(out)
    if stored != computed:
        raise ImageError(f"{name}: IDAT data: Adler-32 mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})")
    if len(tail) > 4:
        raise ImageError(f"{name}: IDAT data: {len(tail) - 4} bytes after the end of the zlib stream")
    if len(out) != expected:
        raise ImageError(f"{name}: IDAT data inflates to {len(out)} bytes, the image needs {expected}")
    return np.frombuffer(out, np.uint8)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, rowbytes: int, bpp: int, name: str) -> np.ndarray:
    """The scanlines [H, rowbytes] with the PNG filters (None, Sub, Up, Average, Paeth) undone."""
    rows = raw.reshape(height, rowbytes + 1)
    ftype = rows[:, 0]
    if (ftype > 4).any():
        r = int(np.argmax(ftype > 4))
        raise ImageError(f"{name}: PNG row {r} has filter type {int(ftype[r])} (0..4)")
    n = rowbytes // bpp                                      # filter units ("pixels") per row
    x = rows[:, 1:].reshape(height, n, bpp)
    if not (ftype >= 3).any():                               # None, Sub, Up: row by row
        out = np.empty((height, n, bpp), np.uint8)
        prev = np.zeros((n, bpp), np.uint8)
        for r in range(height):
            t = ftype[r]
            if t == 0:
                out[r] = x[r]
            elif t == 1:
                out[r] = np.cumsum(x[r], axis=0, dtype=np.uint8)
            else:
                out[r] = x[r] + prev
            prev = out[r]
        return out.reshape(height, rowbytes)
    # Average and Paeth depend on the left and the upper neighbour: a wavefront over the anti-diagonals
    # r + i = d, each computed at once (out is padded with a zero row above and a zero unit on the left).
    out = np.zeros((height + 1, n + 1, bpp), np.int16)
    xi = x.astype(np.int16)
    ft = ftype.astype(np.int64)
    for d in range(height + n - 1):
        r = np.arange(max(0, d - n + 1), min(height - 1, d) + 1)
        i = d - r
        a = out[r + 1, i]
        b = out[r, i + 1]
        c = out[r, i]
        preds = np.stack([np.zeros_like(a), a, b, (a + b) >> 1, _paeth(a, b, c)])
        pred = preds[ft[r], np.arange(len(r))]
        out[r + 1, i + 1] = (xi[r, i] + pred) & 255
    return out[1:, 1:].astype(np.uint8).reshape(height, rowbytes)


def _unpack(rows: np.ndarray, count: int, depth: int) -> np.ndarray:
    """The first ``count`` samples of each row of ``depth``-bit samples (big-endian bit order)."""
    if depth == 8:
        return rows[:, :count]
    bits = np.unpackbits(rows, axis=1)
    per = bits.shape[1] // depth
    groups = bits[:, :per * depth].reshape(rows.shape[0], per, depth)
    weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
    return (groups * weights).sum(axis=2, dtype=np.uint8)[:, :count]


# ----------------------------------------------------------------------------- resize

PRECISION_BITS = 32 - 8 - 2


def _bilinear(x: float) -> float:
    if x < 0.0:
        x = -x
    if x < 1.0:
        return 1.0 - x
    return 0.0


def _bicubic(x: float) -> float:
    # Resample.c's bicubic_filter with a = -0.5: (a + 2.0) and (a + 3.0) are the constants 1.5 and 2.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return (1.5 * x - 2.5) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * -0.5
    return 0.0


_FILTERS = {"bilinear": (_bilinear, 1.0), "bicubic": (_bicubic, 2.0)}


def _coeffs(in_size: int, out_size: int, method: str):
    """Resample.c's precompute_coeffs then normalize_coeffs_8bpc: for each output index the first input index,
    the number of inputs and the int32 coefficients (ksize of them, zeros past the count)."""
    filt, fsupport = _FILTERS[method]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = fsupport * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    bounds = np.zeros((out_size, 2), np.int64)
    kk = np.zeros((out_size, ksize), np.int64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [filt((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in w:
            ww += v
        if ww != 0.0:
            w = [v / ww for v in w]
        kk[xx, :xmax] = [int(-0.5 + v * (1 << PRECISION_BITS)) if v < 0 else int(0.5 + v * (1 << PRECISION_BITS))
                         for v in w]
        bounds[xx] = xmin, xmax
    return bounds, kk


def _convolve(img: np.ndarray, out_size: int, method: str, axis: int) -> np.ndarray:
    """One pass of ImagingResample{Horizontal,Vertical}_8bpc along ``axis`` (1: columns, 0: rows)."""
    in_size = img.shape[axis]
    bounds, kk = _coeffs(in_size, out_size, method)
    acc = np.full((out_size, img.shape[1 - axis], 3) if axis == 0 else (img.shape[0], out_size, 3),
                  1 << (PRECISION_BITS - 1), np.int64)
    for j in range(kk.shape[1]):
        idx = np.minimum(bounds[:, 0] + j, in_size - 1)
        k = kk[:, j]
        if axis == 0:
            acc += img[idx].astype(np.int64) * k[:, None, None]
        else:
            acc += img[:, idx].astype(np.int64) * k[None, :, None]
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Geometry.c's ImagingScaleAffine: the source index of each output index (-1: none, filled with 0)."""
    a = float(in_size) / out_size
    xo = 0.0 + a * 0.5
    out = np.empty(out_size, np.int64)
    for x in range(out_size):
        xin = -1 if xo < 0.0 else int(xo)
        out[x] = xin if 0 <= xin < in_size else -1
        xo += a
    return out


def _check_image(img, op: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        what = f"{img.dtype} array {list(img.shape)}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ImageError(f"{op}: the image must be a uint8 array [H, W, 3], not a {what}")
    height, width = img.shape[:2]
    _check_size(width, height, op)
    return img


def resize(img: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
    """``img`` (uint8 [H, W, 3]) resized to [height, width, 3] exactly as Pillow's
    ``Image.resize((width, height), BILINEAR | BICUBIC | NEAREST)`` resizes an RGB image."""
    img = _check_image(img, "resize")
    if method not in METHODS:
        raise ImageError(f"resize: method {method!r} is not one of {', '.join(METHODS)}")
    for v in (height, width):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ImageError(f"resize: the size must be integers, not {type(v).__name__}")
    height, width = int(height), int(width)
    _check_size(width, height, "resize")
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (height, width):
        return img.copy()
    if method == "nearest":
        ys, xs = _nearest_index(in_h, height), _nearest_index(in_w, width)
        out = img[np.maximum(ys, 0)][:, np.maximum(xs, 0)]
        out[ys < 0] = 0
        out[:, xs < 0] = 0
        return out
    # Two passes, each rounded to 8 bits. Pillow 13 runs the vertical pass first when it shrinks the
    # height by more than twice what the horizontal pass takes off the width (ImagingResampleInner).
    if width != in_w and height != in_h and in_h - height > 0 and in_h - height > 2 * (in_w - width):
        return _convolve(_convolve(img, height, method, axis=0), width, method, axis=1)
    out = img
    if width != in_w:
        out = _convolve(out, width, method, axis=1)
    if height != in_h:
        out = _convolve(out, height, method, axis=0)
    return out


# ----------------------------------------------------------------------------- normalize

def normalize(img: np.ndarray, mean, std) -> np.ndarray:
    """float32 [1, 3, H, W]: (v / 255 - mean[c]) / std[c], each operation in float32 (torchvision's ToTensor then
    Normalize, mean and std converted to float32 first)."""
    img = _check_image(img, "normalize")
    vals = {}
    for key, v in (("mean", mean), ("std", std)):
        try:
            arr = np.array([float(t) for t in v], dtype=np.float64)
        except (TypeError, ValueError):
            raise ImageError(f"normalize: {key} must be 3 numbers") from None
        if arr.shape != (3,):
            raise ImageError(f"normalize: {key} must be 3 numbers, not {arr.shape[0]}")
        for c in range(3):
            with np.errstate(over="ignore"):
                as_float32 = np.float32(arr[c])
            if not np.isfinite(as_float32):
                raise ImageError(f"normalize: {key}[{c}] is not a finite float32")
        vals[key] = arr.astype(np.float32)
    for c in range(3):
        if vals["std"][c] == 0:
            raise ImageError(f"normalize: std[{c}] is 0 in float32")
    x = img.astype(np.float32) / np.float32(255)
    y = (x - vals["mean"]) / vals["std"]
    return np.ascontiguousarray(y.transpose(2, 0, 1))[None]
