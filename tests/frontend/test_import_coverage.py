"""Ops real models use, through import + the reference executor (against torch eager) and through
``dlavm.compile(target="tiny")`` + the Python runtime on the simulator, where they stay on the host.

Import + reference is bit-exact: the reference executor calls torch's own kernels (sort through a
stable argsort and gather gives torch's values exactly). On the simulator the host ops' results are
compared with the reference of the compiled device graph, exactly for integer results and to a stated
tolerance for floats (the device's fp16 numerics come before them).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

import dlavm
from dlavm.frontend.torch import from_torch
from dlavm.ir import count_ops
from dlavm.reference import run_function

SEQ = Dim("seq", min=2, max=24)
SIZES = (2, 7, 24)


def _outputs(x):
    return [t for t in (x if isinstance(x, (tuple, list)) else (x,))]


def _import_matches_eager(module, make, dynamic_shapes, sizes=SIZES):
    """Import ``module`` once (example at the first size), then compare with eager at every size."""
    mod = from_torch(module.eval(), make(sizes[0]), dynamic_shapes)
    for n in sizes:
        inputs = make(n)
        with torch.no_grad():
            want = _outputs(module(*inputs))
        got = _outputs(run_function(mod, "forward", list(inputs)))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, (n, g.dtype, w.dtype, g.shape, w.shape)
            torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"size {n}: {m}")
    return mod


class Gather(torch.nn.Module):
    def forward(self, x, idx):
        return torch.gather(x, 1, idx)


class SortBoth(torch.nn.Module):
    def __init__(self, descending):
        super().__init__()
        self.descending = descending

    def forward(self, x):
        v, i = torch.sort(x, dim=-1, descending=self.descending, stable=True)
        return v, i


class TopK(torch.nn.Module):
    def __init__(self, largest):
        super().__init__()
        self.largest = largest

    def forward(self, x):
        return torch.topk(x, 3, dim=1, largest=self.largest)


class ArgsortRows(torch.nn.Module):
    def forward(self, x):
        return torch.argsort(x, dim=0, descending=True, stable=True)


def _ties(n, cols=6):
    """Rows with repeated values (and a NaN): stable order decides the indices."""
    g = torch.Generator().manual_seed(n)
    x = torch.randint(-3, 4, (n, cols), generator=g).float()
    x[0, 1] = float("nan")
    return (x,)


def test_gather_imports_and_runs_as_torch():
    def make(n):
        g = torch.Generator().manual_seed(n)
        return torch.randn(3, n, generator=g), torch.randint(0, n, (3, n + 2), generator=g)
    mod = _import_matches_eager(Gather(), make, ({1: SEQ}, {1: SEQ + 2}))  # a derived dim, too
    assert count_ops(mod["forward"])["gather"] == 1


@pytest.mark.parametrize("descending", [False, True])
def test_sort_values_and_indices_match_torch(descending):
    mod = _import_matches_eager(SortBoth(descending), _ties, ({0: SEQ},))
    assert count_ops(mod["forward"]) == {"argsort": 1, "gather": 1}


@pytest.mark.parametrize("largest", [True, False])
def test_topk_values_and_indices_match_torch(largest):
    def make(n):  # distinct values: torch.topk does not define the order of equal ones
        g = torch.Generator().manual_seed(n)
        return (torch.randperm(n * 8, generator=g).reshape(n, 8).float(),)
    _import_matches_eager(TopK(largest), make, ({0: SEQ},))


def test_argsort_imports_stable():
    _import_matches_eager(ArgsortRows(), _ties, ({0: SEQ},))


class MaskedFill(torch.nn.Module):
    def forward(self, x, m):
        n = x.shape[-1]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        y = x.masked_fill(causal, float("-inf")).softmax(-1)        # hand-written causal attention scores
        return y.masked_fill(m, torch.tensor(0.5)), x.long().masked_fill(m, torch.tensor(2.7))


def test_masked_fill_scalar_and_tensor_values():
    def make(n):
        g = torch.Generator().manual_seed(n)
        return torch.randn(2, n, n, generator=g) * 3, torch.rand(2, n, n, generator=g) > 0.5
    mod = _import_matches_eager(MaskedFill(), make, ({1: SEQ, 2: SEQ}, {1: SEQ, 2: SEQ}))
    assert count_ops(mod["forward"])["where"] == 4  # triu, then the three masked_fill


class Attention(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, q, k, v, mask):
        if self.kind == "causal":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self.kind == "none":
            return F.scaled_dot_product_attention(q, k, v)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _qkv_mask(kind):
    def make(n):
        g = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(1, 2, n, 8, generator=g) for _ in range(3))
        if kind == "float":
            mask = torch.randn(1, 1, n, n, generator=g)
        else:
            mask = torch.rand(n, n, generator=g) > 0.4
            mask[:, 0] = True  # every query sees a key (an all-False row is NaN in torch)
        return q, k, v, mask
    return make


@pytest.mark.parametrize("kind", ["none", "causal", "bool", "float"])
def test_sdpa_with_and_without_masks(kind):
    mask_dims = {2: SEQ, 3: SEQ} if kind == "float" else {0: SEQ, 1: SEQ}
    ds = ({2: SEQ}, {2: SEQ}, {2: SEQ}, mask_dims)
    mod = _import_matches_eager(Attention(kind), _qkv_mask(kind), ds)
    (node,) = [n for n in _calls(mod) if n.op.name == "attention"]
    assert node.attrs["causal"] == (kind == "causal")
    assert len(node.args) == (4 if kind in ("bool", "float") else 3)


def _calls(mod):
    from dlavm.ir import Call, post_order
    return [n for n in post_order([mod["forward"].body]) if isinstance(n, Call)]


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(x), dim=-1)


def test_log_softmax_imports():
    _import_matches_eager(Classifier(), lambda n: (torch.randn(n, 32, generator=torch.Generator().manual_seed(n)),),
                          ({0: SEQ},))


# --- compiled for the tiny target: the ops stay on the host, the Python runtime runs them ----------

class LinearThen(torch.nn.Module):
    """A device linear whose output feeds host ops: sort + topk, gather by the argsort, log_softmax."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 32)

    def forward(self, x):
        y = self.fc(x)
        values, idx = torch.sort(y, dim=-1, descending=True)
        top, top_idx = torch.topk(y, 4, dim=-1)
        return values, idx, top_idx, torch.gather(y, 2, idx[..., :5]), F.log_softmax(y, -1), top


def test_compiled_host_ops_run_on_the_simulator_as_the_reference_says():
    torch.manual_seed(0)
    model = LinearThen().eval()
    x = torch.randn(1, 5, 64)
    cm = dlavm.compile(model, (x,), {"x": {1: Dim("seq", min=1, max=16)}}, target="tiny", weights="fp16")
    host = {h.op for h in cm.manifest.host_ops}
    assert {"argsort", "gather", "log_softmax"} <= host
    for n in (1, 7, 16):
        x = torch.randn(1, n, 64, generator=torch.Generator().manual_seed(n))
        want = run_function(cm.device_module, "forward", [x])
        got = cm.run(x.numpy())
        assert len(got) == len(want) == 6
        for g, w in zip(got, want):
            w = w.numpy()
            assert g.shape == w.shape and g.dtype == w.dtype
            if np.issubdtype(w.dtype, np.integer):
                np.testing.assert_array_equal(g, w)
            else:  # numpy vs torch float32 maths on the same fp16 device output
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_compiled_sdpa_with_a_bool_mask_and_masked_fill_run_on_the_simulator():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(32, 96)

        def forward(self, x, mask):
            q, k, v = self.qkv(x).reshape(1, -1, 3, 2, 16).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return a.masked_fill(~mask[:, :1], 0.0)

    torch.manual_seed(0)
    model = M().eval()
    seq = Dim("seq", min=2, max=16)

    def make(n):
        g = torch.Generator().manual_seed(n)
        mask = torch.rand(n, n, generator=g) > 0.3
        mask[:, 0] = True
        return torch.randn(1, n, 32, generator=g), mask
    cm = dlavm.compile(model, make(5), {"x": {1: seq}, "mask": {0: seq, 1: seq}}, target="tiny", weights="fp16")
    for n in (2, 9, 16):
        x, mask = make(n)
        want = run_function(cm.device_module, "forward", [x, mask]).numpy()
        got = cm.run(x.numpy(), mask.numpy())[0]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        with torch.no_grad():  # and the fp16 device path stays near torch in fp32
            np.testing.assert_allclose(got, model(x, mask).numpy(), atol=3e-2)


# --- a current-transformers BERT: gather on the constant token_type_ids buffer -------------------

@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids).last_hidden_state
    return LastHidden().eval()


def _ids(n):
    return torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(n))


def test_hf_bert_imports_with_its_token_type_gather_folded(bert):
    seq = Dim("seq", min=1, max=128)
    mod = from_torch(bert, (_ids(9),), {"input_ids": {1: seq}})
    ops = count_ops(mod["forward"])
    assert "gather" not in ops  # gather(token_type_ids buffer, position_ids buffer) became a weight
    folded = [k for k in mod.params if ".gather" in k]
    assert len(folded) == 1 and not mod.params[folded[0]].any()  # BERT's token types: all zeros
    for n in (1, 2, 9, 128):
        with torch.no_grad():
            want = bert(_ids(n))
        torch.testing.assert_close(run_function(mod, "forward", [_ids(n)]), want, rtol=1e-5, atol=1e-5)


def test_hf_bert_compiles_and_runs_on_the_simulator(bert):
    cm = dlavm.compile(bert, (_ids(9),), {"input_ids": {1: Dim("seq", min=1, max=32)}}, target="tiny",
                       weights="fp16")
    for n in (1, 9, 32):
        got = cm.run(_ids(n).numpy())[0]
        with torch.no_grad():
            want = bert(_ids(n)).numpy()
        np.testing.assert_allclose(got, want, atol=2e-2)  # fp16 weights and activations on the device


def test_gather_of_a_constant_by_a_constant_is_folded():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.arange(12.0).reshape(3, 4))
            self.register_buffer("idx", torch.tensor([[3, 0], [1, 1], [2, 0]]))

        def forward(self, x):
            return x + torch.gather(self.table, 1, self.idx)
    mod = from_torch(M(), (torch.randn(3, 2),))
    assert count_ops(mod["forward"]) == {"add": 1}
    x = torch.randn(3, 2)
    torch.testing.assert_close(run_function(mod, "forward", [x]), M()(x))
