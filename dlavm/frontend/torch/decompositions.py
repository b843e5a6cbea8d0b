"""The decomposition table handed to ``ExportedProgram.run_decompositions``.

We decompose only what our converters do not handle natively. High-level ops
the device executes as units (``linear``, ``scaled_dot_product_attention``,
``layer_norm``, ``silu``, ``gelu``, ``embedding``, ``conv2d``) are kept, which
is both faster to import (a 7B graph is not re-traced into thousands of
primitive ops) and what the compiler wants to see.
"""
from __future__ import annotations

import torch
from torch._decomp import get_decompositions

aten = torch.ops.aten

# ATen ops that torch can decompose and we have no converter for.
DECOMPOSE = [
    "hardtanh", "hardswish", "hardsigmoid", "leaky_relu", "elu", "glu", "softplus", "mish",
    "gelu_backward", "var_mean", "var", "std", "logsumexp", "addcmul", "addcdiv", "baddbmm",
    "addmv", "threshold", "linalg_vector_norm", "norm", "frobenius_norm", "square", "relu6",
    "silu_", "std_mean", "lerp", "log1p", "expm1", "native_group_norm", "group_norm", "instance_norm",
    "_native_batch_norm_legit_functional", "native_batch_norm", "roll", "flip", "repeat",
    "masked_fill_", "index_put", "stack", "hstack", "vstack", "narrow", "einsum", "outer", "dot", "mv",
    "addbmm", "prelu", "celu", "selu", "silu_backward", "nan_to_num", "xlogy", "erfc",
]


def decomposition_table() -> dict:
    """OpOverload -> decomposition, for the ops in ``DECOMPOSE`` that torch knows how to decompose."""
    packets = [getattr(aten, name) for name in DECOMPOSE if hasattr(aten, name)]
    return get_decompositions(packets)
