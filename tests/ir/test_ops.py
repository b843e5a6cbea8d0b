"""Type relations and the op registry."""
import pytest

from dlavm import sym
from dlavm.ir import (Call, Constant, IRTypeError, Literal, TensorType, Var, call, get_op,
                      list_ops, register_op)

SEQ = sym.Var("seq", 1, 256)


def x(*shape, dtype="float32", name="x"):
    return Var(name, TensorType(shape, dtype))


def test_broadcast_symbolic_and_one():
    a, b = x(1, SEQ, 64), x(SEQ, 1, name="b")
    out = call("add", a, b)
    assert out.type == TensorType((1, SEQ, 64), "float32")


def test_broadcast_mismatch_names_op_and_dims():
    with pytest.raises(IRTypeError, match=r"op 'mul': cannot broadcast dim 3 with 64"):
        call("mul", x(1, SEQ, 64), x(3, name="b"))


def test_weak_scalar_promotion_follows_torch():
    h = x(4, dtype="float16")
    assert call("mul", h, 2.0).type.dtype == "float16"     # float scalar stays weak
    i = x(4, dtype="int64")
    assert call("mul", i, 0.5).type.dtype == "float32"     # category upgrade -> default float
    assert call("add", i, 1).type.dtype == "int64"
    assert call("div", i, 2).type.dtype == "float32"       # true division
    assert call("lt", i, 3).type.dtype == "bool"
    assert call("add", h, x(4, dtype="float32", name="f")).type.dtype == "float32"


def test_linear_matmul_attention_shapes():
    w = Constant("w", TensorType((32, 64), "float32"))
    assert call("linear", x(1, SEQ, 64), w).type.shape == (sym.const(1), SEQ, sym.const(32))
    q = x(1, 4, SEQ, 16, name="q")
    k = x(1, 2, SEQ, 16, name="k")
    assert call("attention", q, k, k, causal=True).type == TensorType((1, 4, SEQ, 16), "float32")
    with pytest.raises(IRTypeError, match="multiple of k/v heads"):
        call("attention", q, x(1, 3, SEQ, 16, name="k3"), x(1, 3, SEQ, 16, name="v3"))
    with pytest.raises(IRTypeError, match="contraction dims differ"):
        call("matmul", x(2, 3), x(4, 5, name="b"))


def test_reshape_checks_element_count_symbolically():
    t = x(1, SEQ, 64)
    assert call("reshape", t, shape=(1, SEQ, 4, 16)).type.shape[2] == sym.const(4)
    with pytest.raises(IRTypeError, match="cannot reshape"):
        call("reshape", t, shape=(1, SEQ, 4, 15))


def test_slice_length_is_symbolic():
    t = x(1, SEQ, 64)
    s = call("slice", t, axis=1, start=1, end=SEQ)
    assert sym.evaluate(s.type.shape[1], {SEQ: 10}) == 9
    assert sym.evaluate(s.type.shape[1], {SEQ: 1}) == 0


def test_im2col_rows_match_conv2d_output_symbolically():
    img, w = x(2, 3, SEQ, 20), Constant("w", TensorType((8, 3, 3, 5), "float32"))
    attrs = {"stride": (2, 3), "padding": (1, 2), "dilation": (2, 1)}
    conv = call("conv2d", img, w, **attrs)
    cols = call("im2col", img, kernel=(3, 5), **attrs)
    n, _, oh, ow = conv.type.shape
    assert cols.type.shape == (n * oh * ow, sym.const(45)) and cols.type.dtype == "float32"
    assert call("reshape", cols, shape=(n, oh, ow, 45)).type.shape[1] == oh  # provably the same row count
    for h in (1, 7, 256):
        assert sym.evaluate(cols.type.shape[0], {SEQ: h}) == 2 * ((h + 2 - 4 - 1) // 2 + 1) * 7
    with pytest.raises(IRTypeError, match="NCHW input"):
        call("im2col", x(3, 8, 8), kernel=(3, 3))
    with pytest.raises(IRTypeError, match="floating input"):
        call("im2col", x(1, 3, 8, 8, dtype="int32"), kernel=(3, 3))
    with pytest.raises(IRTypeError, match="stride must be 2 values >= 1"):
        call("im2col", img, kernel=(3, 3), stride=(0, 1))


def test_index_adjacent_and_split_axes():
    t = x(5, 6, 7)
    i = x(2, 3, dtype="int64", name="i")
    assert call("index", t, i, axes=(1,)).type.shape == tuple(sym.const(v) for v in (5, 2, 3, 7))
    j = x(3, dtype="int64", name="j")
    assert call("index", t, i, j, axes=(0, 2)).type.shape == tuple(sym.const(v) for v in (2, 3, 6))


def test_attr_errors_are_precise():
    t = x(4)
    with pytest.raises(IRTypeError, match="op 'softmax' requires attribute 'axis'"):
        call("softmax", t)
    with pytest.raises(IRTypeError, match=r"has no attribute\(s\) \['dim'\]"):
        call("softmax", t, axis=0, dim=0)
    with pytest.raises(IRTypeError, match="takes 1 inputs"):
        Call("relu", [t, t])
    with pytest.raises(IRTypeError, match="axis 3 out of range"):
        call("softmax", t, axis=3)


def test_registry_rejects_duplicates_and_lists_ops():
    names = {op.name for op in list_ops()}
    assert {"linear", "attention", "rms_norm", "embedding", "cumsum", "index"} <= names
    with pytest.raises(ValueError, match="already registered"):
        register_op("linear", ("x",))(lambda t, a: t[0])
    get_op("linear").set_attr("test.cost", 42)
    assert get_op("linear").get_attr("test.cost") == 42


def test_literal_types():
    assert Literal(True).type.dtype == "bool"
    assert Literal(3).type.dtype == "int64"
    assert Literal(2.5).type == TensorType((), "float32")
    with pytest.raises(IRTypeError):
        Literal("a")
