"""Bad input gets an error naming the cause."""
import pytest
import torch

from dlavm.frontend.torch import UnsupportedOpError, from_torch
from dlavm.ir import IRError
from tests.frontend.models import UsesCummax


def test_unsupported_op_names_aten_op_node_and_source_line():
    with pytest.raises(UnsupportedOpError) as info:
        from_torch(UsesCummax(), (torch.randn(2, 8),))
    msg = str(info.value)
    assert "aten.cummax" in msg
    assert "%cummax" in msg
    assert "models.py:" in msg and "torch.cummax(x, dim=-1)" in msg


def test_dynamic_shapes_naming_a_missing_argument():
    with pytest.raises(IRError, match=r"dynamic_shapes names \['inputs'\]"):
        from_torch(torch.nn.Linear(4, 4), (torch.randn(2, 4),),
                   {"inputs": {0: torch.export.Dim("b", min=1, max=4)}})


def test_wrong_rank_and_dtype_inputs_are_refused():
    from dlavm.reference import ExecutionError, run_function
    seq = torch.export.Dim("seq", min=1, max=16)
    mod = from_torch(torch.nn.Linear(4, 4), (torch.randn(3, 4),), {"input": {0: seq}})
    with pytest.raises(ExecutionError, match="must have rank 2"):
        run_function(mod, "forward", [torch.randn(4)])
    with pytest.raises(ExecutionError, match="must be float32"):
        run_function(mod, "forward", [torch.zeros(3, 4, dtype=torch.float64)])
    with pytest.raises(ExecutionError, match="dim 1 must be 4 = 4, got 5"):
        run_function(mod, "forward", [torch.randn(3, 5)])


def test_shape_only_model_cannot_execute():
    from dlavm.reference import ExecutionError, run_function
    with torch.device("meta"):
        lin = torch.nn.Linear(4, 4)
    mod = from_torch(lin, (torch.randn(3, 4, device="meta"),))
    assert mod.params["weight"] is None
    with pytest.raises(ExecutionError, match="no data"):
        run_function(mod, "forward", [torch.randn(3, 4)])


def test_decomposition_fallback_matches_direct_conversion():
    """A graph with ops the converters lack goes through our decomposition table;
    for a graph without them both paths give the same IR."""
    from dlavm.frontend.torch import from_exported_program
    from dlavm.frontend.torch.decompositions import decomposition_table
    from dlavm.frontend.torch.importer import export_module, needs_decomposition
    from dlavm.ir import structural_equal
    from dlavm.reference import compare_with_torch
    from tests.frontend.models import LlamaBlock

    torch.manual_seed(0)
    block = LlamaBlock().eval()
    seq = torch.export.Dim("seq", min=1, max=32)
    ep = torch.export.export(block, (torch.randn(1, 8, 64),), dynamic_shapes={"x": {1: seq}}, strict=False)
    assert needs_decomposition(ep) == []
    direct = from_exported_program(ep, {"x": {1: seq}})
    via_table = from_exported_program(ep.run_decompositions(decomposition_table()), {"x": {1: seq}})
    assert structural_equal(direct["forward"], via_table["forward"])

    class Fancy(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.hardtanh(x * 3) + torch.logsumexp(x, dim=-1, keepdim=True)

    timings = {}
    ep2 = export_module(Fancy(), (torch.randn(2, 5),), {"x": {0: torch.export.Dim("b", min=1, max=9)}},
                        timings=timings)
    assert "aten.hardtanh.default" in timings["decomposed_for"]
    mod = from_exported_program(ep2, {"x": {0: torch.export.Dim("b", min=1, max=9)}})
    for b in (1, 9):
        x = torch.randn(b, 5, generator=torch.Generator().manual_seed(b))
        assert compare_with_torch(mod, "forward", Fancy(), (x,)).ok


def test_spans_point_at_model_code_not_into_torch():
    """A torch.nn module's op is attributed to the line that called the module."""
    from dlavm.ir import Call, post_order

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)

        def forward(self, ids):
            return self.emb(ids) * 2

    mod = from_torch(Net(), (torch.tensor([[1, 2]]),))
    (emb,) = [n for n in post_order(mod["forward"].body) if isinstance(n, Call) and n.op.name == "embedding"]
    assert emb.span.file.endswith("test_errors.py") and "self.emb(ids)" in emb.span.text
