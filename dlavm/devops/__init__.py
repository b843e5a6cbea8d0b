"""Device ops: one file per ``dev.*`` op, each registering a ``DeviceOpSpec`` (spec.py).

Importing this package registers every device op with its type relation,
legalization patterns, reference kernel and lowering rules; the compiler's
entry points import it (doc/device_ops.md: how to add a device op).
"""
from . import act, attention, eltwise, layernorm, mvm, rmsnorm, rope, softmax, transfer  # noqa: F401
from .spec import DeviceOpSpec, Lowering, register_device_op

__all__ = ["DeviceOpSpec", "Lowering", "register_device_op"]
