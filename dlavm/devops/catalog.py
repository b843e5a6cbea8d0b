"""What a target runs on the device: every registered device-op spec, judged against one target.

``dlavm ops --device [--target T]`` prints :func:`device_op_rows` for each
target; the rows come from the specs themselves (their legalization
patterns, lowering rules and their requirements, the instructions they
emit, the limits ``check`` enforces), so the list cannot drift from what
the compiler does.
"""
from __future__ import annotations

from ..ir.op import device_specs


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") if text else ""


def target_capabilities(target) -> list:
    """``[(name, value)]``: the target fields that decide what runs on the device and how large."""
    return [("weights", ", ".join(target.weight_formats)),
            ("mvm", f"{target.tin} x {target.tout} x {target.mvm_groups} (Tin x Tout x groups)"),
            ("mat", f"{target.mat_tin} x {target.mat_tout} (attention matmuls)"),
            ("sfu lanes", str(target.sfu_lanes)),
            ("max seq", str(target.max_seq_len)),
            ("int4 group / int8 block", f"{target.int4_group} / {target.int8_block}")]


def device_op_rows(target) -> list:
    """One dict per device op for ``target``: ``op``, ``runs`` (``device``, ``transfer`` for the
    boundary ops, or ``no`` when no lowering rule's requirement holds), ``lowering`` (the requirement
    met, or the ones missed), ``from`` (its legalization patterns), ``emits`` (instruction
    mnemonics), ``limits`` (what ``check`` refuses, first sentence of its doc), ``doc``."""
    rows = []
    for spec in device_specs():
        if not spec.lowering:
            runs, lowering = "transfer", "the runtime moves the tensor"
        else:
            rule = next((r for r in spec.lowering if r.requires(target)), None)
            runs = "device" if rule is not None else "no"
            lowering = rule.requirement if rule is not None else \
                "needs " + " or ".join(r.requirement for r in spec.lowering)
        rows.append({"op": spec.name, "runs": runs, "lowering": lowering,
                     "from": ", ".join(p.name for p in spec.patterns), "emits": ", ".join(spec.emits),
                     "limits": _first_sentence(spec.check.__doc__) if spec.check else "",
                     "doc": _first_sentence(spec.doc)})
    return rows


__all__ = ["device_op_rows", "target_capabilities"]
