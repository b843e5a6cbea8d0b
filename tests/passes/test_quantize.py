"""Weight formats: fake quantisation is exactly dequant(quantize(w)) as packed by
dlavm.target.layout; the quantize pass picks formats per model and per weight."""
import numpy as np
import pytest

from dlavm.ir import Constant, Function, Module, PassManager, TensorType, Var, call
from dlavm.passes import fake_quant, quantize
from dlavm.target import layout

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("k", [64, 128, 200, 384])
def test_fake_quant_int4_is_dequant_of_packed_int4(k):
    w = RNG.standard_normal((24, k)).astype(np.float32)
    w[3, :] = 0.0                                   # an all-zero group: scale 1, q 0
    q, s = layout.quantize_int4(w, 128)
    unpacked = layout.unpack_int4(layout.pack_int4(q, 128), k)
    deq = unpacked.astype(np.float32) * np.repeat(s.astype(np.float32), 128, axis=1)[:, :k]
    assert np.array_equal(fake_quant(w, "int4", 128), deq)
    assert np.abs(fake_quant(w, "int4", 128) - w).max() <= np.abs(w).max() / 7 / 2 * 1.01


def test_fake_quant_int8_and_fp16():
    w = RNG.standard_normal((16, 96)).astype(np.float32)
    q, s = layout.quantize_int8(w)
    assert np.array_equal(fake_quant(w, "int8"), q.astype(np.float32) * s.astype(np.float32)[:, None])
    assert np.array_equal(fake_quant(w, "fp16"), w.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="unknown weight format"):
        fake_quant(w, "int3")


def _mvm_module(weights):
    x = Var("x", TensorType((4, 32), "float32"))
    body = x
    for name in weights:
        body = call("dev.to_host", call("dev.mvm", call("dev.to_device", body),
                                        Constant(name, TensorType((32, 32), "float32"))))
    mod = Module(params={n: np.eye(32, dtype=np.float32) for n in weights})
    mod.add(Function("f", [x], body))
    return mod


def test_quantize_pass_per_model_and_per_layer():
    mod = _mvm_module(["a", "b", "c"])
    out = PassManager([quantize("int8", per_layer={"b": "fp16"})]).run(mod)
    assert out.attrs["weight_formats"] == {"a": "int8", "b": "fp16", "c": "int8"}
    out = PassManager([quantize("int4", per_layer=lambda n: "int8" if n == "c" else None)]).run(mod)
    assert out.attrs["weight_formats"] == {"a": "int4", "b": "int4", "c": "int8"}
    with pytest.raises(ValueError, match="not one of"):
        PassManager([quantize("int4", per_layer={"a": "int2"})]).run(mod)
    with pytest.raises(ValueError, match="not one of"):
        quantize("bf16")
