"""conv2d on the MVM unit: host im2col + dev.mvm + host NCHW, values kept."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlavm import sym
from dlavm.devops.conv import HOST_LAYOUT_REASON, im2col, is_patch_embedding
from dlavm.ir import Call, Constant, Function, Module, PassManager, TensorType, Var, call, count_ops, post_order
from dlavm.passes import device_pipeline, fold_views, fold_weights, fuse, legalize, quantize
from dlavm.reference import run_function
from dlavm.target import get_target

PIPE = [legalize, fuse, fold_weights, fold_views, quantize("fp16")]


def _conv_module(shape, o, k, bias=True, relu=False, **attrs):
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    kh, kw = k
    p = {"w": (rng.standard_normal((o, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(np.float32)}
    args = [Constant("w", TensorType((o, c, kh, kw), "float32"))]
    if bias:
        p["b"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
        args.append(Constant("b", TensorType((o,), "float32")))
    x = Var("x", TensorType(tuple(sym.as_expr(d) for d in shape), "float32"))
    y = call("conv2d", x, *args, **attrs)
    if relu:
        y = call("relu", y)
    return Module({"f": Function("f", [x], y)}, p)


def _values(mod, x):
    return run_function(mod, "f", [torch.from_numpy(x)]).numpy()


CASES = {  # name: (input shape, out channels, kernel, attrs)
    "3x3 pad 1": ((1, 3, 10, 12), 8, (3, 3), {"padding": (1, 1)}),
    "3x3 stride 2 pad 1": ((2, 4, 9, 9), 8, (3, 3), {"stride": (2, 2), "padding": (1, 1)}),
    "5x3 dilation 2": ((1, 2, 13, 11), 6, (5, 3), {"dilation": (2, 2), "padding": (0, 1)}),
    "1x1": ((1, 16, 5, 7), 4, (1, 1), {}),
    "patch 4x4": ((1, 3, 16, 12), 16, (4, 4), {"stride": (4, 4)}),
    "patch 2x4": ((2, 3, 8, 8), 8, (2, 4), {"stride": (2, 4)}),
    "stride 4 kernel 4 ragged": ((1, 3, 18, 16), 8, (4, 4), {"stride": (4, 4)}),  # 2 rows dropped
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("bias,relu", [(True, True), (False, False)])
def test_conv2d_becomes_an_mvm_and_keeps_its_values(name, bias, relu):
    shape, o, k, attrs = CASES[name]
    mod = _conv_module(shape, o, k, bias, relu, **attrs)
    out = PassManager(PIPE).run(mod)
    ops = count_ops(out["f"])
    assert ops.get("dev.mvm") == 1 and "conv2d" not in ops and "relu" not in ops
    (mvm,) = [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.mvm"]
    assert mvm.attrs["bias"] == bias and mvm.attrs["relu"] == relu
    patch = is_patch_embedding(next(n for n in post_order(mod["f"].body) if isinstance(n, Call)
                                    and n.op.name == "conv2d"))
    assert patch == name.startswith(("patch", "1x1"))
    assert not {"slice", "concat", "full"} & set(ops)  # no tap slices, no padding by concat
    if patch:  # pure reshape/permute
        assert "im2col" not in ops
    else:  # one im2col host op
        assert ops.get("im2col") == 1
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want, got = _values(mod, x), _values(out, x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 5e-3 * max(1.0, np.abs(want).max())


def test_im2col_columns_follow_the_weight_layout():
    """The patch matrix times W.reshape(O, -1)^T is the convolution exactly (float64)."""
    shape, o, k, attrs = CASES["3x3 stride 2 pad 1"]
    mod = _conv_module(shape, o, k, bias=False, **attrs)
    conv = mod["f"].body
    cols = im2col(conv.args[0], conv)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    m = run_function(Module({"f": Function("f", [conv.args[0]], cols)}, {}), "f", [torch.from_numpy(x)]).double()
    w = torch.from_numpy(mod.params["w"]).double()
    y = (m @ w.reshape(o, -1).T).reshape(shape[0], conv.type.shape[2].value, conv.type.shape[3].value, o)
    want = torch.nn.functional.conv2d(torch.from_numpy(x).double(), w, stride=2, padding=1)
    torch.testing.assert_close(y.permute(0, 3, 1, 2), want)


def test_dynamic_height_and_grouped_conv():
    seq = sym.Var("seq", 1, 9)
    mod = _conv_module((1, 3, seq, 8), 8, (3, 3), padding=(1, 1))
    out = PassManager(PIPE).run(mod)
    assert "conv2d" not in count_ops(out["f"])
    for n in (1, 4, 9):
        x = np.random.default_rng(n).standard_normal((1, 3, n, 8)).astype(np.float32)
        want, got = _values(mod, x), _values(out, x)
        assert np.abs(got - want).max() <= 5e-3 * max(1.0, np.abs(want).max())
    x = Var("x", TensorType((1, 4, 6, 6), "float32"))
    g = Module({"f": Function("f", [x], call("conv2d", x, Constant("w", TensorType((4, 2, 3, 3), "float32")),
                                             groups=2))},
               {"w": np.ones((4, 2, 3, 3), np.float32)})
    dev = PassManager(device_pipeline("fp16", target=get_target("tiny"))).run(g)
    (h,) = [h for h in dev.attrs["host_ops"] if h["op"] == "conv2d"]
    assert "grouped convolution (groups=2)" in h["reason"]


def test_layout_ops_of_a_convolution_carry_its_reason():
    from dlavm.frontend.torch import from_torch
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    mod = from_torch(model, (torch.randn(1, 3, 8, 8),))
    dev = PassManager(device_pipeline("fp16", target=get_target("tiny"))).run(mod)
    reasons = {h["op"]: h["reason"] for h in dev.attrs["host_ops"]}
    assert set(reasons) == {"im2col", "reshape", "permute"}
    assert set(reasons.values()) == {HOST_LAYOUT_REASON}
