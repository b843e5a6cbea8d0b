"""Per-instruction records of a stream (manifest ``streams[name].insns``): op tag, layer, weights.

Written from the lowering's data: the tag is the device op each instruction
was emitted for (:attr:`dlavm.task.ir.Emit.tag`), the weights are the
buffers of the persistent pools (memory plan) that its address operands
point into, and the layer is read from those buffers' names. Readers
(:mod:`dlavm.compare.listing`, profiles) take the records as they are.
"""
from __future__ import annotations

import re

from dlavm import sym
from dlavm.artifact import InsnRecord
from dlavm.artifact.memory import NamedBuffers
from dlavm.target import insn_model

#: Hugging-Face-style layer numbering in a buffer name: ``model.layers.3.``, ``h.3.``, ``blocks.3.``.
_LAYER = re.compile(r"(?:^|[.:_])(?:layers|layer|h|blocks|block)\.(\d+)\.")
#: Operands that address data shared by every layer (activation tables): not a layer's weights.
_SHARED = {"table"}


def operand_unused(op: str, field: str, fields, target) -> bool:
    """Whether address operand ``field`` of ``op`` is unused for these field values: the
    instruction model (:func:`dlavm.target.insn_model.accesses`) declares no access for it."""
    return field in insn_model.unused_operands(op, fields, target)


def layer_of(name: str) -> int | None:
    """The layer number in a buffer name (``model.layers.3.mlp.up_proj.weight.int4`` -> 3), or None."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def insn_records(stream, memory: dict, target) -> list:
    """An :class:`~dlavm.artifact.InsnRecord` per entry of ``stream`` (a backend Stream); ``memory``:
    the manifest's pools. A dynamic address counts at its dims' lower bounds (the buffer it is based on).

    An instruction's layer is that of its first layered operand (a weight of no layer, e.g. the final
    norm, ends the layers); an instruction without one (attention on scratch buffers) stays in the
    layer of the instruction before it.
    """
    spans = NamedBuffers(memory)
    dynamic = {(p["index"], p["field"]): stream.exprs[("patch", k)] for k, p in enumerate(stream.patches)}
    out, layer = [], None
    for i, insn in enumerate(stream.insns):
        weights, marks = [], []
        for f in insn.format.fields:
            if f.kind != "addr" or f.name in _SHARED or operand_unused(insn.op, f.name, insn.fields, target):
                continue
            e = dynamic.get((i, f.name))
            addr = insn.fields[f.name] if e is None else sym.bounds(e)[0]
            span = spans.at(int(addr)) if addr is not None else None
            if span is None or span.name in weights:
                continue
            weights.append(span.name)
            if span.pool == "weights" or layer_of(span.name) is not None:
                marks.append(layer_of(span.name))
        if marks:
            layer = marks[0]
        out.append(InsnRecord(stream.tags[i], layer, tuple(weights)))
    return out


__all__ = ["insn_records", "operand_unused", "layer_of"]
