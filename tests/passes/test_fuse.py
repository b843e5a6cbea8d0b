"""The fusion table: epilogue fusions fire through views and never duplicate an mvm."""
import numpy as np
import torch

from dlavm import sym
from dlavm.ir import Call, Constant, Function, Module, PassManager, TensorType, Var, call, count_ops, post_order
from dlavm.passes import FUSIONS, fold_views, fuse, legalize, quantize
from dlavm.reference import run_function

SEQ = sym.Var("seq", 1, 16)
RNG = np.random.default_rng(2)


def _w(weights, name, *shape):
    weights[name] = (RNG.standard_normal(shape) * 0.2).astype(np.float32)
    return Constant(name, TensorType(shape, "float32"))


def _run(body, x, weights):
    mod = Module(params=weights)
    mod.add(Function("f", [x], body))
    out = PassManager([legalize, fuse, fold_views, quantize("fp16")]).run(mod)
    for s in (1, 9):
        xs = [torch.randn(1, s, 32, generator=torch.Generator().manual_seed(s))]
        want, got = run_function(mod, "f", xs), run_function(out, "f", xs)
        assert (got - want).abs().max() <= 1e-2 * want.abs().max()
    return out


def _mvms(out):
    return [n for n in post_order(out["f"].body) if isinstance(n, Call) and n.op.name == "dev.mvm"]


def test_fusion_table_is_data():
    assert [p.ops for p in FUSIONS] == [("dev.eltwise",), ("dev.eltwise",)]


def test_residual_through_a_2d_view():
    # GPT-2 style: the linear runs on [seq, C], the residual stream is [1, seq, C]
    w, x = {}, Var("x", TensorType((1, SEQ, 32), "float32"))
    y = call("reshape", call("linear", call("reshape", x, shape=(SEQ, 32)), _w(w, "w", 32, 32), _w(w, "b", 32)),
             shape=(1, SEQ, 32))
    out = _run(call("add", y, x), x, w)
    (m,) = _mvms(out)
    assert m.attrs["res"] == "add" and m.attrs["bias"] and m.type.shape == (SEQ, 32)
    assert out.attrs["fuse_stats"] == {"residual-add->mvm.res_add": 1}


def test_shared_mvm_is_not_fused():
    # the linear's value is needed twice: fusing the add would recompute it
    w, x = {}, Var("x", TensorType((1, SEQ, 32), "float32"))
    y = call("linear", x, _w(w, "w", 32, 32))
    out = _run(call("mul", call("add", x, y), y), x, w)
    assert count_ops(out["f"]).get("dev.eltwise") == 2 and len(_mvms(out)) == 1
    assert _mvms(out)[0].attrs["res"] == "none" and out.attrs["fuse_stats"] == {}
