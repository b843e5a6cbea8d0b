"""``legalize``: ATen-level graph ops -> ``dev.*`` ops, by the patterns of the device-op specs.

Every device op's spec (``dlavm.devops``, doc/device_ops.md) lists the
legalization patterns that produce it: one-to-one (``layer_norm``) or a
whole subgraph rooted at one op (the decomposed RMSNorm, the RoPE formula,
HF GQA attention with its mask). :func:`legalize_patterns` collects them
from the op registry, in priority order, followed by the canonicalization
rules (a legalized graph stays canonical). Each rewrite produces device ops
wrapped as ``dev.to_host(dev_op(dev.to_device(x)...))``, so it keeps the
graph's types and a legalized region composes with its neighbours: a
``dev.to_device(dev.to_host(y))`` pair is cancelled when the next rule
builds its input, and only real host/device boundaries keep their
conversions.

Guarantees afterwards: every op a pattern covers is a ``dev.*`` op (or a
view ``reshape`` of one); everything else stays as it was and runs on the
host; when a rule declines for a reason worth reporting (a mask that is not
causal, a RoPE table that is not prefix-consistent, ...) the reason is in
``mod.attrs["host_op_reasons"]`` keyed by op and source span. Rules are
tried for each call, bottom-up, to a fixed point; among rules rooted at the
same op, lower ``priority`` first (levels in doc/passes.md).
"""
from __future__ import annotations

from ..ir import Module, module_pass
from ..ir.op import device_specs
from .canonicalize import PRE_LEGALIZE_ONLY
from .canonicalize import RULES as CANONICAL_RULES
from .patterns_match import MatchContext, Pat, Pattern, ordered, record_rule_stats, run_table

#: Priority of the canonicalization rules inside the legalize table (after every device pattern).
CANONICAL_PRIORITY = 200


def _canonical(rule):
    return Pattern(rule.name, Pat(rule.op), lambda node, ctx, _f=rule.fn: _f(node), "canonicalize",
                   priority=CANONICAL_PRIORITY)


def legalize_patterns() -> list:
    """The legalization table: every registered device op's patterns, then the canonicalization
    rules, in priority order. Raises when no device op is registered (import ``dlavm.devops``)."""
    specs = device_specs()
    if not specs:
        raise RuntimeError("legalize: no device ops are registered; import dlavm.devops (it registers "
                           "every device op with its legalization patterns)")
    return ordered([p for s in specs for p in s.patterns]
                   + [_canonical(r) for r in CANONICAL_RULES if r.name not in PRE_LEGALIZE_ONLY])


def legalize_function(fn, ctx: MatchContext, table=None):
    """Apply the legalization ``table`` (default :func:`legalize_patterns`) to one function."""
    return run_table(fn, legalize_patterns() if table is None else table, ctx)


@module_pass("legalize")
def legalize(mod: Module) -> Module:
    """Rewrite ATen-level ops to ``dev.*`` ops with :func:`legalize_patterns` (module docstring).

    New weights (RoPE tables, all-ones norm weights) are added to ``mod.params``;
    ``mod.attrs["legalize_stats"]`` counts rule firings and
    ``mod.attrs["host_op_reasons"]`` maps ``op|span`` to why a rule declined.
    """
    params = dict(mod.params)
    ctx = MatchContext(params, dict(mod.attrs), reasons=dict(mod.attrs.get("host_op_reasons", {})))
    out = Module(params=params, attrs=dict(mod.attrs))
    table = legalize_patterns()
    for f in mod.functions.values():
        out.add(legalize_function(f, ctx, table))
    out.attrs["legalize_stats"] = dict(ctx.stats)
    out.attrs["host_op_reasons"] = ctx.reasons
    record_rule_stats(ctx)
    return out


__all__ = ["legalize", "legalize_function", "legalize_patterns"]
