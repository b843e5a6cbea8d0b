"""``dev.act``: a piecewise-linear activation table on the SFU (doc/isa.md 7.6).

The tables (SiLU, GELU, sigmoid, exp) are built by ``dlavm.target.pwl`` and
stored in device memory; GPT-2's tanh-GELU formula is recognised as a whole
and runs on the GELU table.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import IRTypeError, TensorType, attr, call
from ..passes.patterns_match import Pat, Pattern, is_float, to_device, to_host
from ..target import pwl
from ..task.lower import numel
from .examples import OpExample
from .spec import DeviceOpSpec, Lowering, f16, register_device_op

ACTIVATIONS = ("silu", "gelu", "sigmoid", "exp")


def type_rel(types, attrs):
    x = f16(types[0], "dev.act")
    if attrs["fn"] not in ACTIVATIONS:
        raise IRTypeError(f"op 'dev.act': fn must be one of {ACTIVATIONS}, got {attrs['fn']!r}")
    return TensorType(x.shape, "float16")


def _act(fn):
    def rule(node, ctx, x):
        return to_host(call("dev.act", to_device(x), fn=fn), node.type.dtype)
    return rule


_X = Pat.any("x", where=is_float)


def _mul_by(value, operand: Pat) -> Pat:
    return Pat("mul", operand, Pat.lit(value), commutative=True)


#: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
_GELU_TANH = Pat("mul", _mul_by(0.5, _X),
                 Pat("add", Pat("tanh", _mul_by(math.sqrt(2 / math.pi),
                                                Pat("add", Pat.any("x"),
                                                    _mul_by(0.044715, Pat("pow", Pat.any("x"), Pat.lit(3))),
                                                    commutative=True))),
                     Pat.lit(1.0), commutative=True),
                 commutative=True)

PATTERNS = (
    Pattern("silu->act", Pat("silu", _X), _act("silu"), "silu -> dev.act(silu)", priority=30),
    Pattern("sigmoid->act", Pat("sigmoid", _X), _act("sigmoid"), "sigmoid -> dev.act(sigmoid)", priority=30),
    Pattern("gelu->act", Pat("gelu", _X), _act("gelu"), "gelu (erf or tanh) -> dev.act(gelu)", priority=30),
    Pattern("gelu-tanh-decomposed", _GELU_TANH, _act("gelu"), "GPT-2 NewGELU formula -> dev.act(gelu)",
            priority=10),
)


def reference(args, attrs, ev):
    import torch

    from ..reference.device_numerics import pwl_eval
    return pwl_eval(args[0].float(), attrs["fn"]).to(torch.float16)


def lower(ctx, node):
    t = pwl.table(node.attrs["fn"])
    ta = ctx.blob(f"pwl.{t.name}", lambda: np.frombuffer(t.to_bytes(), np.uint8), len(t.to_bytes()))
    count = numel(node.type.shape)
    src, dst = ctx.addr(node.args[0]), ctx.addr(node)
    return [ctx.emit("act", src=src, dst=dst, table=ta, count=count, nseg=t.nseg, lo=t.lo_f32, inv_step=t.inv_step,
                     comment=t.name)]



# --- conformance examples ---------------------------------------------------------------------------

def examples(rng):
    from .examples import host_input, one_op, seq_dim
    return tuple(OpExample(fn, one_op("dev.act", [host_input("x", seq_dim(), 32)], {}, fn=fn)) for fn in ACTIVATIONS)


SPEC = register_device_op(DeviceOpSpec(
    name="dev.act",
    inputs=("x",),
    attrs={"fn": attr("str")},
    type_rel=type_rel,
    doc="piecewise-linear activation (doc/isa.md §7.6)",
    reference=reference,
    examples=examples,
    patterns=PATTERNS,
    lowering=(Lowering(lower),),
    emits=("act",),
))
