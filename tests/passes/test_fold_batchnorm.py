"""``fold_batchnorm``: eval-mode BatchNorm (and any per-channel affine chain) folded into conv2d / linear."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm.ir import Call, Constant, Function, Module, PassManager, TensorType, Var, call, post_order
from dlavm.passes import fake_quantized_params, fold_batchnorm
from dlavm.target import get_target

torch = pytest.importorskip("torch")
from dlavm.reference import run_function  # noqa: E402  (needs torch)


def _ops(mod):
    return [n.op.name for n in post_order(mod["f"].body) if isinstance(n, Call)]


def _bn_module(rng, *, data=True, uses=1, groups=1, var_zero_gamma=False, spatial_const=False):
    """x [1, 4, 6, 6] -> conv2d(8 out) -> BatchNorm as import writes it."""
    p = {"w": rng.standard_normal((8, 4 // groups, 3, 3)), "b": rng.standard_normal(8),
         "mean": rng.uniform(-0.5, 0.5, 8), "var": rng.uniform(0.5, 2, 8), "gamma": rng.standard_normal(8),
         "beta": rng.standard_normal(8)}
    if var_zero_gamma:
        p["gamma"][3] = 0.0
    p = {k: v.astype(np.float32) for k, v in p.items()}
    if spatial_const:
        p["mean"] = rng.standard_normal((8, 6, 6)).astype(np.float32)
    const = {k: Constant(k, TensorType(v.shape, "float32")) for k, v in p.items()}
    x = Var("x", TensorType((1, 4, 8, 8), "float32"))
    y = call("conv2d", x, const["w"], const["b"], padding=(0, 0), groups=groups)

    def chan(name):
        shape = (1, 8, 6, 6) if p[name].ndim == 3 else (1, 8, 1, 1)
        return call("reshape", const[name], shape=shape)
    v = call("sub", y, chan("mean"))
    v = call("mul", v, call("rsqrt", call("add", chan("var"), 1e-5)))
    v = call("add", call("mul", v, chan("gamma")), chan("beta"))
    out = call("add", v, y) if uses == 2 else v
    return Module({"f": Function("f", [x], out)}, {k: (v if data else None) for k, v in p.items()})


def _run(mod, x):
    return run_function(mod, "f", [torch.from_numpy(x)]).numpy()


def test_batchnorm_chain_becomes_one_conv_with_folded_weights_and_the_same_values():
    rng = np.random.default_rng(0)
    mod = _bn_module(rng)
    out = PassManager([fold_batchnorm]).run(mod)
    assert _ops(out) == ["conv2d"]
    assert sum(out.attrs["fold_batchnorm_stats"].values()) == 4  # sub, mul, mul, add
    (conv,) = [n for n in post_order(out["f"].body) if isinstance(n, Call)]
    w, b = conv.args[1].name, conv.args[2].name
    assert set(out.params) == {w, b}  # the BatchNorm's own weights are gone
    # one recipe step per folded weight, over the conv's own weight and bias
    assert [s[0] for s in out.attrs["param_recipes"][w]["steps"]] == ["channel_affine"]
    assert out.attrs["param_recipes"][w]["source"] == "w" and out.attrs["param_recipes"][b]["source"] == "b"
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(mod, x), rtol=1e-5, atol=1e-5)


def test_fake_quantized_params_write_folded_weights_back_onto_the_conv():
    """The torch reference with the device's weights: the source conv weight W = W' / scale, so the
    unfolded graph computes what the folded one does."""
    rng = np.random.default_rng(1)
    mod = _bn_module(rng)
    out = PassManager([fold_batchnorm]).run(mod)
    (conv,) = [n for n in post_order(out["f"].body) if isinstance(n, Call)]
    # pretend the device rounded the folded weights to fp16 (what a device conv reads)
    fp16 = {k: v.astype(np.float16).astype(np.float32) for k, v in out.params.items()}
    dev = Module(out.functions, fp16, dict(out.attrs))
    dev.attrs["param_recipes"] = out.attrs["param_recipes"]
    from dlavm.passes.quantize import _write_back  # what fake_quantized_params applies to device weights
    src = dict(mod.params)
    for name in (conv.args[1].name, conv.args[2].name):
        r = out.attrs["param_recipes"][name]
        src[r["source"]] = _write_back(mod.params[r["source"]], r["steps"], fp16[name])
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(Module(mod.functions, src), x), _run(dev, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["second user", "grouped conv", "zero gamma", "spatial constant"])
def test_what_is_not_folded(case):
    rng = np.random.default_rng(2)
    kw = {"second user": {"uses": 2}, "grouped conv": {"groups": 2}, "zero gamma": {"var_zero_gamma": True},
          "spatial constant": {"spatial_const": True}}[case]
    mod = _bn_module(rng, **kw)
    out = PassManager([fold_batchnorm]).run(mod)
    ops = _ops(out)
    if case == "zero gamma":  # sub and the rsqrt scale fold; a zero gamma would not write back
        assert ops.count("conv2d") == 1 and ops.count("mul") == 1 and "sub" not in ops
    elif case == "spatial constant":  # a [C, H, W] constant is not per channel: nothing folds past it
        assert "sub" in ops
    else:
        assert "sub" in ops and "rsqrt" in ops
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(mod, x), rtol=1e-5, atol=1e-5)


def test_a_shape_only_model_folds_into_weights_without_data():
    mod = _bn_module(np.random.default_rng(3), data=False)
    out = PassManager([fold_batchnorm]).run(mod)
    assert _ops(out) == ["conv2d"] and all(v is None for v in out.params.values())


def test_linear_batchnorm1d_from_torch_folds_into_the_mvm():
    """nn.Linear + nn.BatchNorm1d, imported from torch: after the device pipeline, one dev.mvm with bias."""
    from torch import nn

    from dlavm.frontend.torch import from_torch
    from dlavm.passes import device_pipeline
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 16)
    mod = from_torch(model, (x,))
    dev = PassManager(device_pipeline("fp16", target=get_target("tiny"))).run(mod)
    ops = [n.op.name for n in post_order(next(iter(dev.functions.values())).body) if isinstance(n, Call)]
    assert ops == ["dev.to_device", "dev.mvm", "dev.to_host"] and dev.attrs["host_ops"] == []
    got = run_function(dev, next(iter(dev.functions)), [x]).numpy()
    want = model(x).detach().numpy()
    assert np.abs(got - want).max() <= 5e-3 * np.abs(want).max()
    # the reference with the device's weights, written back through the fold's recipes: the source
    # graph (linear + BatchNorm) on them computes what the device graph does
    fq = fake_quantized_params(dev, mod.params)
    ref = run_function(Module(mod.functions, fq), next(iter(mod.functions)), [x]).numpy()
    assert np.abs(got - ref).max() <= 5e-3 * np.abs(ref).max()
    assert not np.array_equal(fq[[k for k in mod.params if k.endswith("0.weight")][0]],
                              mod.params[[k for k in mod.params if k.endswith("0.weight")][0]])
