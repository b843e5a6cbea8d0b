"""A Llama-2-7B-shaped graph (meta device, no weights) imports whole.

Import speed is measured by bench/import_time.py, not asserted here.
"""
import pytest

from dlavm import sym
from dlavm.models import import_model
from dlavm.ir import count_ops


@pytest.fixture(scope="module")
def llama7b():
    return import_model("llama2-7b-shape")


def test_structure(llama7b):
    fn = llama7b.module["forward"]
    ops = count_ops(fn)
    assert ops["attention"] == 32
    assert ops["linear"] == 32 * 7 + 1
    (seq,) = fn.sym_vars()
    assert sym.bounds(seq) == (1, 4096)
    assert str(fn.ret_type) == "f32[1, seq, 32000]"


def test_weights_are_shape_only(llama7b):
    params = llama7b.module.params
    assert len(params) >= 32 * 9 + 3
    assert all(v is None for v in params.values())
    from dlavm.ir import summarize_module
    assert "weights:" in summarize_module(llama7b.module)
