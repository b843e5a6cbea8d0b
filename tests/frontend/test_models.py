"""Real models, built locally with random weights, import through torch.export
and run on the reference executor exactly as torch eager runs them.

Tolerance: fp32, rtol 1e-4 / atol 1e-5 (the executor calls the same torch
kernels, differences come only from reassociation such as a fused linear).
"""
import pytest
import torch

from dlavm.models import import_model
from dlavm.ir import count_ops
from dlavm.reference import compare_with_torch

LLM_MAX = 256
CASES = {
    # recipe: (dim name, values: 1, tile-1, tile, tile+1, an odd one, the bound)
    "tiny-llama": ("seq", [1, 127, 128, 129, 77, LLM_MAX]),
    "tiny-qwen2": ("seq", [1, 127, 128, 129, LLM_MAX]),
    "tiny-gpt2": ("seq", [1, 127, 128, 129, LLM_MAX]),
    "mlp": ("seq", [1, 127, 128, 129, 512]),
    "tiny-vit": ("batch", [1, 3, 8]),
    "cnn": ("batch", [1, 5, 8]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def imported(request):
    name = request.param
    kwargs = {"max_seq": LLM_MAX} if name.startswith("tiny-") and name != "tiny-vit" else {}
    return name, import_model(name, **kwargs)


def test_matches_torch_at_every_size(imported):
    name, res = imported
    dim, values = CASES[name]
    for v in values:
        agreement = compare_with_torch(res.module, "forward", res.spec.module,
                                       res.spec.make_inputs(**{dim: v}), {dim: v})
        assert agreement.ok, f"{name}: {agreement}"


def test_dynamic_dim_keeps_torch_bounds_and_user_name(imported):
    name, res = imported
    dim, values = CASES[name]
    fn = res.module["forward"]
    (var,) = fn.sym_vars()
    from dlavm import sym
    assert str(var) == dim
    assert sym.bounds(var) == res.spec.dims[dim]


def test_llm_graphs_keep_device_level_ops(imported):
    name, res = imported
    ops = count_ops(res.module["forward"])
    if name in ("tiny-llama", "tiny-qwen2", "tiny-gpt2"):
        assert ops["attention"] == 2 and ops["embedding"] >= 1
        assert ops.get("linear", 0) >= 2 * 4 + 1
    if name == "tiny-gpt2":
        assert ops["layer_norm"] == 5
    if name == "tiny-vit":
        assert ops["conv2d"] == 1 and ops["attention"] == 2


def test_weights_are_referenced_by_name(imported):
    name, res = imported
    for key, arr in res.module.params.items():
        assert arr is not None and arr.flags["C_CONTIGUOUS"], key


def test_past_the_bound_is_refused(imported):
    from dlavm.reference import ExecutionError
    name, res = imported
    dim, values = CASES[name]
    lo, hi = res.spec.dims[dim]
    inputs = res.spec.make_inputs(**{dim: hi + 1})
    with pytest.raises(ExecutionError, match=rf"{dim}={hi + 1} is outside its bounds \[{lo}, {hi}\]"):
        from dlavm.reference import run_function
        run_function(res.module, "forward", inputs)


def test_batch_and_seq_both_dynamic():
    """Two dynamic dims at once on a hand-written Llama-style block."""
    from dlavm.frontend.torch import from_torch
    from tests.frontend.models import LlamaBlock

    torch.manual_seed(0)
    block = LlamaBlock().eval()
    batch = torch.export.Dim("batch", min=1, max=4)
    seq = torch.export.Dim("seq", min=1, max=64)
    mod = from_torch(block, (torch.randn(2, 8, 64),), {"x": {0: batch, 1: seq}})
    for b, s in [(1, 1), (3, 17), (4, 64)]:
        x = torch.randn(b, s, 64, generator=torch.Generator().manual_seed(b * 100 + s))
        agreement = compare_with_torch(mod, "forward", block, (x,), {"batch": b, "seq": s})
        assert agreement.ok, agreement
