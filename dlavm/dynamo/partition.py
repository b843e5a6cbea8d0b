"""Which nodes of an ATen graph the compiler takes, and the maximal subgraphs they form.

A node is *device-capable* when the torch frontend converts it (its target is in
``dlavm.frontend.torch.CONVERTERS``, the one converter table) and its values have dtypes the
compiler handles. Everything else stays in torch eager, with a reason. The subgraphs are found by
torch's ``CapabilityBasedPartitioner`` (maximal, acyclic, in graph order); a subgraph that only
reshapes or renames (views, ``getitem``, size arithmetic) is left to eager too: it would cost a
device round trip and compute nothing.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupport

from ..frontend.torch import CONVERTERS
from ..frontend.torch.importer import _op_name, span_of, user_host_op_of

#: dtypes a compiled program takes and returns (bfloat16 and float64 have no numpy/device form here)
DTYPES = (torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
          torch.bool)

#: ops that compute nothing: a subgraph of only these stays in eager
_NO_COMPUTE = {
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.alias", "aten.detach", "aten.t",
    "aten.permute", "aten.transpose", "aten.unsqueeze", "aten.squeeze", "aten.expand", "aten.slice",
    "aten.select", "aten.flatten", "aten.unflatten", "aten.clone", "aten.contiguous", "aten.lift_fresh_copy",
    "aten.split", "aten.split_with_sizes", "aten.chunk", "aten.unbind", "aten._assert_tensor_metadata",
    "aten._assert_scalar", "aten._assert_async", "aten.sym_constrain_range",
    "aten.sym_constrain_range_for_size", "operator.getitem",
}


def op_name(node: torch.fx.Node) -> str:
    """``aten.addmm`` for an fx node (overload dropped), the name the reports use."""
    if node.target is operator.getitem:
        return "operator.getitem"
    if isinstance(node.target, torch._ops.OpOverload) and node.target.namespace != "aten":
        return node.target.name().replace("::", ".")    # prims.convert_element_type, not aten.*
    return _op_name(node.target)


def _vals(node):
    val = node.meta.get("val")
    return list(val) if isinstance(val, (list, tuple)) else [val]


def unsupported_reason(node: torch.fx.Node) -> str | None:
    """Why ``node`` (a ``call_function``) cannot go to the compiler, or None when it can."""
    if node.target is operator.getitem:
        return None
    vals = _vals(node)
    if any(isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool)) for v in vals):
        return "size arithmetic (computed by torch on the host)"
    if not (node.target in CONVERTERS or user_host_op_of(node.target) is not None):
        return f"no converter for ATen op '{op_name(node)}' (`dlavm ops --aten` lists them)"
    for v in vals:
        if isinstance(v, torch.Tensor) and v.dtype not in DTYPES:
            return f"dtype {str(v.dtype).replace('torch.', '')} (the compiler takes {_dtype_list()})"
    for a in node.all_input_nodes:
        for v in _vals(a):
            if isinstance(v, torch.Tensor) and v.dtype not in DTYPES:
                return f"an input of dtype {str(v.dtype).replace('torch.', '')} (the compiler takes {_dtype_list()})"
    return None


def _dtype_list() -> str:
    return ", ".join(str(d).replace("torch.", "") for d in DTYPES)


@dataclass
class Fallback:
    """One node left to torch eager, with why and where the user wrote it."""
    node: str
    op: str
    reason: str
    source: str

    def line(self) -> str:
        return f"{self.op} ({self.source}): {self.reason}"


class _Support(OperatorSupport):
    def __init__(self, refused: dict):
        super().__init__()
        self.refused = refused

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        if node.op != "call_function" or node.name in self.refused or unsupported_reason(node) is not None:
            return False
        if node.target is operator.getitem:   # an item of a supported op's tuple, not of a fused call's
            src = node.args[0]
            return isinstance(src, torch.fx.Node) and self.is_node_supported(submodules, src)
        return True


def source_of(node: torch.fx.Node) -> str:
    """The user's source line of ``node`` (``file:line | code``), as the compile report prints it."""
    return str(span_of(node))


def fallbacks(gm: torch.fx.GraphModule, refused: dict) -> list:
    """[Fallback] of every ``call_function`` node of ``gm`` left to eager (size arithmetic aside:
    torch computes sizes, that is no fallback of the user's compute). ``refused``: node name -> reason
    for nodes a converter refused when their subgraph was imported."""
    out = []
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target is operator.getitem:
            continue
        why = refused.get(n.name) or unsupported_reason(n)
        if why is not None and not why.startswith("size arithmetic"):
            out.append(Fallback(n.name, op_name(n), why, source_of(n)))
    return out


def propose(gm: torch.fx.GraphModule, refused: dict) -> list:
    """The maximal device-capable subgraphs of ``gm`` that compute something, each a topologically
    sorted list of nodes, in graph order (``gm`` is not changed). ``refused`` as for :func:`fallbacks`."""
    parts = CapabilityBasedPartitioner(gm, _Support(refused), allows_single_node_partition=True).propose_partitions()
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    out = []
    for p in parts:
        nodes = sorted(p.nodes, key=order.__getitem__)
        if {op_name(n) for n in nodes} - _NO_COMPUTE:
            out.append(nodes)
    out.sort(key=lambda ns: order[ns[0]])
    return out


__all__ = ["propose", "fallbacks", "Fallback", "unsupported_reason", "op_name", "source_of", "DTYPES"]
