"""One artifact serves every prompt length up to its context: 1, 127, 128, 129 (around the 128-lane
reduction block of the attention's key axis, doc/isa.md 7.1) and prompts that reach and fill the
context; past the bound is a clear error, never a crash."""
import numpy as np
import pytest

from dlavm.runtime.generate import ContextOverflowError, Generator
from dlavm.runtime.runtime import BoundsError, RunError
from tests.llm.conftest import compiled, prompt_of, torch_greedy, torch_model

MAX_CTX = 160
NEW = 4


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_prompt_lengths_with_one_artifact(name):
    cm = compiled(name, "int8", MAX_CTX)
    tm = torch_model(name, "int8", MAX_CTX)
    for n in (1, 127, 128, 129, MAX_CTX - NEW + 1, MAX_CTX):
        prompt = prompt_of(n, seed=n)
        got = list(cm.generate(prompt, NEW))
        want_n = min(NEW, MAX_CTX - n + 1)
        want, _ = torch_greedy(tm, prompt, want_n)
        assert got == want, f"{name} prompt {n}"
        if n + NEW - 1 > MAX_CTX:
            assert cm.generator.stop_reason == "context"
            assert f"maximum of {MAX_CTX} tokens" in cm.generator.stop_message
        else:
            assert cm.generator.stop_reason == "max_new_tokens"


def test_past_the_bound_is_a_clear_error():
    cm = compiled("tiny-llama", "int8", MAX_CTX)
    with pytest.raises(ContextOverflowError, match=f"161 tokens but the model's maximum context is {MAX_CTX}"):
        list(cm.generate(prompt_of(MAX_CTX + 1), 4))
    gen = Generator(cm.runtime())
    gen.step(prompt_of(MAX_CTX - 1))
    gen.step([5])
    with pytest.raises(ContextOverflowError, match=f"{MAX_CTX} cached \\+ 1 new tokens = {MAX_CTX + 1} exceed"):
        gen.step([5])
    rt = cm.runtime()
    ids = np.zeros((1, 3), np.int64)
    with pytest.raises(BoundsError, match="seq <= ctx"):
        rt.run("greedy", ids, dims={"ctx": 2})
    with pytest.raises(BoundsError, match="outside the bounds"):
        rt.run("greedy", ids, dims={"ctx": MAX_CTX + 1})
    with pytest.raises(RunError, match="needs the state dim 'ctx'"):
        rt.run("greedy", ids)
    with pytest.raises(RunError, match="empty"):
        list(cm.generate([], 4))


def test_eos_stops_generation():
    cm = compiled("tiny-llama", "int8", MAX_CTX)
    prompt = prompt_of(5)
    toks = list(cm.generate(prompt, 10))
    eos = toks[3]
    first = toks.index(eos)
    got = list(cm.generate(prompt, 10, eos_id=eos))
    assert got == toks[:first + 1] and cm.generator.stop_reason == "eos"


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    cm = compiled("tiny-llama", "int8", MAX_CTX)
    prompt = prompt_of(6)
    greedy = list(cm.generate(prompt, 8))
    assert list(cm.generate(prompt, 8, temperature=0.7, top_k=1, seed=3)) == greedy
    a = list(cm.generate(prompt, 8, temperature=1.5, top_p=0.9, seed=7))
    b = list(cm.generate(prompt, 8, temperature=1.5, top_p=0.9, seed=7))
    assert a == b and all(0 <= t < 512 for t in a)
    with pytest.raises(ValueError, match="top_p"):
        list(cm.generate(prompt, 8, temperature=1.0, top_p=0.0))
