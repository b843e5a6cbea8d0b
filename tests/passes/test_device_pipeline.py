"""The device pipeline on the built-in models: what the device graph contains and how close it
computes to torch.

Numerics: the device graph runs on the reference executor (dev.* kernels = doc/isa.md rounding
points, fp16 activations); torch eager runs the same model in fp32 with the SAME fake-quantised
weights (``fake_quantized_params``). The remaining difference is fp16 activation rounding only:
each rounding is <= 2^-11 relative (half an fp16 ulp), and a 2-layer decoder has ~10 rounding
stages on the path to the logits, so the bound is max|err| <= 5e-3 * max|torch output|
(about 10 fp16 ulps at the output's scale; measured values are 0.4e-3 .. 1.7e-3, see
doc/passes.md). The error against fp32 torch with the original weights is recorded (it is the
quantisation error of the format, not a property of the compiler) and only sanity-bounded.
"""
import copy

import pytest
import torch

from dlavm.models import import_model
from dlavm.ir import Call, PassManager, count_ops, post_order
from dlavm.passes import device_pipeline, fake_quantized_params
from dlavm.passes.device_pipeline import is_device_call
from dlavm.reference import run_function

MAX_SEQ = 64
SEQS = (1, 7, MAX_SEQ)
TOL = 5e-3
#: sanity bounds of the error vs fp32 torch with the original weights (quantisation error)
VS_FP32 = {"fp16": 5e-3, "int8": 5e-2, "int4": 0.5}
#: host ops each model keeps, by design (doc/passes.md)
HOST = {"mlp": set(), "tiny-llama": {"embedding"}, "tiny-qwen2": {"embedding"},
        "tiny-gpt2": {"embedding", "arange", "reshape"}}

_CACHE: dict = {}


def _imported(name):
    if name not in _CACHE:
        _CACHE[name] = import_model(name, max_seq=MAX_SEQ)
    return _CACHE[name]


def _compiled(name, fmt):
    key = (name, fmt)
    if key not in _CACHE:
        _CACHE[key] = PassManager(device_pipeline(fmt)).run(_imported(name).module)
    return _CACHE[key]


def _set_weight(module, name, value):
    """Replace one weight of a torch module (a new Parameter: unties tied weights)."""
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    old = getattr(module, leaf)
    t = torch.from_numpy(value).to(old.dtype)
    setattr(module, leaf, torch.nn.Parameter(t, requires_grad=False) if isinstance(old, torch.nn.Parameter) else t)


def _torch_with_device_weights(name, mod):
    r = _imported(name)
    tm = copy.deepcopy(r.spec.module)
    for k, v in fake_quantized_params(mod, r.module.params).items():
        if (v != r.module.params[k]).any():
            _set_weight(tm, k, v)
    return tm


@pytest.mark.parametrize("name", sorted(HOST))
def test_device_graph_has_only_device_ops_and_listed_host_ops(name):
    mod = _compiled(name, "int4")
    fn = mod["forward"]
    host = {n.op.name for n in post_order(fn.body) if isinstance(n, Call) and not is_device_call(n)}
    assert host == HOST[name]
    assert {h["op"] for h in mod.attrs["host_ops"]} == HOST[name]
    assert all(h["reason"] and h["node"] for h in mod.attrs["host_ops"])
    ops = count_ops(fn)
    assert ops.get("dev.to_device") == (2 if name == "tiny-gpt2" else 1)  # each host value crosses once
    assert ops.get("dev.to_host") == 1                                     # the output is widened once
    assert fn.body.op.name == "dev.to_host"
    # every dev.mvm weight is a weight in the chosen format
    assert set(mod.attrs["weight_formats"].values()) == {"int4"}


def test_tiny_llama_fuses_swiglu_residual_and_attention():
    fn = _compiled("tiny-llama", "int4")["forward"]
    ops = count_ops(fn)
    assert ops["dev.attention"] == 2 and ops["dev.rope"] == 4 and ops["dev.rmsnorm"] == 5
    mvms = [n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == "dev.mvm"]
    res = sorted(n.attrs["res"] for n in mvms)
    assert res.count("mul") == 2 and res.count("add") == 4     # SwiGLU x2, residuals x4
    assert all(n.attrs["causal"] for n in post_order(fn.body)
               if isinstance(n, Call) and n.op.name == "dev.attention")
    assert not any(isinstance(n, Call) and n.op.name == "dev.eltwise" for n in post_order(fn.body))


@pytest.mark.parametrize("name", sorted(HOST))
@pytest.mark.parametrize("fmt", ["fp16", "int8", "int4"])
def test_device_graph_matches_torch_with_the_same_weights(name, fmt, record_property):
    mod = _compiled(name, fmt)
    spec = _imported(name).spec
    tm = _torch_with_device_weights(name, mod)
    for seq in SEQS:
        x = spec.make_inputs(seq=seq)
        with torch.no_grad():
            want, fp32 = tm(*x), spec.module(*x)
            got = run_function(mod, "forward", x)
        assert got.dtype == want.dtype and got.shape == want.shape
        scale = want.abs().max().item()
        err = (got - want).abs().max().item() / scale
        err32 = (got - fp32).abs().max().item() / scale
        record_property(f"{name}-{fmt}-seq{seq}", f"rel-to-scale err {err:.2e}, vs fp32 {err32:.2e}")
        assert err <= TOL, f"{name} {fmt} seq={seq}: {err:.2e} > {TOL}"
        assert err32 <= VS_FP32[fmt], f"{name} {fmt} seq={seq} vs fp32 torch: {err32:.2e}"


def test_per_layer_format_choice():
    name = "tiny-llama"
    choice = {"model.lm_head.weight": "fp16", "model.model.layers.0.mlp.down_proj.weight": "int8"}
    mod = PassManager(device_pipeline("int4", per_layer=choice)).run(_imported(name).module)
    fmts = mod.attrs["weight_formats"]
    assert fmts["model.lm_head.weight"] == "fp16"
    assert fmts["model.model.layers.0.mlp.down_proj.weight"] == "int8"
    assert fmts["model.model.layers.1.mlp.down_proj.weight"] == "int4"
    by_weight = {n.args[1].name: n.attrs["wfmt"] for n in post_order(mod["forward"].body)
                 if isinstance(n, Call) and n.op.name == "dev.mvm"}
    assert by_weight == fmts
    tm = _torch_with_device_weights(name, mod)
    x = _imported(name).spec.make_inputs(seq=5)
    with torch.no_grad():
        want, got = tm(*x), run_function(mod, "forward", x)
    assert (got - want).abs().max().item() <= TOL * want.abs().max().item()


def test_per_layer_callable_keys_derived_weights_by_their_source():
    # GPT-2's c_attn weight is transposed and split in three by the compiler; the choice made
    # for the model's own name applies to all three pieces.
    mod = PassManager(device_pipeline("int4", per_layer=lambda n: "int8" if ".h.0.attn.c_attn" in n else None)
                      ).run(_imported("tiny-gpt2").module)
    fmts = mod.attrs["weight_formats"]
    pieces = [k for k in fmts if k.startswith("model.transformer.h.0.attn.c_attn.weight")]
    assert len(pieces) == 3 and all(fmts[k] == "int8" for k in pieces)
    assert fmts["model.transformer.h.1.attn.c_attn.weight:T:slice0_0_128_1"] == "int4"


def test_shape_only_7b_compiles_to_a_device_graph():
    # weights without data (meta device): tables get no data and no evaluation, masks still
    # evaluate (they depend on sizes only); 32 layers fuse in one pass each
    mod = PassManager(device_pipeline("int4")).run(import_model("llama2-7b-shape", max_seq=4096).module)
    ops = count_ops(mod["forward"])
    assert ops["dev.attention"] == 32 and ops["dev.mvm"] == 7 * 32 + 1 and ops["dev.rope"] == 64
    assert [h["op"] for h in mod.attrs["host_ops"]] == ["embedding"]
    (table,) = [k for k in mod.params if k.startswith("dlavm.rope_table")]
    assert mod.params[table] is None and table.startswith("dlavm.rope_table.4096x128")


# ------------------------------------------------------------------------------------------------
# numerics parameters travel from the target to the device ops


def _two_linears(k=256, n=48, seq_hi=24):
    import numpy as np

    from dlavm import sym
    from dlavm.ir import Constant, Function, Module, TensorType, Var, call
    rng = np.random.default_rng(5)
    seq = sym.Var("seq", 1, seq_hi)
    x = Var("x", TensorType((seq, sym.const(k)), "float32"))
    w1 = (rng.standard_normal((n, k)) / k ** 0.5).astype("float32")
    w1[:, 70] = 6.0  # an outlier: the int4 scales of groups of 64 and of 128 differ
    w2 = (rng.standard_normal((n, n)) / n ** 0.5).astype("float32")
    params = {"w1": w1, "w2": w2}
    c1, c2 = (Constant(name, TensorType(tuple(sym.const(d) for d in params[name].shape), "float32"))
              for name in ("w1", "w2"))
    mod = Module(params=params)
    mod.add(Function("forward", [x], call("linear", call("relu", call("linear", x, c1)), c2)))
    return mod


def test_int4_group_comes_from_the_target_and_the_simulator_agrees_bit_for_bit():
    """A target with int4_group 64: quantize records 64 on every dev.mvm, the reference executor
    computes with groups of 64 (not 128), and the simulator's output equals it bit for bit."""
    import numpy as np

    from dlavm.compiler import compile as dlavm_compile
    from dlavm.target import get_target
    g64 = get_target("tiny").replace(name="tiny-g64", int4_group=64)
    mod = _two_linears()
    cm = dlavm_compile(mod, target=g64, weights="int4")
    dev = cm.device_module
    mvms = [n for n in post_order(dev["forward"].body) if isinstance(n, Call) and n.op.name == "dev.mvm"]
    assert len(mvms) == 2 and {m.attrs["int4_group"] for m in mvms} == {64}
    assert dev.attrs["numerics"]["int4_group"] == 64
    as128 = PassManager(device_pipeline("int4", target="tiny")).run(mod)
    rng = np.random.default_rng(0)
    for n in (1, 7, 24):
        x = rng.standard_normal((n, 256)).astype(np.float32)
        want = run_function(dev, "forward", [torch.from_numpy(x)]).numpy()
        np.testing.assert_array_equal(cm.run(x)[0], want, err_msg=f"seq={n}")
        other = run_function(as128, "forward", [torch.from_numpy(x)]).numpy()
        assert not np.array_equal(other, want)  # the group size matters for this weight


def test_a_device_graph_quantised_for_another_int4_group_is_refused():
    from dlavm.compiler import compile as dlavm_compile
    from dlavm.target import get_target
    from dlavm.task.lower import LoweringError
    dev = PassManager(device_pipeline("int4", target="tiny")).run(_two_linears())
    g64 = get_target("tiny").replace(name="tiny-g64", int4_group=64)
    with pytest.raises(LoweringError, match=r"dev.mvm: int4_group=128 .* target 'tiny-g64' has int4_group=64"):
        dlavm_compile(dev, target=g64)


def test_adder_tree_width_comes_from_the_target_and_the_simulator_agrees_bit_for_bit():
    """tree_lanes 32: rmsnorm, an fp16 mvm and softmax sum in 32-lane trees on the simulator; the
    reference executor reads the width from the ops (set by quantize) and agrees bit for bit."""
    import numpy as np

    from dlavm import sym
    from dlavm.compiler import compile as dlavm_compile
    from dlavm.ir import Constant, Function, Module, TensorType, Tuple, Var, call
    from dlavm.target import get_target
    lanes32 = get_target("tiny").replace(name="tiny-lanes32", tree_lanes=32)
    rng = np.random.default_rng(9)
    seq, k, n = sym.Var("seq", 1, 20), 1000, 96
    x = Var("x", TensorType((seq, sym.const(k)), "float32"))
    params = {"g": (1 + 0.1 * rng.standard_normal(k)).astype("float32"),
              "w": (rng.standard_normal((n, k)) / k ** 0.5).astype("float32")}
    g, w = (Constant(name, TensorType(tuple(sym.const(d) for d in params[name].shape), "float32"))
            for name in ("g", "w"))
    mod = Module(params=params)
    h = call("linear", call("rms_norm", x, g, ndim=1, eps=1e-5), w)
    mod.add(Function("forward", [x], Tuple([h, call("softmax", call("mul", h, h), axis=-1)])))
    cm = dlavm_compile(mod, target=lanes32, weights="fp16")
    dev = cm.device_module
    ops = {n.op.name: n.attrs.get("tree_lanes") for n in post_order(dev["forward"].body) if isinstance(n, Call)}
    assert ops["dev.rmsnorm"] == ops["dev.mvm"] == ops["dev.softmax"] == 32
    as128 = PassManager(device_pipeline("fp16", target="tiny")).run(mod)
    differs = False
    for m in (1, 9, 20):
        xs = (3 * rng.standard_normal((m, k))).astype(np.float32)
        want = [t.numpy() for t in run_function(dev, "forward", [torch.from_numpy(xs)])]
        for got, ref in zip(cm.run(xs), want):
            np.testing.assert_array_equal(got, ref, err_msg=f"seq={m}")
        other = run_function(as128, "forward", [torch.from_numpy(xs)])
        differs |= any(not np.array_equal(o.numpy(), r) for o, r in zip(other, want))
    assert differs  # the tree width changes some result bits here
