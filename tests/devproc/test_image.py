"""DevProc's image ops: devproc/lang/image.py against Pillow (decoding, resizing) and torch (normalize), and
clib's dlavm/devproc_image.h (through tests/devproc/image_tool.cc, built plain and with ASan + UBSan)
against image.py byte for byte, refusals included (the same one-line messages)."""
from __future__ import annotations

import io
import random
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from devproc.lang import image as I
from tests.clib.clib_build import FLAVOURS, SANITIZER_EXIT_CODE, build_clib, compile_programs, sanitizer_env

HERE = Path(__file__).resolve().parent
PIL_METHODS = {"bilinear": PILImage.BILINEAR, "bicubic": PILImage.BICUBIC, "nearest": PILImage.NEAREST}


# ----------------------------------------------------------------------------- writing PNG files

def chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + body) if crc is None else crc
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def ihdr(width, height, depth=8, ctype=2, compression=0, filt=0, interlace=0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ctype, compression, filt, interlace))


def pack_samples(samples: np.ndarray, depth: int) -> np.ndarray:
    """[H, N] samples below 2**depth -> [H, rowbytes] bytes (big-endian bit order)."""
    if depth == 8:
        return samples.astype(np.uint8)
    per = 8 // depth
    h, n = samples.shape
    s = np.concatenate([samples, np.zeros((h, (-n) % per), np.uint8)], axis=1).reshape(h, -1, per).astype(np.int64)
    return (s << (np.arange(per - 1, -1, -1) * depth)).sum(axis=2).astype(np.uint8)


def filter_rows(rows: np.ndarray, bpp: int, ftypes) -> bytes:
    out, prev = [], np.zeros(rows.shape[1], np.int64)
    for r in range(rows.shape[0]):
        cur = rows[r].astype(np.int64)
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        t = ftypes[r]
        if t == 4:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        else:
            pred = [0, left, prev, (left + prev) >> 1][t]
        out.append(bytes([t]) + ((cur - pred) & 255).astype(np.uint8).tobytes())
        prev = cur
    return b"".join(out)


def encode_png(samples: np.ndarray, width: int, depth: int, ctype: int, *, palette: bytes | None = None,
               ftypes=None, level=6, strategy=zlib.Z_DEFAULT_STRATEGY, wbits=15, idat_sizes=None,
               before_idat: bytes = b"", after_idat: bytes = b"", trailing: bytes = b"") -> bytes:
    """A PNG of ``samples`` [H, W * channels] with the given filters, zlib settings and IDAT chunking."""
    height = samples.shape[0]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    rows = pack_samples(samples, depth)
    ftypes = [0] * height if ftypes is None else ftypes
    raw = filter_rows(rows, max(1, channels * depth // 8), ftypes)
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy)
    z = c.compress(raw) + c.flush()
    parts, pos = [], 0
    for size in (idat_sizes or [len(z)]):
        parts.append(z[pos:pos + size])
        pos += size
    parts[-1] += z[pos:]
    out = I.PNG_SIGNATURE + ihdr(width, height, depth, ctype)
    if palette is not None:
        out += chunk(b"PLTE", palette)
    out += before_idat + b"".join(chunk(b"IDAT", p) for p in parts) + after_idat + chunk(b"IEND", b"")
    return out + trailing


def png_with_zlib(z: bytes, width=2, height=2, depth=8, ctype=2) -> bytes:
    return I.PNG_SIGNATURE + ihdr(width, height, depth, ctype) + chunk(b"IDAT", z) + chunk(b"IEND", b"")


class BitWriter:
    """Deflate bits: values LSB first, Huffman codes MSB first."""

    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> "BitWriter":
        self.bits += [(value >> i) & 1 for i in range(n)]
        return self

    def code(self, code: int, n: int) -> "BitWriter":
        self.bits += [(code >> i) & 1 for i in reversed(range(n))]
        return self

    def fixed(self, sym: int) -> "BitWriter":
        if sym < 144:
            return self.code(0x30 + sym, 8)
        if sym < 256:
            return self.code(0x190 + sym - 144, 9)
        if sym < 280:
            return self.code(sym - 256, 7)
        return self.code(0xC0 + sym - 280, 8)

    def data(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(bits[i + k] << k for k in range(8)) for i in range(0, len(bits), 8))


def zlib_wrap(deflate: bytes, output: bytes = b"") -> bytes:
    return b"\x78\x9c" + deflate + struct.pack(">I", zlib.adler32(output))


def dynamic_header(bw: BitWriter, nlen: int, ndist: int, cl_lengths: dict[int, int]) -> BitWriter:
    """A dynamic block's header up to its code-length code (lengths of the code-length symbols)."""
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    ncode = max(4, max(order.index(s) for s in cl_lengths) + 1)
    bw.put(nlen - 257, 5).put(ndist - 1, 5).put(ncode - 4, 4)
    for s in order[:ncode]:
        bw.put(cl_lengths.get(s, 0), 3)
    return bw


def canonical(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """{symbol: (code, length)} of the canonical Huffman code with these lengths (RFC 1951 3.2.2)."""
    code, out = 0, {}
    for n in range(1, 16):
        for sym in sorted(s for s, v in lengths.items() if v == n):
            out[sym] = (code, n)
            code += 1
        code <<= 1
    return out


# code-length codes with 2 bits per symbol: {0, 1, 17, 18} and {0, 1, 2, 18}
CL4 = {0: 2, 1: 2, 17: 2, 18: 2}
CL_012 = {0: 2, 1: 2, 2: 2, 18: 2}


def _cl(bw: BitWriter, table: dict[int, int], sym: int, extra: int = 0) -> BitWriter:
    """One symbol of the code-length code ``table`` (and its extra bits)."""
    bw.code(*canonical(table)[sym])
    return bw.put(extra, 7) if sym == 18 else bw.put(extra, 3) if sym == 17 else bw.put(extra, 2) if sym == 16 else bw


def cl4(bw: BitWriter, sym: int, extra: int = 0) -> BitWriter:
    return _cl(bw, CL4, sym, extra)


def zeros18(bw: BitWriter, count: int, table: dict[int, int] = CL4) -> BitWriter:
    """``count`` zero lengths with code 18 (11..138 each)."""
    while count:
        n = min(count, 138) if count - min(count, 138) not in range(1, 11) else count - 11
        assert n >= 11
        _cl(bw, table, 18, n - 11)
        count -= n
    return bw


# ----------------------------------------------------------------------------- the C++ tool

@pytest.fixture(scope="session", params=FLAVOURS)
def image_tool(request, tmp_path_factory) -> Path:
    lib = build_clib(request.param)
    return compile_programs({"image_tool": [HERE / "image_tool.cc"]},
                            tmp_path_factory.mktemp(f"image_tool_{request.param}"), request.param, lib)["image_tool"]


def raw_image(img: np.ndarray) -> bytes:
    return struct.pack("<qq", *img.shape[:2]) + np.ascontiguousarray(img).tobytes()


def read_raw(data: bytes) -> np.ndarray:
    h, w = struct.unpack_from("<qq", data)
    return np.frombuffer(data, np.uint8, offset=16).reshape(h, w, 3)


class CppImage:
    def __init__(self, exe: Path, workdir: Path):
        self.exe, self.dir = exe, workdir
        self.n = 0

    def path(self, suffix: str) -> Path:
        self.n += 1
        return self.dir / f"f{self.n}{suffix}"

    def run(self, *args) -> subprocess.CompletedProcess:
        res = subprocess.run([str(self.exe), *map(str, args)], capture_output=True, text=True, timeout=600,
                             env=sanitizer_env())
        assert res.returncode != SANITIZER_EXIT_CODE, res.stderr
        return res

    def refusal(self, *args) -> str:
        """The one-line message of a refused command (exit code 1)."""
        res = self.run(*args)
        assert res.returncode == 1, (res.returncode, res.stderr)
        assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
        return res.stderr[:-1]

    def batch(self, jobs: list[list[str]], read) -> list:
        """Runs the jobs in one process; for each, read(output bytes) or the refusal's message."""
        jobfile = self.path(".jobs")
        jobfile.write_text("".join("\t".join(map(str, j)) + "\n" for j in jobs))
        res = self.run("batch", jobfile)
        assert res.returncode == 0, (res.returncode, res.stderr)
        out = []
        for j in jobs:
            err = Path(str(j[2]) + ".err")
            out.append(err.read_text() if err.exists() else read(Path(j[2]).read_bytes()))
        return out

    def decode_files(self, files: list[Path]) -> list:
        return self.batch([["decode", f, self.path(".out")] for f in files], read_raw)

    def resize(self, cases) -> list:
        jobs = []
        for img, h, w, method in cases:
            src = self.path(".raw")
            src.write_bytes(raw_image(img))
            jobs.append(["resize", src, self.path(".out"), h, w, method])
        return self.batch(jobs, read_raw)

    def normalize(self, cases) -> list:
        jobs = []
        for img, mean, std in cases:
            src = self.path(".raw")
            src.write_bytes(raw_image(img))
            floats = [float(np.float32(v)).hex() for v in [*mean, *std]]
            jobs.append(["normalize", src, self.path(".out"), *floats])
        shapes = [(1, 3, *img.shape[:2]) for img, _, _ in cases]
        res = self.batch(jobs, lambda b: np.frombuffer(b, "<f4"))
        return [r if isinstance(r, str) else r.reshape(s) for r, s in zip(res, shapes)]


@pytest.fixture
def cpp(image_tool, tmp_path) -> CppImage:
    return CppImage(image_tool, tmp_path)


def py_outcome(fn, *args):
    try:
        return fn(*args)
    except I.ImageError as e:
        assert "\n" not in str(e)
        return str(e)


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- test images

def pillow_png_files() -> list[tuple[str, bytes]]:
    """PNGs Pillow writes: every mode it maps to a PNG colour type and bit depth, with and without tRNS,
    optimised or not, at several compression levels and sizes."""
    rng = np.random.default_rng(1)
    out = []
    sizes = [(1, 1), (1, 7), (5, 1), (3, 5), (17, 33), (64, 7), (40, 61)]
    for mode in ["1", "L", "LA", "RGB", "RGBA", "P2", "P3", "P4", "P5", "P16", "P17", "P200", "P256"]:
        for k, (h, w) in enumerate(sizes):
            arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
            if k % 3 == 2:   # smooth content: the encoder's filters and long matches
                arr = (np.add.outer(np.arange(h), np.arange(w))[:, :, None] * [3, 5, 7, 1] % 256).astype(np.uint8)
            if mode.startswith("P"):
                colors = int(mode[1:])
                im = PILImage.fromarray(arr[:, :, :3]).quantize(colors=colors, method=PILImage.Quantize.MEDIANCUT)
                im.putpalette(rng.integers(0, 256, 3 * colors, dtype=np.uint8).tobytes())
                im = im.point(lambda v, c=colors: v % c)
            else:
                im = PILImage.fromarray(arr, "RGBA").convert(mode)
            params = {"optimize": bool(k % 2), "compress_level": [0, 1, 6, 9][k % 4]}
            if k % 3 == 1 and mode in ("L", "RGB", "P5", "P256"):
                params["transparency"] = {"L": 7, "RGB": (1, 2, 3)}.get(mode, 0)
            buf = io.BytesIO()
            im.save(buf, "PNG", **params)
            out.append((f"pil_{mode}_{h}x{w}_{k}.png", buf.getvalue()))
    return out


def own_png_files() -> list[tuple[str, bytes]]:
    """PNGs of this file's encoder: every colour type and bit depth, every filter type in random rows, zlib
    at every strategy (stored, fixed, Huffman only, RLE, dynamic) and window size, IDAT split into many chunks
    (empty ones too), ancillary chunks around IDAT, bytes after IEND."""
    rng = np.random.default_rng(2)
    kinds = [(0, 1), (0, 2), (0, 4), (0, 8), (2, 8), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8), (6, 8)]
    zsets = [dict(level=0), dict(level=6), dict(level=9), dict(level=1, strategy=zlib.Z_FIXED),
             dict(level=6, strategy=zlib.Z_HUFFMAN_ONLY), dict(level=6, strategy=zlib.Z_RLE),
             dict(level=6, strategy=zlib.Z_FILTERED), dict(level=6, wbits=9), dict(level=9, wbits=12)]
    out = []
    for k in range(66):
        ctype, depth = kinds[k % len(kinds)]
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        if k % 4 == 0:   # skewed byte frequencies: a dynamic code with codes longer than 9 bits
            samples = np.minimum(rng.geometric(0.05, (h, w * channels)) - 1, 255).astype(np.uint8)
        else:
            samples = rng.integers(0, 256, (h, w * channels), dtype=np.uint8)
        npal = None
        if ctype == 3:
            npal = int(rng.integers(1, (1 << depth) + 1))
            samples = (samples.astype(np.int64) % npal).astype(np.uint8)
        elif depth < 8:
            samples = (samples % (1 << depth)).astype(np.uint8)
        kw = dict(zsets[k % len(zsets)])
        kw["ftypes"] = [int(t) for t in rng.integers(0, 5, h)]
        if k % 3 == 1:
            kw["idat_sizes"] = [int(v) for v in rng.integers(0, 5, 12)]
        if k % 5 == 2:
            kw["before_idat"] = chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"tEXt", b"Comment\x00hi")
            kw["after_idat"] = chunk(b"tEXt", b"k\x00v")
        if k % 7 == 3:
            kw["trailing"] = b"junk after IEND"
        if ctype == 3:
            kw["palette"] = rng.integers(0, 256, 3 * npal, dtype=np.uint8).tobytes()
            if k % 2:
                kw["before_idat"] = kw.get("before_idat", b"") + chunk(b"tRNS", bytes(range(npal)))
        out.append((f"own_{ctype}_{depth}_{h}x{w}_{k}.png", encode_png(samples, w, depth, ctype, **kw)))
    # a dynamic block holding only the end-of-block code (a lone one-bit code: incomplete, which zlib
    # accepts), then the pixels in a stored block
    raw = b"\x00" + bytes([10, 20, 30])
    bw = dynamic_header(BitWriter().put(0, 1).put(2, 2), 257, 1, CL4)
    zeros18(bw, 256)
    cl4(bw, 1)      # the end-of-block code: length 1
    cl4(bw, 0)      # one distance code of length 0
    bw.code(0, 1)   # end of block
    bw.put(1, 1).put(0, 2)   # the last block: stored
    z = zlib_wrap(bw.data() + struct.pack("<HH", len(raw), len(raw) ^ 0xFFFF) + raw, raw)
    out.append(("own_lone_code.png", png_with_zlib(z, 1, 1)))
    return out


def ppm_files() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(3)
    out = []
    for k, (h, w) in enumerate([(1, 1), (2, 3), (17, 5), (30, 41)]):
        buf = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PPM")
        out.append((f"pil_{k}.ppm", buf.getvalue()))
    pix = rng.integers(0, 256, 2 * 3 * 3, dtype=np.uint8).tobytes()
    for k, head in enumerate([b"P6\n3 2\n255\n", b"P6 3 2 255 ", b"P6\t3\r\n2\x0b255\r", b"P6\n# a comment\n3 2\n255\n",
                              b"P6\n3\n# two\n# comments\n2 255\n", b"P6 003 0002 255\n"]):
        out.append((f"head_{k}.ppm", head + pix + (b"trailing" if k == 2 else b"")))
    return out


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("images")
    paths = []
    for name, data in pillow_png_files() + own_png_files() + ppm_files():
        (d / name).write_bytes(data)
        paths.append(d / name)
    return paths


def resize_cases() -> list[tuple[np.ndarray, int, int, str]]:
    """Random images and sizes: 1x1 both ways, up and down, odd ratios, one axis only, large ratios, and
    black/white content whose bicubic overshoot is clipped."""
    rng = np.random.default_rng(4)
    sizes = [1, 2, 3, 5, 7, 8, 13, 16, 31, 64, 100, 224, 257]
    cases = []
    for k in range(150):
        h, w, oh, ow = (int(rng.choice(sizes)) for _ in range(4))
        if k % 10 == 0:
            oh = h
        if k % 10 == 1:
            ow = w
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if k % 4 == 3:
            img = (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
        cases.append((img, oh, ow, ["bilinear", "bicubic", "nearest"][k % 3]))
    big = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for method in I.METHODS:
        cases += [(big, 224, 224, method), (big[:300, :7], 1, 1, method), (big[:9, :13], 512, 333, method),
                  (big[:1, :1], 5, 9, method), (big[:3, :600], 2, 1000, method), (big, 480, 640, method)]
    return cases


NORMALIZE_PARAMS = [([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
                    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), ([0.48145466, 0.4578275, 0.40821073],
                                                           [0.26862954, 0.26130258, 0.27577711]),
                    ([-3.25, 1e-3, 7.0], [1e-4, -2.5, 123.456])]


def normalize_cases():
    rng = np.random.default_rng(5)
    imgs = [np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2),
            rng.integers(0, 256, (7, 11, 3), dtype=np.uint8), rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)]
    return [(img, m, s) for img in imgs for m, s in NORMALIZE_PARAMS]


# ----------------------------------------------------------------------------- numpy against Pillow / torch

def test_image_module_imports_only_numpy_and_the_standard_library():
    import ast
    import sys
    tree = ast.parse(Path(I.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names - {"numpy"} <= set(sys.stdlib_module_names) | {"__future__"}, names
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


# Pillow 13 (what these tests were checked against) orders the two resampling passes as image.resize does;
# an older Pillow may not, so its bytes are no reference.
needs_pillow_13 = pytest.mark.skipif(int(PILImage.__version__.split(".")[0]) < 13,
                                     reason="resize follows Pillow 13's resampling")

def test_png_written_by_pillow_decodes_as_pillow():
    files = pillow_png_files()
    assert len(files) == 91
    for name, data in files:
        got = I.decode_image(data, name)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB")), err_msg=name)


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_png_every_filter_and_zlib_strategy_decodes_as_pillow():
    files = own_png_files()
    for name, data in files:
        got = I.decode_image(data, name)
        np.testing.assert_array_equal(got, np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB")), err_msg=name)


def test_ppm_decodes_as_pillow():
    for name, data in ppm_files():
        np.testing.assert_array_equal(I.decode_image(data, name), np.asarray(PILImage.open(io.BytesIO(data))),
                                      err_msg=name)


def test_load_image_reads_the_file(tmp_path):
    name, data = pillow_png_files()[30]
    (tmp_path / "a.png").write_bytes(data)
    np.testing.assert_array_equal(I.load_image(tmp_path / "a.png"), I.decode_image(data, "x"))


@needs_pillow_13
def test_resize_matches_pillow():
    cases = resize_cases()
    for img, h, w, method in cases:
        ref = np.asarray(PILImage.fromarray(img).resize((w, h), PIL_METHODS[method]))
        got = I.resize(img, h, w, method)
        assert got.dtype == np.uint8 and got.shape == (h, w, 3)
        np.testing.assert_array_equal(got, ref, err_msg=f"{img.shape} -> {(h, w)} {method}")


@needs_pillow_13
def test_resize_pass_order_boundary_matches_pillow():
    """Pillow 13 runs the vertical pass first iff in_h - out_h > 2 * (in_w - out_w) > ... (see resize): both
    sides of that boundary, where the two orders give different bytes."""
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    differ = 0
    for oh in (4, 16, 32, 48, 60):
        for ow in range(30, 70, 2):
            if ow == 64:
                continue
            for method in ("bilinear", "bicubic"):
                ref = np.asarray(PILImage.fromarray(img).resize((ow, oh), PIL_METHODS[method]))
                np.testing.assert_array_equal(I.resize(img, oh, ow, method), ref, err_msg=f"{(oh, ow)} {method}")
                hv = I._convolve(I._convolve(img, ow, method, 1), oh, method, 0)
                differ += not np.array_equal(hv, ref)
    assert differ > 50   # the vertical-first side is really exercised


def test_normalize_matches_torch():
    torch = pytest.importorskip("torch")
    for img, mean, std in normalize_cases():
        t = torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
        s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
        ref = t.sub(m).div(s)[None].numpy()
        got = I.normalize(img, mean, std)
        assert got.dtype == np.float32 and got.shape == (1, 3, *img.shape[:2]) and got.flags.c_contiguous
        assert got.tobytes() == ref.tobytes(), (mean, std)


# ----------------------------------------------------------------------------- C++ against numpy

def test_cpp_decodes_as_numpy(cpp, image_files):
    got = cpp.decode_files(image_files)
    for path, g in zip(image_files, got):
        assert same(g, I.load_image(str(path))), path.name


def test_cpp_resizes_as_numpy(cpp):
    cases = resize_cases()
    got = cpp.resize(cases)
    for (img, h, w, method), g in zip(cases, got):
        assert same(g, I.resize(img, h, w, method)), (img.shape, h, w, method)


def test_cpp_normalizes_as_numpy(cpp):
    cases = normalize_cases()
    got = cpp.normalize(cases)
    for (img, mean, std), g in zip(cases, got):
        assert same(g, I.normalize(img, mean, std)), (mean, std)


# ----------------------------------------------------------------------------- refusals

def _valid_rgb_png() -> bytes:
    return encode_png(np.arange(2 * 6, dtype=np.uint8).reshape(2, 6), 2, 8, 2)


def _sig(*chunks: bytes) -> bytes:
    return I.PNG_SIGNATURE + b"".join(chunks)


def _idat(z: bytes) -> bytes:
    return chunk(b"IDAT", z)


IEND = chunk(b"IEND", b"")
RAW_2X2 = b"\x00" + bytes(6) + b"\x00" + bytes(6)     # the 14 filtered bytes of a 2x2 RGB image
LIMIT = "exceeds the limit (16384 per side, 67108864 pixels)"


def _incomplete_literals() -> BitWriter:
    """A dynamic block whose literal/length code has one code of length 1 and one of length 2."""
    bw = dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, CL_012)
    _cl(bw, CL_012, 2)                  # literal 0: length 2
    zeros18(bw, 255, CL_012)            # 1..255: none
    _cl(bw, CL_012, 1)                  # end of block: length 1
    return _cl(bw, CL_012, 0)           # the one distance: none


def _oversubscribed_distances() -> BitWriter:
    """A dynamic block with a complete literal/length code but three one-bit distance codes."""
    bw = dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 3, CL4)
    zeros18(cl4(bw, 1), 255)            # literal 0: length 1; 1..255: none
    for _ in range(4):                  # end of block, then the three distances: length 1
        cl4(bw, 1)
    return bw


def malformed_cases() -> list[tuple[str, bytes, str]]:
    """(label, file bytes, the message after "NAME: ")."""
    ok = _valid_rgb_png()
    sig_len = len(I.PNG_SIGNATURE)
    idat_at = sig_len + 25
    good_z = zlib.compress(RAW_2X2)
    cases = [
        ("empty", b"", "not a PNG or binary PPM (P6) file"),
        ("gif", b"GIF89a\x01\x00\x01\x00", "not a PNG or binary PPM (P6) file"),
        ("plain ppm", b"P3\n1 1\n255\n0 0 0\n", "not a PNG or binary PPM (P6) file"),
        ("half signature", I.PNG_SIGNATURE[:5], "not a PNG or binary PPM (P6) file"),
        ("signature only", I.PNG_SIGNATURE,
         "truncated PNG: no IEND chunk (a chunk header at byte 8 needs 8 bytes, 0 left)"),
        ("cut in IDAT", ok[:idat_at + 20],
         f"truncated PNG: chunk IDAT at byte {idat_at} needs {len(ok) - idat_at - 12} bytes, 20 left"),
        ("no IEND", ok[:-12], f"truncated PNG: no IEND chunk (a chunk header at byte {len(ok) - 12} needs 8 bytes, "
                              f"0 left)"),
        ("bad CRC", ok[:idat_at + 8 + 3] + bytes([ok[idat_at + 11] ^ 1]) + ok[idat_at + 12:], None),
        ("huge length", _sig(ihdr(2, 2)) + b"\x80\x00\x00\x00IDAT", "PNG chunk at byte 33: length 2147483648 "
                                                                     "exceeds 2^31-1"),
        ("bad type", _sig(ihdr(2, 2)) + struct.pack(">I", 0) + b"ID\x00T" + bytes(4),
         "PNG chunk at byte 33: type 0x49440054 is not four ASCII letters"),
        ("IDAT first", _sig(_idat(good_z), IEND), "the first PNG chunk is IDAT, not IHDR"),
        ("IHDR 12 bytes", _sig(chunk(b"IHDR", bytes(12))), "the IHDR chunk holds 12 bytes, not 13"),
        ("16-bit", _sig(ihdr(2, 2, 16, 2)),
         "16-bit PNG samples are not supported (bit depth 8, or 1, 2, 4 for grey and palette)"),
        ("16-bit palette", _sig(ihdr(2, 2, 16, 3)), "PNG bit depth 16 is invalid for colour type 3"),
        ("depth 3", _sig(ihdr(2, 2, 3, 0)), "PNG bit depth 3 is invalid for colour type 0"),
        ("rgb depth 4", _sig(ihdr(2, 2, 4, 2)), "PNG bit depth 4 is invalid for colour type 2"),
        ("colour type 5", _sig(ihdr(2, 2, 8, 5)), "PNG colour type 5 is invalid"),
        ("compression 1", _sig(ihdr(2, 2, compression=1)), "PNG compression method 1 is invalid"),
        ("filter method 1", _sig(ihdr(2, 2, filt=1)), "PNG filter method 1 is invalid"),
        ("interlaced", _sig(ihdr(2, 2, interlace=1)), "interlaced (Adam7) PNG is not supported"),
        ("interlace 2", _sig(ihdr(2, 2, interlace=2)), "PNG interlace method 2 is invalid"),
        ("width 0", _sig(ihdr(0, 2)), "image size 0x2 (width x height) is empty"),
        ("wide", _sig(ihdr(16385, 1)), f"image size 16385x1 (width x height) {LIMIT}"),
        ("too many pixels", _sig(ihdr(16384, 4097)), f"image size 16384x4097 (width x height) {LIMIT}"),
        ("4 billion", _sig(ihdr(0xFFFFFFFF, 0xFFFFFFFF)), f"image size 4294967295x4294967295 (width x height) {LIMIT}"),
        ("second IHDR", _sig(ihdr(2, 2), ihdr(2, 2)), "a second IHDR chunk"),
        ("palette without PLTE", _sig(ihdr(2, 2, 8, 3), _idat(good_z)), "palette image without a PLTE chunk "
                                                                           "before IDAT"),
        ("PLTE 4 bytes", _sig(ihdr(2, 2, 8, 3), chunk(b"PLTE", bytes(4))),
         "the PLTE chunk holds 4 bytes (a multiple of 3 in 3..768)"),
        ("PLTE 771 bytes", _sig(ihdr(2, 2, 8, 3), chunk(b"PLTE", bytes(771))),
         "the PLTE chunk holds 771 bytes (a multiple of 3 in 3..768)"),
        ("second PLTE", _sig(ihdr(2, 2, 8, 3), chunk(b"PLTE", bytes(3)), chunk(b"PLTE", bytes(3))),
         "a second PLTE chunk"),
        ("PLTE after IDAT", _sig(ihdr(1, 1, 8, 3), chunk(b"PLTE", bytes(3)), _idat(b"x"), chunk(b"PLTE", bytes(3))),
         "a second PLTE chunk"),
        ("IDAT split", _sig(ihdr(2, 2), _idat(good_z[:5]), chunk(b"tEXt", b"a\x00b"), _idat(good_z[5:]), IEND),
         "the IDAT chunks are not consecutive"),
        ("critical chunk", _sig(ihdr(2, 2), chunk(b"ABCD", b""), _idat(good_z), IEND),
         "unknown critical PNG chunk ABCD"),
        ("no IDAT", _sig(ihdr(2, 2), IEND), "PNG without an IDAT chunk"),
        ("filter type 5", png_with_zlib(zlib.compress(RAW_2X2[:7] + b"\x05" + RAW_2X2[8:])),
         "PNG row 1 has filter type 5 (0..4)"),
        ("palette index", _sig(ihdr(2, 1, 8, 3), chunk(b"PLTE", bytes(6)), _idat(zlib.compress(b"\x00\x01\x02")), IEND),
         "pixel (1, 0) (x, y) uses palette index 2, the PLTE chunk has 2 entries"),
        ("palette index 4-bit", _sig(ihdr(3, 2, 4, 3), chunk(b"PLTE", bytes(9)),
                                     _idat(zlib.compress(b"\x00\x12\x00\x00\x03\x00")), IEND),
         "pixel (1, 1) (x, y) uses palette index 3, the PLTE chunk has 3 entries"),
        # zlib's header and trailer
        ("zlib 1 byte", png_with_zlib(b"\x78"), "IDAT data: the zlib stream is truncated"),
        ("zlib method 7", png_with_zlib(b"\x77\x01" + good_z[2:]), "IDAT data: zlib compression method 7 is not "
                                                                    "deflate (8)"),
        ("zlib window 8", png_with_zlib(b"\x88\x1c" + good_z[2:]), "IDAT data: zlib window size exponent 8 exceeds 7"),
        ("zlib check", png_with_zlib(b"\x78\x9d" + good_z[2:]), "IDAT data: the zlib header check fails"),
        ("zlib dictionary", png_with_zlib(b"\x78\xbb" + good_z[2:]), "IDAT data: a zlib preset dictionary is not "
                                                                      "allowed"),
        ("deflate cut", png_with_zlib(good_z[:4]), "IDAT data: the deflate stream is truncated"),
        ("stored block cut", png_with_zlib(zlib.compress(RAW_2X2, 0)[:10]), "IDAT data: the deflate stream is "
                                                                              "truncated"),
        ("no adler", png_with_zlib(good_z[:-2]), "IDAT data: the zlib stream is truncated (no Adler-32 checksum)"),
        ("bad adler", png_with_zlib(good_z[:-1] + bytes([good_z[-1] ^ 4])),
         f"IDAT data: Adler-32 mismatch (stored 0x{zlib.adler32(RAW_2X2) ^ 4:08x}, computed "
         f"0x{zlib.adler32(RAW_2X2):08x})"),
        ("after stream", png_with_zlib(good_z + b"xy"), "IDAT data: 2 bytes after the end of the zlib stream"),
        ("too much", png_with_zlib(zlib.compress(RAW_2X2 + b"\x00")), "IDAT data inflates to more than the 14 bytes "
                                                                      "the image needs"),
        ("much too much", png_with_zlib(zlib.compress(bytes(100000))), "IDAT data inflates to more than the 14 "
                                                                       "bytes the image needs"),
        ("too little", png_with_zlib(zlib.compress(RAW_2X2[:-1])), "IDAT data inflates to 13 bytes, the image "
                                                                   "needs 14"),
    ]
    # deflate errors, each in zlib's words
    corrupt = "IDAT data: corrupt deflate stream ({})"
    deflate = [
        ("block type 3", BitWriter().put(1, 1).put(3, 2), "invalid block type"),
        ("stored lengths", BitWriter().put(1, 1).put(0, 2).put(0, 5).put(5, 16).put(0, 16), "invalid stored block "
                                                                                               "lengths"),
        ("fixed 286", BitWriter().put(1, 1).put(1, 2).fixed(286), "invalid literal/length code"),
        ("fixed distance 30", BitWriter().put(1, 1).put(1, 2).fixed(65).fixed(257).code(30, 5), "invalid distance "
                                                                                                  "code"),
        ("too far back", BitWriter().put(1, 1).put(1, 2).fixed(65).fixed(257).code(1, 5), "invalid distance too far "
                                                                                           "back"),
        ("287 lengths", BitWriter().put(1, 1).put(2, 2).put(30, 5).put(0, 5).put(0, 4), "too many length or "
                                                                                         "distance symbols"),
        ("31 distances", BitWriter().put(1, 1).put(2, 2).put(0, 5).put(30, 5).put(0, 4), "too many length or "
                                                                                          "distance symbols"),
        ("incomplete lengths code", dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, {0: 1}),
         "invalid code lengths set"),
        ("over-subscribed lengths code", dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, {0: 1, 16: 1, 17: 1}),
         "invalid code lengths set"),
        ("repeat first", dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, {0: 1, 16: 1}).code(1, 1).put(0, 2),
         "invalid bit length repeat"),
        ("repeat past the end", zeros18(dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, CL4), 250)
         .code(3, 2).put(0, 7), "invalid bit length repeat"),
        ("no end of block", zeros18(dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, CL4), 258),
         "invalid code -- missing end-of-block"),
        ("over-subscribed literals", cl4(zeros18(cl4(cl4(dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, CL4),
                                                            1), 1), 254), 1).code(0, 2),
         "invalid literal/lengths set"),
        ("incomplete literals", _incomplete_literals(), "invalid literal/lengths set"),
        ("over-subscribed distances", _oversubscribed_distances(), "invalid distances set"),
        ("lone code's unused pattern", cl4(cl4(zeros18(dynamic_header(BitWriter().put(1, 1).put(2, 2), 257, 1, CL4),
                                                       256), 1), 0).code(1, 1),
         "invalid literal/length code"),
    ]
    for label, bw, msg in deflate:
        cases.append((label, png_with_zlib(zlib_wrap(bw.data() + bytes(8), RAW_2X2)), corrupt.format(msg)))
    label, bad_crc, _ = cases[7]
    n = struct.unpack_from(">I", bad_crc, idat_at)[0]
    stored = struct.unpack_from(">I", bad_crc, idat_at + 8 + n)[0]
    computed = zlib.crc32(bad_crc[idat_at + 4:idat_at + 8 + n])
    cases[7] = (label, bad_crc,
                f"PNG chunk IDAT at byte {idat_at} has a bad CRC (stored 0x{stored:08x}, computed 0x{computed:08x})")
    pix = bytes(6)
    cases += [
        ("ppm maxval 65535", b"P6 1 1 65535\n" + pix, "PPM maxval 65535 is not supported (only 255)"),
        ("ppm maxval 1", b"P6 1 1 1\n" + pix, "PPM maxval 1 is not supported (only 255)"),
        ("ppm cut", b"P6 2 1 255\n" + pix[:5], "truncated PPM: 5 pixel bytes, 6 needed"),
        ("ppm no space", b"P63 2 255\n" + pix, "PPM header: no whitespace before the width at byte 2"),
        ("ppm letter", b"P6 x 2 255\n", "PPM header: the width at byte 3 is not a decimal number"),
        ("ppm eof in header", b"P6 2 1", "PPM header: no whitespace before the maxval at byte 6"),
        ("ppm comment to eof", b"P6 2 1 # 255", "PPM header: the maxval at byte 12 is not a decimal number"),
        ("ppm ten digits", b"P6 1234567890 1 255\n", "PPM header: the width at byte 3 has more than 9 digits"),
        ("ppm no byte after maxval", b"P6 1 1 255", "PPM header: the maxval must be followed by one whitespace byte "
                                                    "(byte 10)"),
        ("ppm height 0", b"P6 1 0 255\n", "image size 1x0 (width x height) is empty"),
        ("ppm huge", b"P6 16384 16384 255\n", f"image size 16384x16384 (width x height) {LIMIT}"),
    ]
    return cases


def test_malformed_files_are_refused_in_one_line():
    cases = malformed_cases()
    assert len(cases) > 70
    for label, data, msg in cases:
        with pytest.raises(I.ImageError) as e:
            I.decode_image(data, "bad.png")
        assert str(e.value) == f"bad.png: {msg}", label


def test_cpp_refuses_malformed_files_as_numpy(cpp, tmp_path):
    for k, (label, data, msg) in enumerate(malformed_cases()):
        path = tmp_path / f"bad{k}.png"
        path.write_bytes(data)
        assert cpp.refusal("decode", path, tmp_path / "out") == f"{path}: {msg}", label


def test_unreadable_files_are_refused(cpp, tmp_path):
    for path, why in [(tmp_path / "missing.png", "No such file or directory"), (tmp_path, "Is a directory")]:
        msg = f"{path}: cannot read the file ({why})"
        with pytest.raises(I.ImageError) as e:
            I.load_image(path)
        assert str(e.value) == msg
        assert cpp.refusal("decode", path, tmp_path / "out") == msg


def test_bad_resize_and_normalize_arguments_are_refused(cpp, tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    src = tmp_path / "img.raw"
    src.write_bytes(raw_image(img))
    out = tmp_path / "out"
    for h, w, method, msg in [(3, 3, "lanczos", "resize: method 'lanczos' is not one of bilinear, bicubic, nearest"),
                              (0, 3, "bilinear", "resize: image size 3x0 (width x height) is empty"),
                              (3, 16385, "nearest", f"resize: image size 16385x3 (width x height) {LIMIT}"),
                              (8193, 8193, "bicubic", f"resize: image size 8193x8193 (width x height) {LIMIT}")]:
        with pytest.raises(I.ImageError) as e:
            I.resize(img, h, w, method)
        assert str(e.value) == msg
        assert cpp.refusal("resize", src, out, h, w, method) == msg
    inf, nan = float("inf"), float("nan")
    for mean, std, msg in [([0, 0, 0], [1, 0, 1], "normalize: std[1] is 0 in float32"),
                           ([0, 0, 0], [1, 1, 1e-50], "normalize: std[2] is 0 in float32"),
                           ([0, nan, 0], [1, 1, 1], "normalize: mean[1] is not a finite float32"),
                           ([0, 0, 0], [inf, 1, 1], "normalize: std[0] is not a finite float32"),
                           ([1e39, 0, 0], [1, 1, 1], "normalize: mean[0] is not a finite float32")]:
        with pytest.raises(I.ImageError) as e:
            I.normalize(img, mean, std)
        assert str(e.value) == msg
        with np.errstate(over="ignore"):
            as_float32 = [np.float32(v) for v in mean + std]   # what a C++ caller passes
        args = [float(v).hex() if np.isfinite(v) else str(float(v)) for v in as_float32]
        assert cpp.refusal("normalize", src, out, *args) == msg
    for bad in [np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.float32), np.zeros((0, 5, 3), np.uint8), [1, 2]]:
        for fn in (lambda x: I.resize(x, 2, 2), lambda x: I.normalize(x, [0] * 3, [1] * 3)):
            with pytest.raises(I.ImageError):
                fn(bad)
    # the C++ Image's bytes must match its size
    src.write_bytes(struct.pack("<qq", 4, 5) + bytes(59))
    assert cpp.refusal("resize", src, out, 2, 2, "bilinear") == "resize: the image holds 59 bytes, 5x4x3 needs 60"
    src.write_bytes(struct.pack("<qq", 0, 5))
    assert cpp.refusal("normalize", src, out, *["0x0p+0"] * 3, *["0x1p+0"] * 3) == \
        "normalize: image size 5x0 (width x height) is empty"


# ----------------------------------------------------------------------------- fuzz

def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of the chunks of a well-formed PNG."""
    out, pos = [], 8
    while pos < len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        out.append((pos, data[pos + 4:pos + 8], length))
        pos += 12 + length
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A seeded mutation: raw byte damage (most of it caught by a CRC), or damage inside one chunk whose CRC is
    then recomputed, so that IHDR, PLTE and the zlib stream themselves are exercised; for the zlib stream the
    Adler-32 is often repaired too, so that damaged but inflatable data reaches the filters."""
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:                       # raw: flip bits anywhere
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:                       # raw: truncate, or insert / delete a run
        at = rng.randrange(len(b))
        if rng.random() < 0.4:
            return bytes(b[:at])
        if rng.random() < 0.5:
            return bytes(b[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + b[at:])
        return bytes(b[:at] + b[at + rng.randint(1, 8):])
    chunks = _chunks(data)
    pick = [c for c in chunks if c[1] in (b"IHDR", b"PLTE", b"IDAT", b"tRNS")]
    if kind == 2:                       # IHDR fields, CRC repaired
        pick = [c for c in chunks if c[1] == b"IHDR"]
    pos, ctype, length = rng.choice(pick)
    body = bytearray(b[pos + 8:pos + 8 + length])
    if not body:
        return bytes(b)
    if ctype == b"IDAT" and kind >= 4:  # damage the deflate data only, then repair the Adler-32 if it inflates
        z = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(2, max(3, len(z) - 4))
            if at < len(z):
                z[at] ^= 1 << rng.randrange(8)
        if kind == 5 and len(z) > 6:
            d = zlib.decompressobj(-15)
            try:
                out = d.decompress(bytes(z[2:]))
                if d.eof and len(d.unused_data) >= 4:
                    end = len(z) - len(d.unused_data)
                    z[end:end + 4] = struct.pack(">I", zlib.adler32(out))
            except zlib.error:
                pass
        body = z
    else:
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            body[at] = rng.randrange(256) if rng.random() < 0.5 else body[at] ^ (1 << rng.randrange(8))
    new = struct.pack(">I", len(body)) + ctype + bytes(body) + struct.pack(">I", zlib.crc32(ctype + bytes(body)))
    return bytes(b[:pos]) + new + bytes(b[pos + 12 + length:])


FUZZ_CASES = 400


def test_fuzz_png_mutations_cpp_agrees_with_numpy(cpp, tmp_path):
    """Seeded mutations of valid PNGs (every colour type, filter and zlib strategy): C++ (under ASan + UBSan in
    the asan flavour) and numpy accept the same files with the same pixels and refuse the others with the same
    one-line message."""
    rng = random.Random(1234)
    seeds = [data for _, data in own_png_files()[::3] + pillow_png_files()[::6]]
    files, expected = [], []
    for k in range(FUZZ_CASES):
        data = mutate(rng.choice(seeds), rng)
        path = tmp_path / f"fuzz{k}.png"
        path.write_bytes(data)
        files.append(path)
        expected.append(py_outcome(I.load_image, str(path)))
    got = cpp.decode_files(files)
    accepted = 0
    for path, e, g in zip(files, expected, got):
        assert same(g, e), (path.name, e if isinstance(e, str) else "accepted", g if isinstance(g, str) else "accepted")
        if isinstance(g, str):
            assert g.startswith(f"{path}: ") and "\n" not in g
        else:
            accepted += 1
    assert 20 < accepted < FUZZ_CASES - 100   # both sides of the boundary are exercised
