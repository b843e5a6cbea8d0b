"""A user factory's ``(module, example_inputs[, dynamic_shapes])``: dims and input makers derived from
torch.export's ``Dim`` objects (doc/models.md, "The factory contract")."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.export import Dim

from dlavm.models import ModelLoadError, ModelSpec, load_model
from dlavm.models.spec import ModelDimError


class Two(nn.Module):
    def forward(self, x, ids):
        return x.sum(-1) + ids.float()


def _spec(dynamic_shapes, max_seq=None, inputs=None):
    inputs = inputs or (torch.randn(1, 6, 4), torch.randint(3, 9, (1, 6)))
    return ModelSpec.from_factory_result("f", (Two(), inputs, dynamic_shapes), max_seq=max_seq)


def test_dims_and_inputs_follow_the_dims():
    seq = Dim("seq", min=2, max=16)
    spec = _spec(({1: seq}, {1: seq}))
    assert spec.dims == {"seq": (2, 16)}
    x, ids = spec.inputs_at(seq=11)
    assert list(x.shape) == [1, 11, 4] and x.dtype == torch.float32     # static axes keep their size
    assert list(ids.shape) == [1, 11] and ids.dtype == torch.int64
    ex_ids = spec.example_inputs[1]
    assert int(ids.min()) >= int(ex_ids.min()) and int(ids.max()) <= int(ex_ids.max())  # valid "token ids"
    again = spec.inputs_at(seq=11)
    assert all(torch.equal(a, b) for a, b in zip((x, ids), again))      # deterministic
    assert all(a is b for a, b in zip(spec.inputs_at(), spec.example_inputs))  # no dims: the examples
    assert spec.check_points() == [{"seq": 2}, {"seq": 10}, {"seq": 16}]


def test_dict_keyed_tuple_per_axis_and_derived_dims():
    seq = Dim("seq", min=1, max=8)
    spec = _spec({"x": (None, 2 * seq, None), "ids": {1: 2 * seq}},
                 inputs=(torch.randn(1, 6, 4), torch.randint(0, 5, (1, 6))))
    assert spec.dims == {"seq": (1, 8)}
    x, ids = spec.inputs_at(seq=5)
    assert list(x.shape) == [1, 10, 4] and list(ids.shape) == [1, 10]


def test_bool_and_nested_inputs():
    class Nested(nn.Module):
        def forward(self, pair):
            return pair[0] * pair[1]
    n = Dim("n", min=1, max=9)
    example = ((torch.randn(3, 2), torch.tensor([[True, False]] * 3)),)
    spec = ModelSpec.from_factory_result("f", (Nested(), example, (({0: n}, {0: n}),)))
    (a, mask), = spec.inputs_at(n=7)
    assert list(a.shape) == [7, 2] and list(mask.shape) == [7, 2] and mask.dtype == torch.bool
    assert spec.module(*spec.inputs_at(n=7)).shape == (7, 2)


def test_unbounded_dims_take_max_seq_or_are_named():
    with pytest.raises(ModelDimError, match=r"dim 'seq' \(input 0 axis 1\) has no upper bound"):
        _spec(({1: Dim("seq")}, None))
    spec = _spec(({1: Dim("seq")}, {1: Dim("seq")}), max_seq=12)
    assert spec.dims == {"seq": (1, 12)}                                # min 0 (torch's default) checked from 1
    assert spec.dynamic_shapes[0][1].max == 12                          # exported with that bound


def test_dim_hints():
    assert _spec(({1: Dim.STATIC}, None)).dims == {}
    for hint in (Dim.AUTO, Dim.DYNAMIC):
        with pytest.raises(ModelDimError, match=r"input 0 axis 1 is DimHint\((AUTO|DYNAMIC)\), which names no dim"):
            _spec(({1: hint}, None))


@pytest.mark.parametrize("ds, message", [
    (({1: Dim("seq", max=8)},), r"1 entries for 2 example inputs"),
    (({5: Dim("seq", max=8)}, None), r"axis 5 is not an axis of its shape \[1, 6, 4\]"),
    ({"y": {0: Dim("seq", max=8)}}, r"names \['y'\], which are not arguments"),
    (({1: Dim("seq", max=8)}, {1: Dim("seq", max=9)}), r"two dims named 'seq' with different bounds"),
    (({1: 3}, None), r"is 3, not a torch.export.Dim"),
])
def test_malformed_dynamic_shapes_are_named(ds, message):
    with pytest.raises(ModelDimError, match=message):
        _spec(ds)


@pytest.mark.parametrize("result, message", [
    (42, "got int"), ((nn.Linear(2, 2),), "got a tuple of 1 items"),
    ((nn.Linear(2, 2), torch.randn(2)), "example_inputs of type Tensor"), ((3, (torch.randn(2),)), "int as the module"),
])
def test_wrong_results_are_refused(result, message):
    with pytest.raises(TypeError, match=message):
        ModelSpec.from_factory_result("f", result)


def _factory(tmp_path, body: str) -> str:
    path = tmp_path / "model.py"
    path.write_text("import torch\nfrom torch.export import Dim\n" + body)
    return f"{path}:build"


def test_max_seq_reaches_only_a_factory_that_takes_it(tmp_path):
    takes = _factory(tmp_path, "def build(max_seq=8):\n    return torch.nn.Linear(4, 4), (torch.randn(3, 4),), "
                               "({0: Dim('rows', min=1, max=max_seq)},)\n")
    assert load_model(takes).dims == {"rows": (1, 8)}
    assert load_model(takes, max_seq=5).dims == {"rows": (1, 5)}
    kwargs = _factory(tmp_path, "def build(**kw):\n    return torch.nn.Linear(4, 4), (torch.randn(3, 4),), "
                                "({0: Dim('rows')},)\n")
    assert load_model(kwargs, max_seq=6).dims == {"rows": (1, 6)}
    none = _factory(tmp_path, "def build():\n    return torch.nn.Linear(4, 4), (torch.randn(3, 4),)\n")
    assert load_model(none).dims == {}
    with pytest.raises(ModelLoadError, match=r"model.py:build' takes no argument max_seq \(--max-seq\)"):
        load_model(none, max_seq=6)
    with pytest.raises(ModelLoadError, match=r"recipe 'cnn' takes no max_seq \(it takes: max_batch\)"):
        load_model("cnn", max_seq=6)
