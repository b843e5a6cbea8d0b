"""Named passes over an IR module, run by a pass manager that times every
pass, can dump the IR after each one, and verifies the result.

A pass is one job with one docstring saying what holds afterwards (as in TVM
Relax). ``function_pass`` lifts a ``Function -> Function`` rewrite to a
module pass.

While a pass manager runs, :meth:`PassContext.current` is its context, so a
pass reads the target it compiles for (``PassContext.current().target``)
and a pattern-table pass reports per-rule hit counts and time
(``record_rules``) without either travelling through every pass signature.

A pass manager runs its passes with the cyclic garbage collector paused
(:func:`paused_gc`): compile time then grows with the graph, not with
everything else the process holds.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

from .node import Module
from .printer import print_module
from .traversal import post_order
from .verify import verify_module


@dataclass(frozen=True)
class Pass:
    """A named ``Module -> Module`` transformation."""

    name: str
    run: Callable
    doc: str = ""

    def __call__(self, mod: Module) -> Module:
        return self.run(mod)


def module_pass(name: str):
    """Decorator: make a ``Module -> Module`` function a ``Pass`` named ``name``."""
    def wrap(fn):
        return Pass(name, fn, (fn.__doc__ or "").strip())
    return wrap


def function_pass(name: str):
    """Decorator: apply a ``Function -> Function`` rewrite to every function of a module."""
    def wrap(fn):
        def run(mod: Module) -> Module:
            out = Module(params=mod.params, attrs=dict(mod.attrs))
            for f in mod.functions.values():
                out.add(fn(f))
            return out
        return Pass(name, run, (fn.__doc__ or "").strip())
    return wrap


@dataclass
class RuleRecord:
    """One rewrite rule of a pattern-table pass: how often it was tried and fired, and its time."""

    name: str
    tries: int
    hits: int
    seconds: float


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    rules: list = field(default_factory=list)  # [RuleRecord], for pattern-table passes


@dataclass
class PassContext:
    """Options for a pass-manager run.

    ``dump_dir``: write the IR text after each pass as ``NN-name.txt``.
    ``verify``: check well-formedness after each pass.
    ``on_progress``: called with ``(pass_name, index, total)`` before each pass.
    ``target``: the ``dlavm.target.Target`` compiled for, or None (a pass that needs one then
    uses its documented default).
    """

    dump_dir: str | None = None
    verify: bool = True
    on_progress: Callable | None = None
    records: list = field(default_factory=list)
    target: Any = None
    _rules: list = field(default_factory=list, repr=False)

    @staticmethod
    def current() -> "PassContext":
        """The context of the running pass manager, or a default one outside any run."""
        ctx = _CURRENT.get()
        return ctx if ctx is not None else PassContext()

    def record_rules(self, rules) -> None:
        """Attach ``rules`` (``RuleRecord``s) to the record of the pass now running."""
        self._rules.extend(rules)


_CURRENT: ContextVar = ContextVar("dlavm_pass_context", default=None)


_GC_LOCK = threading.Lock()
_gc_pauses = 0          # regions of paused_gc open now, in every thread
_gc_was_enabled = False  # whether the collector ran when the outermost region began


@contextmanager
def paused_gc():
    """Run the body with Python's cyclic garbage collector disabled; restore it on exit, error or not.

    A compile allocates hundreds of thousands of objects that stay alive (graph nodes, symbolic
    expressions, instruction records) and makes almost no reference cycles: reference counting frees
    its garbage. The collector would still run full collections as they pile up, and each one scans
    the whole heap (torch, the exported program, the model), so in a fresh process one pass could
    spend as long in the collector as in its own work. Cycles made in the region are collected after
    it. Regions nest and may overlap across threads: the collector restarts when the last open
    region closes, and only if it was enabled when the first one opened (a caller that disabled it
    keeps it disabled).
    """
    global _gc_pauses, _gc_was_enabled
    with _GC_LOCK:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _count_nodes(mod: Module) -> int:
    return sum(len(post_order(f.body)) for f in mod.functions.values())


class PassManager:
    """Runs passes in order; ``ctx.records`` gets one ``PassRecord`` per pass."""

    def __init__(self, passes):
        self.passes = list(passes)

    def run(self, mod: Module, ctx: PassContext | None = None) -> Module:
        ctx = ctx or PassContext()
        token = _CURRENT.set(ctx)
        try:
            with paused_gc():
                return self._run(mod, ctx)
        finally:
            _CURRENT.reset(token)

    def _run(self, mod: Module, ctx: PassContext) -> Module:
        if ctx.dump_dir:
            os.makedirs(ctx.dump_dir, exist_ok=True)
            _dump(ctx.dump_dir, 0, "input", mod)
        after = _count_nodes(mod)
        for i, p in enumerate(self.passes, 1):
            if ctx.on_progress:
                ctx.on_progress(p.name, i, len(self.passes))
            before = after  # the module this pass gets is the one the last pass returned
            ctx._rules = []
            t0 = time.perf_counter()
            mod = p(mod)
            dt = time.perf_counter() - t0
            if ctx.verify:
                verify_module(mod, after=p.name)
            after = _count_nodes(mod)
            ctx.records.append(PassRecord(p.name, dt, before, after, ctx._rules))
            ctx._rules = []
            if ctx.dump_dir:
                _dump(ctx.dump_dir, i, p.name, mod)
        return mod


def _dump(directory: str, index: int, name: str, mod: Module) -> None:
    path = os.path.join(directory, f"{index:02d}-{name}.txt")
    with open(path, "w") as f:
        f.write(print_module(mod) + "\n")


def format_records(records) -> str:
    """A table of pass timings; under a pattern-table pass, each rule that was tried, with its
    hits / tries and time (most expensive first)."""
    rows = [f"{'pass':<28}{'ms':>10}{'nodes':>14}"]
    for r in records:
        rows.append(f"{r.name:<28}{r.seconds * 1e3:>10.2f}{r.nodes_before:>7}->{r.nodes_after:<6}")
        for rule in sorted((x for x in r.rules if x.tries), key=lambda x: -x.seconds):
            rows.append(f"  {rule.name:<26}{rule.seconds * 1e3:>10.2f}{rule.hits:>7} hits / {rule.tries} tries")
    return "\n".join(rows)
