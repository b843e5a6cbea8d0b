"""The values the CLI refuses are refused by the library functions it calls, with the same messages:
the Python API and the command share one check per value (doc/cli.md, "Numeric options")."""
from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def llm(bad_input_paths):
    from dlavm.compiler import load
    return load(bad_input_paths["llm"])


@pytest.mark.parametrize("kwargs,msg", [
    ({"max_new_tokens": -5}, r"max_new_tokens=-5: must be an integer >= 1"),
    ({"max_new_tokens": 2.5}, r"max_new_tokens=2.5: must be an integer"),
    ({"temperature": math.nan}, r"temperature=nan: must be a finite number >= 0"),
    ({"temperature": math.inf}, r"temperature=inf: must be a finite number"),
    ({"temperature": True}, r"temperature=True: must be a finite number"),
    ({"temperature": 1.0, "top_p": 0.0}, r"top_p=0.0: must be a number in \(0, 1\]"),
    ({"temperature": 1.0, "top_p": math.nan}, r"top_p=nan"),
    ({"temperature": 1.0, "top_k": 513}, r"top_k=513: must be an integer in \[0, 512\]"),
    ({"temperature": 1.0, "seed": -1}, r"seed=-1: must be an integer >= 0"),
    ({"eos_id": 512}, r"eos_id=512: must be a token id in \[0, 512\)"),
])
def test_generate_refuses_bad_arguments(llm, kwargs, msg):
    from dlavm.runtime.generate import GenerateArgumentError
    kwargs = {"max_new_tokens": 2} | kwargs
    with pytest.raises(GenerateArgumentError, match=msg):
        llm.generate([1, 2], **kwargs)


def test_generate_refuses_bad_prompts(llm):
    from dlavm.runtime.generate import GenerateArgumentError
    with pytest.raises(GenerateArgumentError, match="the prompt is empty"):
        llm.generate([], 2)
    with pytest.raises(GenerateArgumentError, match=r"prompt token ids \[-1, 600\] are outside"):
        llm.generate([1, -1, 600], 2)


def test_a_nan_temperature_is_not_greedy(llm):
    """The issue's silent case: ``temperature=nan`` used to run greedy decoding and exit 0."""
    with pytest.raises(ValueError, match="temperature=nan"):
        list(llm.generate([1, 2], 2, temperature=float("nan")))


@pytest.mark.parametrize("max_seq", [0, -3, 2**31, 1.5, True, "8"])
def test_load_model_refuses_a_bad_max_seq(max_seq):
    from dlavm.models import ModelLoadError, load_model
    with pytest.raises(ModelLoadError, match=rf"max_seq={max_seq!r}: must be an integer in \[1, 2147483647\]"):
        load_model("mlp", max_seq=max_seq)


def test_seq_and_ctx_outside_the_bounds_are_refused(bad_input_paths):
    from dlavm.compiler import load, profile, random_inputs
    from dlavm.runtime.runtime import BoundsError, RunError
    mlp, llm = load(bad_input_paths["mlp"]), load(bad_input_paths["llm"])
    for seq in (0, -1, 33, 2**70):
        with pytest.raises(BoundsError, match=rf"seq={seq} is outside the bounds .*seq in \[1, 32\]"):
            random_inputs(mlp.manifest, None, seq)
    with pytest.raises(RunError, match=r"entry 'nope' is not in the model; its entries are \['forward'\]"):
        random_inputs(mlp.manifest, "nope", 1)
    with pytest.raises(RunError, match=r"ctx=3: entry 'forward' has no state dim"):
        profile(mlp.manifest, mlp._read, 1, ctx=3)
    with pytest.raises(BoundsError, match=r"ctx=2 is outside \[4, 16\]"):
        profile(llm.manifest, llm._read, 4, ctx=2)


def test_diff_context_is_checked(bad_input_paths):
    from dlavm.compare.diff import diff_listings, format_diff
    from dlavm.compare.listing import CompareError, open_pair
    res = diff_listings(*open_pair(bad_input_paths["mlp"], bad_input_paths["mlp"]))
    for context in (-1, 1.5, True):
        with pytest.raises(CompareError, match=rf"context={context!r}: must be an integer >= 0"):
            format_diff(res, context=context)
