"""``DeviceOpSpec``: everything the compiler knows about one device op, in one object.

A spec is registered with :func:`register_device_op`, which registers the op
itself (inputs, attributes, type relation: ``dlavm.ir.register_op``) and
attaches the spec to it as ``op.get_attr("spec")``. The layers below this
package find it there (``dlavm.ir.op.device_spec``) and never import it:

* ``legalize`` collects the ``patterns`` of every spec, in priority order;
* the reference executor runs ``reference(args, attrs, ev)``;
* lowering picks the first of ``lowering`` whose ``requires(target)`` holds,
  after ``check(node, target)`` has refused, before anything is lowered,
  what the device cannot do;
* every instruction a lowering rule emits must be one of ``emits``
  (mnemonics of doc/isa.md; their fields, accesses and cycles live in
  ``dlavm.target``).

doc/device_ops.md walks through adding an op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..ir.op import IRTypeError, attr, get_op, register_op
from ..ir.ops.common import tensor
from ..target.isa import OPS
from ..target.schema import FIELD_NAMES


def f16(t, op: str, what: str = "input"):
    """``t`` as a tensor type that must be float16 (every device activation is)."""
    t = tensor(t, op, what)
    if t.dtype != "float16":
        raise IRTypeError(f"op '{op}': {what} must be float16 on the device, got {t}")
    return t


@dataclass(frozen=True)
class Lowering:
    """A lowering rule ``fn(ctx, node) -> [task-IR statements]`` usable on targets where
    ``requires(target)`` holds; ``requires.__doc__`` states the capability."""

    fn: Callable
    requires: Callable = field(default=lambda target: True)

    @property
    def requirement(self) -> str:
        return (self.requires.__doc__ or "any target").strip()


@dataclass(frozen=True)
class DeviceOpSpec:
    """One device op (module docstring).

    ``inputs``/``attrs``/``type_rel``: as ``dlavm.ir.register_op``.
    ``patterns``: legalization ``dlavm.passes.patterns_match.Pattern``s producing this op.
    ``reference``: kernel ``(args, attrs, ev) -> torch.Tensor`` with doc/isa.md numerics.
    ``lowering``: ``Lowering`` rules, most specific first. ``emits``: the instruction
    mnemonics those rules may emit. ``check(node, target)``: raise ``ValueError`` naming the
    op, the dimension and the limit when the target cannot run ``node`` (None: no limits).
    ``result_on_device``: the result lives in device memory (every op but ``dev.to_host``).
    ``param_format(node, index)``: ``(format, int4 group)`` the device reads weight operand
    ``index`` in (None: ``("fp16", None)``, biases and norm parameters), for ``fake_quantized_params``.
    ``numerics``: target fields (``int4_group``, ``int8_block``, ``tree_lanes``) the op's numerics
    depend on; each
    is an attribute of the same name (``?int``, declared by :func:`register_device_op`) that the
    ``quantize`` pass copies from the target, so the reference kernel needs no target; lowering
    refuses a value that differs from the target compiled for.
    ``result_layout(node)``: ``"dense"`` (None) or ``"argmax"`` (8-byte records, one per row).
    ``examples(rng)``: :class:`dlavm.devops.examples.OpExample` graphs running the op alone, with
    the sizes where its lowering changes shape; the conformance suite (tests/conformance) runs
    each on the simulator against ``reference``, bit for bit, and compares the compile report's
    cycle estimate with the simulated cycles. A device op without examples fails that suite.
    """

    name: str
    inputs: tuple
    attrs: dict
    type_rel: Callable
    doc: str
    reference: Callable
    patterns: tuple = ()
    lowering: tuple = ()
    emits: tuple = ()
    check: Callable | None = None
    result_on_device: bool = True
    param_format: Callable | None = None
    numerics: tuple = ()
    result_layout: Callable | None = None
    examples: Callable | None = None

    def find_lowering(self, target) -> Callable | None:
        """The first lowering rule whose requirement ``target`` meets, or None."""
        return next((r.fn for r in self.lowering if r.requires(target)), None)


def register_device_op(spec: DeviceOpSpec) -> DeviceOpSpec:
    """Register ``spec.name`` as an op with its type relation and attach ``spec`` to it."""
    if not spec.name.startswith("dev."):
        raise ValueError(f"device op '{spec.name}': device op names start with 'dev.'")
    if spec.lowering and not spec.emits:
        raise ValueError(f"device op '{spec.name}': lowering rules need the instruction mnemonics they emit")
    unknown = sorted(set(spec.emits) - {o.mnemonic for o in OPS})
    if unknown:
        raise ValueError(f"device op '{spec.name}': emits {unknown}, which are not instructions of doc/isa.md")
    unknown = sorted(set(spec.numerics) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"device op '{spec.name}': numerics {unknown} are not target fields")
    clash = sorted(set(spec.numerics) & set(spec.attrs))
    if clash:
        raise ValueError(f"device op '{spec.name}': numerics {clash} are declared by register_device_op")
    attrs = {**spec.attrs, **{name: attr("?int", None) for name in spec.numerics}}
    register_op(spec.name, spec.inputs, attrs, spec.doc)(spec.type_rel)
    get_op(spec.name).set_attr("spec", spec)
    return spec


__all__ = ["DeviceOpSpec", "Lowering", "f16", "register_device_op"]
