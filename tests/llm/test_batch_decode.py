"""Batched decode (doc/llm.md "Batched decode") on the simulator with tiny-llama: every sequence of a
batched run gets bit for bit the logits (and so the tokens) it gets decoded alone, for B = 1..4
sequences of different prompt lengths, with continuous admission into freed slots; a slot's cache is
untouched by the other slots; the bounds are refused in one line; the CLI runs several prompts
together; B = 1 compiles the artifact without batching."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm.cli.main import main as cli
from dlavm.compiler import CompileError
from dlavm.llm import compile_llm
from dlavm.runtime.batch_generate import BatchGenerator, Request
from dlavm.runtime.generate import GenerateArgumentError, Generator
from dlavm.runtime.runtime import BoundsError, RunError
from tests.llm.conftest import compiled, imported, prompt_of

MAX_CTX = 48
SLOTS = 4
LENGTHS = (5, 1, 12, 7)   # prompts of different lengths, one per slot
NEW = 6

_CACHE: dict = {}


def batched(fmt: str = "int8", slots: int = SLOTS):
    key = (fmt, slots)
    if key not in _CACHE:
        _CACHE[key] = compile_llm(imported("tiny-llama", MAX_CTX).module, target="vcu128", weights=fmt,
                                  max_seq=MAX_CTX, name="tiny-llama", batch=slots)
    return _CACHE[key]


def alone(rt, prompt, new=NEW, **kw):
    """Tokens and per-token logits of ``prompt`` decoded alone (slot 0) with :class:`Generator`."""
    g = Generator(rt)
    toks = list(g.generate(prompt, new, keep_logits=True, **kw))
    return toks, g.logits


def same_logits(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_batch_one_is_the_artifact_without_batching():
    cm = compiled("tiny-llama", "int8", MAX_CTX)
    assert set(cm.manifest.entries) == {"logits", "greedy"}
    assert cm.manifest.entries["greedy"].state_dims == ("ctx",)
    assert set(cm.manifest.dims) == {"seq", "ctx"}


def test_batched_artifact_entries_and_cache_slots():
    cm = batched()
    m = cm.manifest
    assert set(m.entries) == {"logits", "greedy", "logits_batch", "greedy_batch"}
    assert m.entries["greedy"].state_dims == ("ctx", "slot")
    assert m.entries["greedy_batch"].state_dims == tuple(f"ctx{r}" for r in range(SLOTS))
    assert m.entries["greedy_batch"].requires == () and m.entries["greedy"].requires == ("seq <= ctx",)
    assert (m.dims["batch"].lo, m.dims["batch"].hi) == (1, SLOTS)
    assert (m.dims["slot"].lo, m.dims["slot"].hi) == (0, SLOTS - 1)
    one = compiled("tiny-llama", "int8", MAX_CTX).manifest.memory["kv"].buffers
    for name, buf in m.memory["kv"].buffers.items():
        if name.startswith("kv."):
            assert buf.size == SLOTS * one[name].size   # B slots of the single-sequence layout


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_batched_equals_alone_bit_exact(n):
    """n sequences together: each row's logits at every step are bit-identical to the same sequence
    decoded alone, on this artifact (slot 0) and on the artifact compiled without batching."""
    cm = batched()
    rt = cm.runtime()
    prompts = [prompt_of(k, seed=i) for i, k in enumerate(LENGTHS[:n])]
    ref = [alone(rt, p) for p in prompts]
    bg = BatchGenerator(rt)
    events = list(bg.generate([Request(p, NEW) for p in prompts], keep_logits=True))
    assert sorted(events) == sorted((i, t) for i, (toks, _) in enumerate(ref) for t in toks)
    for (toks, logits), res in zip(ref, bg.results):
        assert res.tokens == toks and res.stop_reason == "max_new_tokens"
        assert same_logits(res.logits, logits)
    assert [r.slot for r in bg.results] == list(range(n))
    decode = [s for s in bg.steps if s["kind"] == "decode"]
    assert len(decode) == NEW - 1 and all(s["rows"] == n == s["active"] for s in decode)
    single = compiled("tiny-llama", "int8", MAX_CTX).runtime()
    for p, (toks, logits) in zip(prompts, ref):
        t1, l1 = alone(single, p)
        assert t1 == toks and same_logits(l1, logits)


def test_weights_are_streamed_once_per_step():
    """A step of b rows reads the weights once: its HBM bytes grow only by the rows' own KV-cache
    traffic (the same per row), while its MACs grow b-fold; one row reads what a single decode reads."""
    cm = batched()
    rt = cm.runtime()
    for s in range(SLOTS):
        rt.run("greedy", np.ones((1, 9), np.int64), dims={"ctx": 9, "slot": s})
    weights = sum(w.nbytes for w in cm.manifest.weights)
    hbm, macs = [], []
    for b in range(1, SLOTS + 1):
        rt.run("greedy_batch", np.ones((1, b), np.int64), dims={f"ctx{r}": 10 for r in range(SLOTS)})
        hbm.append(rt.last_hbm_bytes)
        macs.append(rt.last_macs)
    rt.run("greedy", np.ones((1, 1), np.int64), dims={"ctx": 10, "slot": 0})
    assert hbm[0] == rt.last_hbm_bytes and hbm[0] > weights
    per_row = hbm[1] - hbm[0]
    assert 0 < per_row < weights / 20
    assert all(hbm[b] - hbm[b - 1] == per_row for b in range(1, SLOTS))
    assert all(m == macs[0] * (b + 1) for b, m in enumerate(macs))


def test_greedy_batch_equals_logits_batch_argmax_and_alone():
    cm = batched()
    rt = cm.runtime()
    prompts = [prompt_of(k, seed=10 + i) for i, k in enumerate(LENGTHS)]
    ref = [alone(rt, p, 10)[0] for p in prompts]
    bg = BatchGenerator(rt)
    list(bg.generate([Request(p, 10) for p in prompts]))   # greedy: the device's argmax (greedy_batch)
    assert [r.tokens for r in bg.results] == ref and all(not r.logits for r in bg.results)


def test_continuous_batching_reuses_freed_slots():
    """Six requests on four slots with different lengths and EOS: a finished sequence frees its slot,
    the next request is prefilled into it between steps while the others go on; every request gets
    what it gets alone."""
    cm = batched()
    rt = cm.runtime()
    prompts = [prompt_of(k, seed=20 + i) for i, k in enumerate((3, 9, 1, 15, 4, 6))]
    news = [2, 9, 4, 7, 5, 3]
    ref = [alone(rt, p, k) for p, k in zip(prompts, news)]
    eos = ref[3][0][2]   # request 3 stops by EOS, at the first of its tokens equal to its third
    cut = ref[3][0].index(eos) + 1
    ref[3] = (ref[3][0][:cut], ref[3][1][:cut])
    reqs = [Request(p, k, eos_id=eos if i == 3 else None) for i, (p, k) in enumerate(zip(prompts, news))]
    bg = BatchGenerator(rt)
    list(bg.generate(reqs, keep_logits=True))
    for i, ((toks, logits), res) in enumerate(zip(ref, bg.results)):
        assert res.tokens == toks, i
        assert same_logits(res.logits, logits), i
    assert bg.results[3].stop_reason == "eos"
    assert bg.results[4].slot == 0   # slot 0 freed first (2 tokens), then the others reused as freed
    assert all(r.slot in range(SLOTS) for r in bg.results)
    assert max(s["rows"] for s in bg.steps) == SLOTS
    # a step runs the rows up to the highest active slot, a freed slot below it a dummy row
    assert any(s["rows"] > s["active"] for s in bg.steps if s["kind"] == "decode")


def test_sampling_per_request_seed_equals_alone():
    cm = batched()
    rt = cm.runtime()
    prompts = [prompt_of(k, seed=30 + i) for i, k in enumerate((4, 8, 2))]
    kw = dict(temperature=0.9, top_k=40, top_p=0.95)
    ref = [alone(rt, p, 8, seed=100 + i, **kw)[0] for i, p in enumerate(prompts)]
    bg = BatchGenerator(rt)
    list(bg.generate([Request(p, 8, seed=100 + i, **kw) for i, p in enumerate(prompts)]))
    assert [r.tokens for r in bg.results] == ref


def test_slot_isolation():
    """Prefilling and decoding other slots leaves a slot's cache as it was: slot 1's sequence,
    interrupted by prefills into slots 0, 2 and 3 and batched steps of slot 0, continues as alone."""
    cm = batched()
    rt = cm.runtime()
    p = prompt_of(9, seed=40)
    want, _ = alone(rt, p, 4)
    g = Generator(rt)
    g.slot = 1
    first = list(g.generate(p, 1))
    assert first == want[:1]
    others = [prompt_of(k, seed=41 + s) for s, k in zip((0, 2, 3), (11, 3, 20))]
    for s, q in zip((0, 2, 3), others):   # prefill into the other slots
        h = Generator(rt)
        h.slot = s
        list(h.generate(q, 1))
    for step in range(2):                  # and batched steps of slot 0
        rt.run("greedy_batch", np.full((1, 1), 5), dims={**{f"ctx{r}": 1 for r in range(SLOTS)}, "ctx0": 12 + step})
    got, past, tok = [], len(p), first[0]
    for _ in range(3):
        past += 1
        (out,) = rt.run("greedy", np.array([[tok]]), dims={"ctx": past, "slot": 1})
        tok = int(out[0, -1])
        got.append(tok)
    assert [first[0]] + got == want


def test_bounds_are_refused_in_one_line():
    cm = batched()
    rt = cm.runtime()
    dims = {f"ctx{r}": 1 for r in range(SLOTS)}
    with pytest.raises(BoundsError, match=r"dim batch=5 is outside the bounds \[1, 4\]") as e:
        rt.run("greedy_batch", np.zeros((1, SLOTS + 1), np.int64), dims=dims)
    assert "\n" not in str(e.value)
    with pytest.raises(BoundsError, match=rf"dim ctx2={MAX_CTX + 1} is outside the bounds \[1, {MAX_CTX}\]"):
        rt.run("greedy_batch", np.zeros((1, 3), np.int64), dims={**dims, "ctx2": MAX_CTX + 1})
    with pytest.raises(BoundsError, match=r"dim ctx0=0 is outside"):
        rt.run("greedy_batch", np.zeros((1, 1), np.int64), dims={**dims, "ctx0": 0})
    with pytest.raises(RunError, match="needs the state dim 'ctx3'"):
        rt.run("greedy_batch", np.zeros((1, 1), np.int64), dims={f"ctx{r}": 1 for r in range(3)})
    with pytest.raises(BoundsError, match=r"dim slot=4 is outside the bounds \[0, 3\]"):
        rt.run("greedy", np.zeros((1, 2), np.int64), dims={"ctx": 2, "slot": SLOTS})
    with pytest.raises(RunError, match="needs the state dim 'slot'"):
        rt.run("greedy", np.zeros((1, 2), np.int64), dims={"ctx": 2})
    bg = BatchGenerator(rt)
    with pytest.raises(GenerateArgumentError, match=r"^request 1: max_new_tokens=0: must be"):
        bg.generate([Request([1, 2], 3), Request([3], 0)])
    with pytest.raises(RunError, match=rf"^request 0: the prompt has {MAX_CTX + 1} tokens"):
        bg.generate([[1] * (MAX_CTX + 1)])
    with pytest.raises(RunError, match="no batched-decode entries"):
        BatchGenerator(compiled("tiny-llama", "int8", MAX_CTX).runtime())


def test_profile_a_batched_step():
    """dlavm profile of greedy_batch: B sequences each prefilled into its slot, then one measured step."""
    from dlavm.compiler import profile
    cm = batched()
    p = profile(cm.manifest, cm._read, 3, entry="greedy_batch", ctx=10)
    assert [ph["phase"] for ph in p["phases"]] == ["prefill"] * 3 + ["batched decode (3 sequences)"]
    one = profile(cm.manifest, cm._read, 1, entry="greedy", ctx=10)
    assert [ph["phase"] for ph in one["phases"]] == ["prefill", "decode"]


def test_compile_refusals():
    mod = imported("tiny-llama", MAX_CTX).module
    for bad in (0, 9):
        with pytest.raises(CompileError, match=rf"batch {bad} must be an integer in \[1, 8\]"):
            compile_llm(mod, target="vcu128", weights="int8", max_seq=MAX_CTX, batch=bad)
    with pytest.raises(CompileError, match="learned positions"):
        compile_llm(imported("tiny-gpt2", MAX_CTX).module, target="vcu128", weights="int8", max_seq=MAX_CTX,
                    batch=2)


def test_cli_compile_batch_and_generate_several_prompts(tmp_path):
    out = tmp_path / "tlb"
    r = CliRunner().invoke(cli, ["compile", "tiny-llama", "--llm", "--max-seq", str(MAX_CTX), "--weights", "int8",
                                 "--batch", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    prompts = [[1, 2, 3], [7], [5, 6, 7, 8, 9]]
    argv = ["generate", str(out), "--max-new-tokens", "5"]
    for p in prompts:
        argv += ["--prompt-ids", ",".join(map(str, p))]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0, r.output
    rt = batched().runtime()
    lines = r.stdout.splitlines()
    assert lines == [f"[{i}] " + " ".join(map(str, alone(rt, p, 5)[0])) for i, p in enumerate(prompts)]
    assert "[2: slot 0," in r.stderr and "batched decode steps" in r.stderr
    r = CliRunner().invoke(cli, ["generate", str(tmp_path / "tlb"), "--prompt-ids", "1", "--prompt-ids", "2",
                                 "--verify"])
    assert r.exit_code == 2 and "--verify takes one prompt" in r.output
    r = CliRunner().invoke(cli, ["compile", "tiny-llama", "--batch", "2", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--batch applies to --llm" in r.output
    r = CliRunner().invoke(cli, ["compile", "tiny-llama", "--llm", "--batch", "9", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "9 is not in the range 1<=x<=8" in r.output


def test_the_runtime_names_the_batched_entries_and_dims_as_the_pass_does():
    """The runtime cannot import the compiler (doc/architecture.md), so it keeps its own copy of the names."""
    import importlib
    kv_cache = importlib.import_module("dlavm.passes.kv_cache")
    from dlavm.runtime import batch_generate, generate
    assert batch_generate.BATCH_ENTRIES == kv_cache.BATCH_ENTRIES
    assert batch_generate.ROWS_DIM == kv_cache.ROWS_DIM
    assert [batch_generate.row_ctx_dim(r) for r in range(kv_cache.MAX_BATCH)] == \
        [kv_cache.row_ctx_dim(r) for r in range(kv_cache.MAX_BATCH)]
    assert generate.SLOT_DIM == kv_cache.SLOT_DIM
