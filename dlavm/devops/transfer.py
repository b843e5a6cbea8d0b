"""``dev.to_device`` / ``dev.to_host``: the host/device boundary.

``to_device`` rounds a host float tensor to fp16 once; ``to_host`` widens a
device tensor exactly to the host dtype. Lowering turns them into the
runtime's copy steps (``to_device`` / ``to_host`` in
``dlavm.task.lower``), not instructions. A ``to_device(to_host(y))`` pair is
cancelled by legalization (fp16 -> f32 -> fp16 is exact), so only real
boundaries keep their conversions.
"""
from __future__ import annotations

from ..ir import TensorType, attr
from ..ir.ops.common import tensor
from ..passes.patterns_match import Pat, Pattern, to_device
from .examples import OpExample
from .spec import DeviceOpSpec, register_device_op


def _to_device_rel(types, attrs):
    return TensorType(tensor(types[0], "dev.to_device").shape, "float16")


def _to_host_rel(types, attrs):
    return TensorType(tensor(types[0], "dev.to_host").shape, attrs["dtype"])


def _roundtrip(node, ctx, x):
    out = to_device(x)
    return None if out is node or (out.op.name == "dev.to_device" and out.args[0] is x) else out


def _to_device(args, attrs, ev):
    import torch
    return args[0].to(torch.float16)


def _to_host(args, attrs, ev):
    from ..reference.kernels import DTYPE
    return args[0].to(DTYPE[attrs["dtype"]])



def _examples(rng):
    """A round trip: host float32 -> device fp16 -> host float32 (one fp16 rounding)."""
    from ..ir import Function, Module, call
    from .examples import host_input, seq_dim
    x = host_input("x", seq_dim(), 32)
    mod = Module({"forward": Function("forward", [x], call("dev.to_host", call("dev.to_device", x)))}, {})
    return (OpExample("roundtrip", mod),)


TO_DEVICE = register_device_op(DeviceOpSpec(
    name="dev.to_device",
    inputs=("x",),
    attrs={},
    type_rel=_to_device_rel,
    doc="host float tensor -> device f16 (one fp16 rounding)",
    reference=_to_device,
    examples=_examples,
    patterns=(Pattern("device-roundtrip", Pat("dev.to_device", Pat.any("x")), _roundtrip,
                      "to_device(to_host(y)) -> y; views stay on device", priority=100),),
))

TO_HOST = register_device_op(DeviceOpSpec(
    name="dev.to_host",
    inputs=("x",),
    attrs={"dtype": attr("dtype", "float32")},
    type_rel=_to_host_rel,
    doc="device tensor -> host tensor of ``dtype`` (exact widening)",
    reference=_to_host,
    examples=_examples,
    result_on_device=False,
))
