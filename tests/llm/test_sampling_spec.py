"""The specified sampler (doc/serve.md, "Sampling is the same everywhere") is the same in Python
(dlavm.runtime.sampling) and C++ (clib: dlavm/llm.h), bit for bit: SplitMix64 against its published
reference values, exp_spec on many x, sample on thousands of logits and parameter sets (ties, top_k=1,
tiny top_p, peaked and flat logits, infinities, vocabulary 1 to 200,000, top_p next to 1 and tiny, the
C++ sampler's partial orders), and the generation loop (dlavm::generate vs
dlavm.runtime.generate.Generator) on a deterministic fake model: the same tokens, stop reasons, messages
and refusals. The C++ side is tests/llm/sampling_tool.cc, built against clib's release and ASan/UBSan
libraries; its vector loops run both ways where the CPU has two (AVX2 and the portable ones)."""
from __future__ import annotations

import functools
import math
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlavm.runtime.generate import ContextOverflowError, GenerateArgumentError, Generator
from dlavm.runtime.sampling import EXP_MIN, SplitMix64, exp_spec, sample
from tests.clib.clib_build import FLAVOURS, build_clib, compile_programs, install_sanitizer_env

HERE = Path(__file__).resolve().parent

install_sanitizer_env()


@pytest.fixture(scope="module", params=FLAVOURS)
def tool(request, tmp_path_factory) -> Path:
    lib = build_clib(request.param)
    return compile_programs({"sampling_tool": [HERE / "sampling_tool.cc"]},
                            tmp_path_factory.mktemp(f"sampling_{request.param}"), request.param, lib)["sampling_tool"]


def run(tool: Path, *args, portable: bool = False) -> str:
    """The tool's output; ``portable``: with the portable vector loops instead of the CPU's widest."""
    res = subprocess.run([str(tool), *(["--portable"] if portable else []), *map(str, args)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, f"{args[:1]} -> {res.returncode}\n{res.stderr}"
    return res.stdout


# ---- SplitMix64 ---------------------------------------------------------------------------------------

def test_splitmix64_reference_values():
    """The published outputs of SplitMix64 (Vigna's splitmix64.c): seed 1234567's first five, seed 0's
    first; uniform numbers are the top 53 bits."""
    rng = SplitMix64(1234567)
    assert [rng.next() for _ in range(5)] == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                              4593380528125082431, 16408922859458223821]
    assert SplitMix64(0).next() == 0xE220A8397B1DCDAF
    assert SplitMix64(1234567).uniform() == (6457827717110365317 >> 11) / 2**53
    assert SplitMix64(2**64 - 1).uniform() < 1.0
    with pytest.raises(ValueError, match=r"seed=-1: must be an integer in \[0, 2\*\*64\)"):
        SplitMix64(-1)
    with pytest.raises(ValueError):
        SplitMix64(2**64)


@pytest.mark.parametrize("seed", [0, 1, 1234567, 2**63 - 1, 2**64 - 1])
def test_splitmix64_cpp_matches(tool, seed):
    lines = run(tool, "splitmix", seed, 2000).split("\n")[:-1]
    a, b = SplitMix64(seed), SplitMix64(seed)
    want = [f"{a.next()} {struct.unpack('<Q', struct.pack('<d', b.uniform()))[0]:016x}" for _ in range(2000)]
    assert lines == want


# ---- exp_spec -----------------------------------------------------------------------------------------

def _exp_inputs(rng: np.random.Generator) -> np.ndarray:
    ln2 = math.log(2)
    k = np.arange(-1100, 1)
    halves = (k + 0.5) * ln2                       # where rint(x / ln 2) is a tie or near one
    near = np.concatenate([np.nextafter(halves, -np.inf), halves, np.nextafter(halves, np.inf),
                           k * ln2, np.nextafter(k * ln2, 0)])
    edge = EXP_MIN + np.linspace(-1, 1, 2001)      # around the cut to 0, through the subnormal results
    special = np.array([0.0, -0.0, -5e-324, -1e-300, -1e-17, -1e-8, -0.5, -1.0, EXP_MIN, np.nextafter(EXP_MIN, 0),
                        np.nextafter(EXP_MIN, -np.inf), -708.3964185322641, -709.0, -744.44, -745.1332191019411,
                        -745.13321910194122, -800.0, -1e300, -np.inf, -np.finfo(np.float64).max])
    uniform = -rng.random(200_000) * 760
    small = -np.exp(rng.uniform(-60, 3, 100_000))
    return np.concatenate([near[near <= 0], edge, special, uniform, small])


@pytest.mark.parametrize("form", ["exp", "expv"])
@pytest.mark.parametrize("portable", [False, True])
def test_exp_spec_matches_cpp_bit_for_bit(tool, tmp_path, form, portable):
    """One value at a time and the array form, with the CPU's widest vector loops and the portable ones;
    odd lengths too (the array form's tail)."""
    xs = _exp_inputs(np.random.default_rng(11))
    want = exp_spec(xs)
    for n in (xs.size, 1, 3, 5, 7, 9, 15, 17):
        xs[:n].astype("<f8").tofile(tmp_path / "x.bin")
        run(tool, form, tmp_path / "x.bin", tmp_path / "y.bin", portable=portable)
        got = np.fromfile(tmp_path / "y.bin", "<f8")
        bad = np.flatnonzero(got.view(np.uint64) != want[:n].view(np.uint64))
        assert got.size == n and bad.size == 0, [(xs[i], got[i], want[i]) for i in bad[:10]]


def test_exp_spec_is_exp():
    """Within one ulp of numpy's exp where the result is a normal double; 1 at 0; 0 below EXP_MIN."""
    xs = _exp_inputs(np.random.default_rng(12))
    normal = xs[xs > -708]
    want, got = np.exp(normal), exp_spec(normal)
    assert np.all(np.abs(got - want) <= np.spacing(want))
    assert exp_spec(np.array([0.0, -0.0])).tolist() == [1.0, 1.0]
    assert exp_spec(np.array([np.nextafter(EXP_MIN, -np.inf), -1e300, -np.inf])).tolist() == [0.0, 0.0, 0.0]
    sub = xs[(xs >= EXP_MIN) & (xs <= -708)]
    assert np.all(np.abs(exp_spec(sub) - np.exp(sub)) <= 2 * np.spacing(np.exp(sub)) + 5e-324)
    mono = np.sort(xs[np.isfinite(xs)])
    assert np.all(np.diff(exp_spec(mono)) >= 0)   # monotone on the sorted inputs


# ---- sample -------------------------------------------------------------------------------------------

def _pack(case) -> bytes:
    logits, temperature, top_k, top_p, seed, draws = case
    x = np.asarray(logits, np.float32)
    return struct.pack("<IIdqdQ", x.size, draws, temperature, top_k, top_p, seed) + x.astype("<f4").tobytes()


def _python(case) -> str:
    logits, temperature, top_k, top_p, seed, draws = case
    rng = SplitMix64(seed)
    try:
        return " ".join(str(sample(logits, temperature, top_k, top_p, rng)) for _ in range(draws))
    except ValueError as e:
        return f"error: {e}"


def _compare(tool, tmp_path, cases, want=None) -> list[str]:
    """The C++ sampler's draws (with both kinds of vector loops) equal the Python sampler's (``want``,
    computed here unless given)."""
    path = tmp_path / "cases.bin"
    path.write_bytes(b"".join(map(_pack, cases)))
    want = [_python(c) for c in cases] if want is None else want
    for portable in (False, True):
        got = run(tool, "sample", path, portable=portable).split("\n")[:-1]
        bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert len(got) == len(cases) and not bad, (portable, [(cases[i][1:], g, w) for i, g, w in bad[:5]])
    return want


def _logits(rng: np.random.Generator, vocab: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(vocab) * rng.choice([0.1, 1, 3, 10])
    if kind == "ties":                                       # few distinct values: many equal logits
        return rng.integers(-3, 4, vocab).astype(np.float64) * rng.choice([0.25, 1, 7])
    if kind == "flat":
        return np.full(vocab, rng.choice([0.0, -2.5, 30.0]))
    if kind == "peaked":                                     # one logit far above the rest
        x = rng.standard_normal(vocab)
        x[rng.integers(vocab)] = rng.choice([20.0, 100.0, 1e4])
        return x
    if kind == "wide":                                       # float32 extremes, infinities
        x = rng.standard_normal(vocab) * 1e30
        x[rng.integers(vocab, size=max(1, vocab // 8))] = rng.choice([np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45])
        return x
    if kind == "fp16":                                       # values the device returns (fp16 grid)
        return (rng.standard_normal(vocab) * 4).astype(np.float16).astype(np.float64)
    raise AssertionError(kind)


KINDS = ("normal", "ties", "flat", "peaked", "wide", "fp16")


def _random_cases(rng: np.random.Generator, n: int) -> list:
    cases = []
    for k in range(n):
        vocab = int(rng.choice([1, 2, 3, 7, 64, 512, int(rng.integers(1, 2000))]))
        x = _logits(rng, vocab, KINDS[k % len(KINDS)]).astype(np.float32)
        temperature = float(rng.choice([1.0, 0.7, 1.5, 1e-3, 1e-30, 1e-300, 100.0, float(rng.uniform(0.05, 3))]))
        top_k = int(rng.choice([0, 0, 1, 2, vocab, int(rng.integers(0, vocab + 1))]))
        top_p = float(rng.choice([1.0, 1.0, 0.9, 0.5, 1e-9, 5e-324, float(rng.uniform(0, 1)) or 1.0]))
        seed = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        cases.append((x, temperature, top_k, top_p, seed, int(rng.integers(1, 5))))
    return cases


def test_sample_matches_cpp_on_thousands_of_cases(tool, tmp_path):
    rng = np.random.default_rng(2024)
    cases = _random_cases(rng, 4000)
    want = _compare(tool, tmp_path, cases)
    for (x, temperature, top_k, *_), ids in zip(cases, want):   # top_k = 1: the argmax of z (first maximum)
        if top_k == 1:
            with np.errstate(over="ignore"):
                assert set(ids.split()) == {str(int(np.argmax(x.astype(np.float64) / temperature)))}


def test_sample_edge_cases_and_refusals(tool, tmp_path):
    x = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
    cases = [
        (np.array([5.0], np.float32), 1.0, 0, 1.0, 7, 3),           # vocabulary 1
        (np.array([-np.inf], np.float32), 1.0, 0, 1.0, 7, 3),
        (np.full(5, -np.inf, np.float32), 1.0, 0, 1.0, 7, 20),     # all -inf: uniform over them
        (np.full(5, np.inf, np.float32), 2.0, 3, 1.0, 8, 20),       # all +inf: the first 3
        (x, 1.0, 1, 1.0, 1, 5),                                     # ties at the top: the smallest id
        (x, 1.0, 0, 1e-12, 1, 5),                                   # tiny top_p: the first in the order
        (x, 1e-300, 0, 1.0, 3, 30),                                 # z overflows: the three tied maxima
        (x, 1.0, 2, 1.0, 4, 30),                                    # top_k cuts a tie
        (np.zeros(0, np.float32), 1.0, 0, 1.0, 1, 1),
        (np.array([1.0, np.nan], np.float32), 1.0, 0, 1.0, 1, 1),
        (x, 0.0, 0, 1.0, 1, 1),
        (x, -1.0, 0, 1.0, 1, 1),
        (x, math.inf, 0, 1.0, 1, 1),
        (x, math.nan, 0, 1.0, 1, 1),
        (x, 1.0, 6, 1.0, 1, 1),
        (x, 1.0, -1, 1.0, 1, 1),
        (x, 1.0, 0, 0.0, 1, 1),
        (x, 1.0, 0, 1.5, 1, 1),
        (x, 1.0, 0, math.nan, 1, 1),
    ]
    got = _compare(tool, tmp_path, cases)
    assert got[0] == "0 0 0" and got[1] == "0 0 0"
    assert set(got[2].split()) == {"0", "1", "2", "3", "4"}
    assert set(got[3].split()) == {"0", "1", "2"}
    assert got[4] == "1 1 1 1 1" and got[5] == "1 1 1 1 1"
    assert set(got[6].split()) == {"1", "2", "4"}
    assert set(got[7].split()) == {"1", "2"}
    assert got[8:] == [
        "error: logits must be a non-empty vector, got 0 values",
        "error: logit 1 is NaN: cannot sample",
        "error: temperature=0.0: sampling needs a finite number > 0",
        "error: temperature=-1.0: sampling needs a finite number > 0",
        "error: temperature=inf: sampling needs a finite number > 0",
        "error: temperature=nan: sampling needs a finite number > 0",
        "error: top_k=6: must be an integer in [0, 5] (0: all tokens)",
        "error: top_k=-1: must be an integer in [0, 5] (0: all tokens)",
        "error: top_p=0.0: must be a number in (0, 1]",
        "error: top_p=1.5: must be a number in (0, 1]",
        "error: top_p=nan: must be a number in (0, 1]",
    ]


NEXT_BELOW_1 = float(np.nextafter(1.0, 0.0))


@functools.lru_cache(maxsize=None)
def _large_cases() -> tuple[list, list[str]]:
    """The cases of the test below and the Python sampler's draws (computed once for both flavours)."""
    rng = np.random.default_rng(77)
    params = [(0, 1.0), (0, NEXT_BELOW_1), (0, 0.999), (0, 0.9), (0, 0.5), (0, 0.05), (0, 1e-6),
              (40, 1.0), (40, 0.9), (1, 0.9), (-1, 1.0), (-1, 0.95), (-2, 1.0), (-2, 0.7)]   # -1: vocab, -2: large
    few = [(0, 1.0), (0, NEXT_BELOW_1), (0, 0.9), (0, 1e-6), (-2, 0.7)]  # above 40,000 ids (the Python side's time)
    cases = []
    for vocab in (1, 2, 5, 63, 64, 65, 257, 1000, 4097, 32000, 151936, 200000):
        for kind in ("flat", "peaked", "normal", "ties", "wide", "fp16"):
            if vocab > 40000 and kind in ("ties", "fp16"):
                continue
            x = _logits(rng, vocab, kind).astype(np.float32)
            for top_k, top_p in (few if vocab > 40000 else params):
                top_k = vocab if top_k == -1 else (min(vocab, 5000 + vocab // 3) if top_k == -2 else min(top_k, vocab))
                temperature = float(rng.choice([1.0, 0.8, 30.0]))
                cases.append((x, temperature, top_k, top_p, int(rng.integers(0, 2**63)), 3))
    return cases, [_python(c) for c in cases]


def test_sample_large_vocabularies_and_partial_orders(tool, tmp_path):
    """Vocabularies 1 to 200,000 through every way the C++ sampler finds the kept ids: no order (top_k 0
    or vocab, top_p 1), the best top_k (a heap; a selection for a large top_k), and the top_p cut (a
    guess of the kept ids by their weights, sorted, grown in chunks where it falls short, past the ids
    near the maximum where need be): top_p next to 1 on flat logits (every id, in order; the running sum
    in z order may then stay below top_p * S, and every id is kept), wide logits (ids far below the
    maximum come last), tiny top_p on peaked logits (one id), and values in between."""
    cases, want = _large_cases()
    _compare(tool, tmp_path, cases, want)
    flat_all = [(x.size, w) for (x, _, k, p, *_), w in zip(cases, want) if k in (0, x.size) and p == NEXT_BELOW_1
                and np.all(x == x[0]) and x.size >= 1000]
    # flat: every id kept, so the draws spread over the vocabulary (3 draws all below 1% of it: p = 1e-6)
    assert flat_all and all(any(int(t) >= vocab // 100 for t in w.split()) for vocab, w in flat_all)
    # top_k 0 and top_k = vocab are the same rule, draw for draw
    rng = np.random.default_rng(78)
    for vocab in (7, 1000, 32000):
        x = _logits(rng, vocab, "normal").astype(np.float32)
        for top_p in (1.0, 0.9):
            assert _python((x, 0.8, 0, top_p, 5, 6)) == _python((x, 0.8, vocab, top_p, 5, 6))


def test_sample_distribution_is_the_softmax():
    """Many draws follow softmax(logits / T) restricted by top_k and top_p (a chi-square-free check: every
    kept id's frequency within 5 standard deviations of its probability; no other id drawn)."""
    x = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], np.float32)
    rng, n = SplitMix64(5), 20000
    for top_k, top_p in ((0, 1.0), (3, 1.0), (0, 0.8)):
        p = np.exp(x.astype(np.float64) / 1.3)
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:top_k or None]
        q = p[order] / p[order].sum()
        if top_p < 1:
            keep = int(np.argmax(np.cumsum(q) >= top_p)) + 1
            order, q = order[:keep], q[:keep] / q[:keep].sum()
        counts = np.bincount([sample(x, 1.3, top_k, top_p, rng) for _ in range(n)], minlength=x.size)
        assert counts[np.setdiff1d(np.arange(x.size), order)].sum() == 0
        want = q * n
        assert np.all(np.abs(counts[order] - want) <= 5 * np.sqrt(want * (1 - q)) + 1)


@st.composite
def _case(draw):
    vocab = draw(st.integers(1, 300))
    values = draw(st.lists(st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([0.0, 1.0, 1.5, -2.0]),
                                     st.floats(width=32, allow_nan=False)), min_size=vocab, max_size=vocab))
    temperature = draw(st.one_of(st.floats(1e-6, 1e3), st.sampled_from([1.0, 1e-300, 5e-324, 1e300])))
    top_k = draw(st.one_of(st.just(0), st.integers(0, vocab)))
    top_p = draw(st.one_of(st.just(1.0), st.floats(5e-324, 1.0), st.sampled_from([1e-9, 0.5, 0.999999])))
    seed = draw(st.integers(0, 2**64 - 1))
    return (np.array(values, np.float32), temperature, top_k, top_p, seed, draw(st.integers(1, 4)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases=st.lists(_case(), min_size=1, max_size=25))
def test_sample_matches_cpp_property(tool, tmp_path, cases):
    _compare(tool, tmp_path, cases)


# ---- the generation loop ------------------------------------------------------------------------------

def fake_logits(ids, ctx: int, vocab: int) -> np.ndarray:
    """sampling_tool.cc's fake model: integers mod 1000 over 100, minus 5, in float32 (many ties)."""
    i = np.arange(vocab, dtype=np.int64)
    m = (i * 7919 + ctx * 31 + int(ids[-1]) * 17 + len(ids) * 13) % 1000
    return m.astype(np.float32) / np.float32(100) - np.float32(5)


class FakeGenerator(Generator):
    """Generator's loop and checks on fake_logits instead of a device."""

    def __init__(self, vocab: int, max_ctx: int):
        self.llm, self.max_ctx = SimpleNamespace(vocab=vocab), max_ctx
        self.past, self.stop_reason, self.stop_message, self.logits, self.steps, self.seed = 0, None, "", [], [], None

    def step(self, ids, logits=False):
        ctx = self.past + len(ids)
        assert ctx <= self.max_ctx
        row = fake_logits(ids, ctx, self.llm.vocab)
        self.past = ctx
        return row if logits else int(np.argmax(row))


def _cpp_generate(tool, vocab, max_ctx, prompt, max_new, temperature=0.0, top_k=0, top_p=1.0, seed=0, eos=(),
                  stop_after=None):
    out = run(tool, "generate", vocab, max_ctx, max_new, repr(float(temperature)), top_k, repr(float(top_p)), seed,
              ",".join(map(str, eos)) or "-", ",".join(map(str, prompt)),
              *([] if stop_after is None else [stop_after])).split("\n")
    if out[0].startswith("refused "):
        return out[0]
    return [int(t) for t in out[0].split()], out[1].removeprefix("stop "), out[2]


def _py_generate(vocab, max_ctx, prompt, max_new, temperature=0.0, top_k=0, top_p=1.0, seed=0, eos=()):
    gen = FakeGenerator(vocab, max_ctx)
    try:
        toks = list(gen.generate(prompt, max_new, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                 eos_id=list(eos)))
    except (ContextOverflowError, GenerateArgumentError) as e:
        return f"refused {type(e).__name__}: {e}"
    return toks, gen.stop_reason, gen.stop_message


GEN_CASES = [
    dict(vocab=97, max_ctx=40, prompt=[1, 2, 3], max_new=12),
    dict(vocab=97, max_ctx=40, prompt=[5], max_new=60),                                    # context
    dict(vocab=512, max_ctx=40, prompt=[7, 8], max_new=20, temperature=1.0, seed=3),
    dict(vocab=512, max_ctx=40, prompt=[7, 8], max_new=20, temperature=0.6, top_k=8, top_p=0.9, seed=2**64 - 1),
    dict(vocab=512, max_ctx=40, prompt=[7, 8], max_new=20, temperature=2.5, top_p=0.3, seed=11),
    dict(vocab=512, max_ctx=40, prompt=[7, 8], max_new=20, temperature=0.8, top_k=1, seed=1),
    dict(vocab=1, max_ctx=8, prompt=[0], max_new=20, temperature=1.0, seed=1),                # vocab 1
    dict(vocab=1000, max_ctx=30, prompt=list(range(30)), max_new=5, temperature=1.0, seed=9),  # prompt fills it
    dict(vocab=10, max_ctx=40, prompt=[1], max_new=40, temperature=5.0, seed=4, eos=(3, 9)),   # eos
    dict(vocab=97, max_ctx=40, prompt=[], max_new=3),
    dict(vocab=97, max_ctx=40, prompt=[1, -1, 97, 200, 5, 300, 400, 500], max_new=3),
    dict(vocab=97, max_ctx=4, prompt=[1, 2, 3, 4, 5], max_new=3),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=0),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=-0.5),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=math.nan),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=math.inf),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=1.0, top_k=98),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=1.0, top_k=-2),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=1.0, top_p=0.0),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, temperature=1.0, top_p=1.25),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, eos=(97,)),
    dict(vocab=97, max_ctx=40, prompt=[1], max_new=3, eos=(-1,)),
]


def test_generate_loop_matches_python(tool):
    for case in GEN_CASES:
        assert _cpp_generate(tool, **case) == _py_generate(**case), case
    eos_case = _py_generate(**GEN_CASES[8])
    assert eos_case[1] == "eos" and eos_case[0][-1] in (3, 9)
    assert _py_generate(**GEN_CASES[1])[1] == "context" and _py_generate(**GEN_CASES[7])[1] == "context"


def test_generate_loop_random_parameters_match_python(tool):
    rng = np.random.default_rng(8)
    for _ in range(30):
        vocab = int(rng.integers(1, 700))
        case = dict(vocab=vocab, max_ctx=int(rng.integers(4, 64)), max_new=int(rng.integers(1, 70)),
                    prompt=[int(t) for t in rng.integers(0, vocab, int(rng.integers(1, 4)))],
                    temperature=float(rng.choice([0.0, 0.5, 1.0, 3.0])), top_k=int(rng.integers(0, vocab + 1)),
                    top_p=float(rng.choice([1.0, 0.95, 0.4])), seed=int(rng.integers(0, 2**63)),
                    eos=tuple(int(t) for t in rng.integers(0, vocab, int(rng.integers(0, 3)))))
        assert _cpp_generate(tool, **case) == _py_generate(**case), case


def test_batch_decoder_gives_each_sequence_its_loop_alone(tool, tmp_path):
    """dlavm::BatchDecoder (continuous batching over 3 slots of a fake model whose rows are independent)
    gives every request exactly what Generator gives it alone: tokens, stop reason and message, refusals;
    the requests of GEN_CASES, greedy and sampled, queued at once."""
    vocab, max_ctx = 97, 40
    cases = [c for c in GEN_CASES if c["vocab"] == vocab and c["max_ctx"] == max_ctx]
    cases += [dict(vocab=vocab, max_ctx=max_ctx, prompt=[3 + i, 5], max_new=4 + 3 * i, temperature=0.7 * (i % 2),
                   top_k=i % 5, seed=i, eos=(i % 7,) if i % 3 == 0 else ()) for i in range(12)]
    lines = []
    for c in cases:
        f = lambda x: repr(float(x))  # noqa: E731
        lines.append(" ".join(map(str, (c["max_new"], f(c.get("temperature", 0.0)), c.get("top_k", 0),
                                        f(c.get("top_p", 1.0)), c.get("seed", 0),
                                        ",".join(map(str, c.get("eos", ()))) or "-",
                                        ",".join(map(str, c["prompt"])) or "-"))))
    req = tmp_path / "requests.txt"
    req.write_text("\n".join(lines) + "\n")
    out = run(tool, "batch", vocab, max_ctx, 3, req).splitlines()
    steps = int(out.pop().removeprefix("steps "))
    got, i = [], 0
    while i < len(out):
        head = out[i]
        if " refused " in head:
            got.append(head.split(" ", 1)[1])
            i += 1
        else:
            toks = head.split(" ")[1:]
            got.append(([int(t) for t in toks if t], out[i + 1].removeprefix("stop "), out[i + 2]))
            i += 3
    want = [_py_generate(**c) for c in cases]
    assert got == want
    decoded = sum(len(w[0]) - 1 for w in want if not isinstance(w, str))
    assert steps < decoded   # steps ran several sequences at once


def test_generate_callback_stops_before_the_next_step(tool):
    toks, reason, message = _cpp_generate(tool, 97, 40, [1, 2], 10, stop_after=4)
    assert toks == _py_generate(97, 40, [1, 2], 10)[0][:4]
    assert (reason, message) == ("callback", "stopped by the caller after 4 tokens")


def test_generator_draws_and_keeps_a_seed():
    gen = FakeGenerator(512, 40)
    a = list(gen.generate([3, 4], 15, temperature=1.2))
    drawn = gen.seed
    assert isinstance(drawn, int) and 0 <= drawn < 2**63
    assert list(gen.generate([3, 4], 15, temperature=1.2, seed=drawn)) == a and gen.seed == drawn
    list(gen.generate([3, 4], 15, temperature=1.2))
    assert gen.seed != drawn        # a fresh draw each time (63 random bits)
    with pytest.raises(GenerateArgumentError, match=r"seed=18446744073709551616: must be an integer >= 0"):
        gen.generate([3, 4], 2, temperature=1.0, seed=2**64)
