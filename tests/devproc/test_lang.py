"""DevProc's language: op semantics against torch, tracing and its refusals (with the kernel's line),
the graph's JSON and its one reader (doc/devproc.md)."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import devproc
from devproc.lang import OPS, PUBLIC_OPS, graph_from_json, trace
from devproc.lang.ops import full_attrs

HERE = "test_lang.py"


# ------------------------------------------------------------------ ops against torch (eager, numpy kernels)

def test_every_public_op_is_a_function_of_devproc_with_the_registry_signature():
    for name in PUBLIC_OPS:
        fn = getattr(devproc, name)
        assert fn.__name__ == name and OPS[name].doc, name


@pytest.mark.parametrize("seed", range(4))
def test_mean_pool_and_l2_normalize_are_sentence_transformers_pooling(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 9, 24, generator=g)
    mask = torch.randint(0, 2, (2, 9), generator=g)
    mask[:, 0] = 1
    want = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    got = devproc.mean_pool(x.numpy(), mask.numpy().astype(np.int32))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)
    norm = devproc.l2_normalize(got, dim=-1)
    np.testing.assert_allclose(norm, torch.nn.functional.normalize(torch.from_numpy(got), dim=-1).numpy(),
                               rtol=1e-6, atol=1e-7)
    assert got.dtype == norm.dtype == np.float32


def test_a_mask_of_zeros_divides_by_the_clamp_not_by_zero():
    out = devproc.mean_pool(np.ones((1, 3, 2), np.float32), np.zeros((1, 3), np.int32))
    assert np.all(out == 0) and np.isfinite(out).all()


def test_tensor_ops_follow_numpy_and_torch():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert devproc.argmax(x, dim=1).tolist() == torch.from_numpy(x).argmax(1).tolist()
    assert devproc.argmax(x, dim=-1, keepdim=True).shape == (2, 3, 1)
    assert np.array_equal(devproc.transpose(x, 0, 2), np.swapaxes(x, 0, 2))
    assert devproc.unsqueeze(x, 0).shape == (1, 2, 3, 4)
    assert np.array_equal(devproc.concat([x, x], dim=1), np.concatenate([x, x], 1))
    assert np.array_equal(devproc.ones_like(x), np.ones(x.shape, np.int32))
    assert devproc.to(np.array([1.9, -1.9], np.float32), devproc.Int32).tolist() == [1, -1]
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(devproc.embed(np.array([[3, 0]], np.int32), table), table[[[3, 0]]])
    nan_first = np.array([[1.0, np.nan, 5.0, np.nan]], np.float32)
    assert devproc.argmax(nan_first).tolist() == [1]      # numpy: the first NaN is the maximum


@pytest.mark.parametrize("call, rule", [
    (lambda: devproc.embed(np.array([[4]], np.int32), np.zeros((4, 2), np.float32)), "outside the table's 4 rows"),
    (lambda: devproc.to(np.array([np.nan], np.float32), devproc.Int32), "does not fit dtype int32"),
    (lambda: devproc.to(np.array([3e9], np.float32), devproc.Int32), "does not fit dtype int32"),
    (lambda: devproc.concat([np.zeros((1, 2), np.float32), np.zeros((2, 3), np.float32)], dim=0), "differ outside axis 0"),
    (lambda: devproc.mean_pool(np.zeros((1, 3, 2), np.float32), np.zeros((1, 4), np.int32)), "does not match"),
    (lambda: devproc.argmax(np.zeros((1, 0), np.float32)), "is empty"),
    (lambda: devproc.argmax(np.zeros((1, 2), np.float32), dim=5), "outside the 2 axes"),
])
def test_bad_values_are_refused_in_one_line(call, rule):
    with pytest.raises(devproc.DevprocError, match=re.escape(rule)) as e:
        call()
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ tracing

@devproc.kernel
def _inner(x: devproc.Tensor):
    return devproc.l2_normalize(x, dim=-1)


@devproc.kernel
def _outer(x: devproc.Tensor, mask: devproc.Tensor[devproc.Int32, 2]):
    return _inner(devproc.mean_pool(x, mask)), devproc.argmax(x, dim=-1)


def test_kernels_call_kernels_and_the_graph_lists_every_node_in_order():
    g, b, values = trace(_outer, (np.zeros((1, 3, 4), np.float32), np.ones((1, 3), np.int32)))
    assert [n.op for n in g.nodes] == ["mean_pool", "l2_normalize", "argmax"]
    assert [i.name for i in g.inputs] == ["x", "mask"]
    assert set(b.kernels) == {"_outer", "_inner"}
    assert g.result == (g.nodes[1].outputs[0], g.nodes[2].outputs[0])
    assert all(n.loc.startswith(HERE + ":") for n in g.nodes)


def _line_of(fn, needle: str) -> int:
    import inspect
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if needle in line)


def _refused(k, args, needle: str, rule: str):
    with pytest.raises(devproc.DevprocError) as e:
        trace(k, args)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{HERE}:{_line_of(k.fn, needle)}: "), msg
    assert rule in msg, msg


X = (np.zeros((1, 3), np.float32),)


def test_python_control_flow_on_a_traced_value_is_refused_with_the_kernels_line():
    @devproc.kernel
    def k_if(x: devproc.Tensor):
        if devproc.argmax(x):  # HERE-if
            return x
        return x

    @devproc.kernel
    def k_len(x: devproc.Tensor):
        return devproc.argmax(x, dim=len(x))  # HERE-len

    @devproc.kernel
    def k_for(x: devproc.Tensor):
        for row in x:  # HERE-for
            return row

    @devproc.kernel
    def k_index(x: devproc.Tensor):
        return x[0]  # HERE-index

    _refused(k_if, X, "HERE-if", "Python control flow")
    _refused(k_len, X, "HERE-len", "len()")
    _refused(k_for, X, "HERE-for", "iteration")
    _refused(k_index, X, "HERE-index", "indexing")


def test_calls_of_anything_but_an_op_are_refused_with_the_kernels_line():
    @devproc.kernel
    def k_np(x: devproc.Tensor):
        return np.exp(x)  # HERE-np

    @devproc.kernel
    def k_torch(x: devproc.Tensor):
        return torch.exp(x)  # HERE-torch

    @devproc.kernel
    def k_arith(x: devproc.Tensor):
        return x * 2  # HERE-arith

    @devproc.kernel
    def k_method(x: devproc.Tensor):
        return x.softmax(-1)  # HERE-method

    @devproc.kernel
    def k_not_model(x: devproc.Tensor):
        return x(1)  # HERE-call

    _refused(k_np, X, "HERE-np", "numpy.exp is not a DevProc op")
    _refused(k_torch, X, "HERE-torch", "is a torch function, not a DevProc op")
    _refused(k_arith, X, "HERE-arith", "arithmetic is not a DevProc op")
    _refused(k_method, X, "HERE-method", "'softmax' is not a DevProc op")
    _refused(k_not_model, X, "HERE-call", "is not callable")


def test_type_errors_are_refused_with_the_kernels_line():
    @devproc.kernel
    def k_type(s: devproc.String):
        return devproc.argmax(s)  # HERE-type

    @devproc.kernel
    def k_pool(x: devproc.Tensor):
        return devproc.mean_pool(devproc.to(x, devproc.Int32), devproc.ones_like(x))  # HERE-pool

    @devproc.kernel
    def k_inner_ann(x: devproc.Tensor):
        return _wants_string(x)  # HERE-ann

    @devproc.kernel
    def k_attr(x: devproc.Tensor):
        return devproc.argmax(x, dim=devproc.argmax(x))  # HERE-attr

    @devproc.kernel
    def k_unknown_attr(x: devproc.Tensor):
        return devproc.argmax(x, axis=1)  # HERE-kw

    _refused(k_type, ("text",), "HERE-type", "argmax: x must be a Tensor, got String")
    _refused(k_pool, (np.zeros((1, 2, 3), np.float32),), "HERE-pool", "x must be a float tensor")
    _refused(k_inner_ann, X, "HERE-ann", "argument 's' of kernel '_wants_string' is Tensor[devproc.Float32")
    _refused(k_attr, X, "HERE-attr", "dim= must be a Python constant")
    _refused(k_unknown_attr, X, "HERE-kw", "unexpected keyword argument 'axis'")


@devproc.kernel
def _wants_string(s: devproc.String):
    return s


def test_a_kernel_must_return_traced_values_and_use_its_inputs():
    @devproc.kernel
    def k_none(x: devproc.Tensor):
        devproc.argmax(x)

    @devproc.kernel
    def k_unused(x: devproc.Tensor, y: devproc.Tensor):
        return devproc.argmax(x)

    with pytest.raises(devproc.DevprocError, match="must return traced values"):
        trace(k_none, X)
    with pytest.raises(devproc.DevprocError, match="input\\(s\\) y are never used"):
        trace(k_unused, X + X)


def test_str_literals_and_arrays_in_a_kernel_become_constants():
    table = np.arange(6, dtype=np.float32).reshape(3, 2)

    @devproc.kernel
    def k(ids: devproc.Tensor):
        return devproc.embed(ids, devproc.const(table, "table")), devproc.load_image("x.png")

    g, _, _ = trace(k, (np.zeros((1, 2), np.int32),))
    assert [c.name for c in g.consts] == ["table"] and g.consts[0].type.rank == 2
    assert g.nodes[1].op == "string" and g.nodes[1].attrs == {"value": "x.png"}


# ------------------------------------------------------------------ the graph's JSON and its reader

def _sample_graph_json() -> dict:
    g, _, _ = trace(_outer, (np.zeros((1, 3, 4), np.float32), np.ones((1, 3), np.int32)))
    return json.loads(json.dumps(g.to_json()))


def test_the_graph_round_trips_through_json():
    obj = _sample_graph_json()
    g = graph_from_json(obj)
    assert g.to_json() == obj


@pytest.mark.parametrize("edit, rule", [
    (lambda o: o.update(version=2), "version 2 is not 1"),
    (lambda o: o["nodes"][0].update(op="exec"), "unknown op 'exec'"),
    (lambda o: o["nodes"][0].update(inputs=["v99"]), "must name values defined before the node"),
    (lambda o: o["nodes"][1].update(inputs=[o["nodes"][2]["outputs"][0]]), "must name values defined before"),
    (lambda o: o["nodes"][0]["attrs"].update(extra=1), "has no attribute 'extra'"),
    (lambda o: o["nodes"][2]["attrs"].update(dim=7), "dim=7 is outside the 3 axes"),
    (lambda o: o["nodes"][0]["types"][0].update(dtype="int64"), "result types"),
    (lambda o: o["inputs"][0]["type"].update(dtype="complex64"), "dtype 'complex64' is not one of"),
    (lambda o: o["nodes"][1].update(outputs=[o["nodes"][0]["outputs"][0]]), "is defined twice"),
    (lambda o: o.update(outputs=[]), "must name at least one defined value"),
    (lambda o: o.update(consts=[{"name": "t", "value": "v50", "type": {"kind": "tokenizer"},
                                 "file": "../etc/passwd", "sha256": "0" * 64}]), "plain path under consts/"),
])
def test_the_reader_refuses_each_broken_rule_naming_the_field(edit, rule):
    obj = _sample_graph_json()
    edit(obj)
    with pytest.raises(devproc.DevprocError, match=re.escape(rule)) as e:
        graph_from_json(obj)
    assert "\n" not in str(e.value) and str(e.value).startswith("pipeline.json")


def _mutations():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.text(max_size=6),
                     st.floats(allow_nan=True), st.just("v0"), st.just([]), st.just({}))
    return st.lists(st.tuples(st.integers(0, 10_000), leaf), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_mutations())
def test_a_mutated_pipeline_json_is_read_or_refused_never_crashes(mutations):
    """Property: any JSON-level mutation of a valid pipeline.json is either a valid graph or a DevprocError
    (never another exception)."""
    obj = _sample_graph_json()
    for pick, value in mutations:
        paths = []

        def walk(o, path):
            paths.append(path)
            if isinstance(o, dict):
                for k in o:
                    walk(o[k], path + (k,))
            elif isinstance(o, list):
                for i, x in enumerate(o):
                    walk(x, path + (i,))
        walk(obj, ())
        path = paths[pick % len(paths)]
        if not path:
            continue
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        parent[path[-1]] = copy.deepcopy(value)
    try:
        g = graph_from_json(obj)
    except devproc.DevprocError as e:
        assert "\n" not in str(e)
        return
    # a graph the reader accepts is consistent: every operand defined before use, types per the op's rule
    defined = {i.value for i in g.inputs} | {c.value for c in g.consts}
    for n in g.nodes:
        assert set(n.inputs) <= defined
        assert n.attrs == full_attrs(OPS[n.op], n.attrs)
        defined |= set(n.outputs)
