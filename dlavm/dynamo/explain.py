"""``dlavm.explain(model, *inputs)``: what ``torch.compile(model, backend="dlavm")`` does with a model.

It runs the model twice: once through ``torch._dynamo.explain`` (how many graphs dynamo captures and
why it broke between them, with the user's source line) and once compiled by the dlavm backend
(how each graph was partitioned: the device subgraphs with their ops, bounds and where the compiled
program runs each op, and every node left to eager with why and where). Both runs start from a
reset dynamo, and the dynamo caches are reset again afterwards.
"""
from __future__ import annotations

import os
import sysconfig
from collections import Counter
from dataclasses import dataclass, field

import torch

from . import backend as be


@dataclass
class Explanation:
    """The partition report of one model call (``print`` it)."""
    graphs: list = field(default_factory=list)        # [backend.GraphReport], in capture order
    breaks: list = field(default_factory=list)        # [(reason, source line)] of dynamo's graph breaks
    outputs: object = None                            # what the compiled call returned

    @property
    def graph_count(self) -> int:
        return len(self.graphs)

    @property
    def subgraphs(self) -> list:
        return [s for g in self.graphs for s in g.subgraphs if s.how != "eager"]

    @property
    def fallbacks(self) -> list:
        return [f for g in self.graphs for f in g.fallbacks]

    def __str__(self) -> str:
        lines = [f"{self.graph_count} graph(s), {len(self.breaks)} graph break(s), "
                 f"{len(self.subgraphs)} device subgraph(s), {len(self.fallbacks)} op(s) in eager"]
        for i, (reason, where) in enumerate(self.breaks, 1):
            lines.append(f"graph break {i}: {reason}" + (f" ({where})" if where else ""))
        for g in self.graphs:
            lines.append(f"graph {g.index}:")
            if g.eager_reason:
                lines.append(f"  runs in eager: {g.eager_reason}")
            for s in g.subgraphs:
                ops = Counter(s.ops)
                listed = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.most_common())
                bounds = ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in s.bounds.items()) or "static shapes"
                if s.how == "eager":
                    continue    # its nodes are listed below, each with the reason
                lines.append(f"  {s.name}: {len(s.ops)} op(s) in a device program ({bounds}; cache {s.how}): {listed}")
                where = Counter(w for _op, w in s.placement)
                if where:
                    host = sorted({op for op, w in s.placement if w != "device"})
                    lines.append("    compiled: " + ", ".join(f"{n} op(s) on {w}" for w, n in sorted(where.items()))
                                 + (f" (host: {', '.join(host)})" if host else ""))
            for f in g.fallbacks:
                lines.append(f"  eager: {f.line()}")
        return "\n".join(lines)


_LIBRARIES = tuple({sysconfig.get_paths()[k] + os.sep for k in ("purelib", "platlib", "stdlib")})


def _frame(fs) -> str:
    return f"{fs.filename}:{fs.lineno}" + (f" `{fs.line.strip()}`" if getattr(fs, "line", None) else "")


def _where(stack) -> str:
    """The source line of a graph break: the innermost frame of the user's own code, followed by the
    innermost frame when that is another (inside an installed library or the standard library)."""
    if not stack:
        return ""
    own = [fs for fs in stack if not fs.filename.startswith(_LIBRARIES)]
    inner = _frame(stack[-1])
    if not own or own[-1] is stack[-1]:
        return inner
    return f"{_frame(own[-1])}, in {inner}"


def _break_reasons(model, inputs) -> list:
    import torch._dynamo as dynamo
    out = dynamo.explain(model)(*inputs)
    return [(str(getattr(r, "reason", r)).strip().splitlines()[0], _where(getattr(r, "user_stack", None) or []))
            for r in out.break_reasons]


def explain(model, *inputs, dynamic: bool | None = None, **options) -> Explanation:
    """Compile ``model`` with the dlavm backend (``options`` as ``torch.compile``'s, e.g.
    ``target="tiny"``), call it once on ``inputs`` under ``torch.no_grad()`` and report the partition
    (:class:`Explanation`; ``print`` it)."""
    import torch._dynamo as dynamo
    be.Options.parse(options)    # a bad option is refused before anything runs
    result = Explanation()
    with torch.no_grad():
        dynamo.reset()
        try:
            result.breaks = _break_reasons(model, inputs)
        finally:
            dynamo.reset()
        try:
            with be.collect_reports() as collected:
                compiled = torch.compile(model, backend="dlavm", dynamic=dynamic, options=dict(options) or None)
                result.outputs = compiled(*inputs)
        finally:
            dynamo.reset()
    result.graphs = collected
    return result


__all__ = ["explain", "Explanation"]
