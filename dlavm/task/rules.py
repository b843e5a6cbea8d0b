"""Lowering rules, looked up on the device op's spec (``dlavm.devops``, doc/device_ops.md).

Each ``DeviceOpSpec`` lists its lowering rules as ``Lowering(fn, requires)``
where ``requires(target) -> bool`` states the capability the rule needs (a
weight format, a buffer size); :func:`find_rule` returns the first rule
whose requirement holds, so a target variant that needs a different
strategy adds a rule with a narrower ``requires`` *before* the generic one,
instead of a per-version copy. A rule gets the
:class:`~dlavm.task.lower.LowerContext` and the node (its output buffer is
already allocated) and returns task-IR statements; wait bits are assigned
later from each instruction's accesses (:mod:`dlavm.task.deps`). Every
instruction a rule emits must be one of the mnemonics its spec declares
(``emits``).

Before anything is lowered, :func:`check_limits` asks every device op's spec
whether the target can run it (``spec.check``) and compares its numerics
attributes (``spec.numerics``) with the target's, so a shape past a device
limit, or a graph quantised for another target, is refused when compilation
starts, naming the op, the dimension and the limit, instead of half-way
through packing weights.
"""
from __future__ import annotations

from dlavm.ir import Call, post_order
from dlavm.ir.op import DEVICE_PREFIX, device_spec, device_specs

from .ir import Emit, For, If
from .lower import LoweringError


def _mnemonics(stmts):
    for s in stmts:
        if isinstance(s, Emit):
            yield s.op
        elif isinstance(s, For):
            yield from _mnemonics(s.body)
        elif isinstance(s, If):
            yield from _mnemonics(s.then)
            yield from _mnemonics(s.orelse)


def find_rule(op: str, target):
    """The lowering rule of device op ``op`` for ``target`` (checking that it emits only the
    spec's ``emits``), or None; raises naming the op when no spec is registered."""
    spec = device_spec(op, "lowering")
    fn = spec.find_lowering(target)
    if fn is None:
        return None

    def rule(ctx, node):
        stmts = fn(ctx, node)
        bad = sorted(set(_mnemonics(stmts)) - set(spec.emits))
        if bad:
            raise LoweringError(f"{op}: lowering rule '{fn.__name__}' emitted {bad}, which its spec does not "
                                f"declare (emits={list(spec.emits)})")
        return stmts
    return rule


def result_layout(node) -> str:
    """How device op ``node`` stores its result: ``"dense"`` (row-major fp16) or ``"argmax"``
    (one 8-byte record per row), as its spec says."""
    spec = device_spec(node.op, "lowering")
    return spec.result_layout(node) if spec.result_layout is not None else "dense"


def check_limits(mod, target) -> None:
    """Refuse (``LoweringError`` naming the op, its source, the dimension and the limit) every device
    op of ``mod`` that ``target`` cannot run; see the module docstring."""
    for fn in mod.functions.values():
        for node in post_order([fn.body]):
            if not (isinstance(node, Call) and node.op.name.startswith(DEVICE_PREFIX)):
                continue
            spec = device_spec(node.op, "lowering")
            try:
                for name in spec.numerics:
                    want, have = getattr(target, name), node.attrs[name]
                    if have is not None and have != want:
                        raise ValueError(f"{node.op.name}: {name}={have} was chosen for another target; target "
                                         f"'{target.name}' has {name}={want} (run the device pipeline with it)")
                if spec.check is not None:
                    spec.check(node, target)
            except ValueError as e:
                where = f" at {node.span}" if node.span else f" in function '{fn.name}'"
                raise LoweringError(f"{e}{where}") from None


def rule_table() -> list:
    """``[(op, rule name, requirement doc)]`` of every registered device op, for documentation."""
    return [(s.name, r.fn.__name__, r.requirement) for s in device_specs() for r in s.lowering]


__all__ = ["check_limits", "find_rule", "result_layout", "rule_table"]
