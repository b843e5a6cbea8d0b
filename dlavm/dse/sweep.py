"""Run a sweep into a results folder (doc/dse.md): the points not stored yet, on an engine, each record
stored as it arrives."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from dlavm.cache import source_fingerprint
from dlavm.target import get_target

from .engines import LocalEngine
from .evaluate import ModelJob
from .space import SweepSpec
from .store import ResultStore


@dataclass
class SweepOutcome:
    """What one run of a sweep did."""

    total: int                    # points in the sweep
    stored_before: int            # points already in the store when it started (resumed)
    computed: int = 0             # points this run evaluated
    counts: dict = field(default_factory=dict)   # status -> points this run evaluated
    seconds: float = 0.0


def model_job(spec: SweepSpec) -> ModelJob:
    """What every worker needs: the model, the base target, and the contexts it is imported at."""
    ctxs = sorted({p.ctx for p in spec.points()}) if spec.llm else []
    return ModelJob(spec.model, spec.target, spec.llm, tuple(ctxs))


def stored_spec(spec: SweepSpec, base) -> dict:
    """What the store keeps of the sweep: its definition, and the fingerprint of the base target's
    description (a target file edited between two runs makes another sweep, not a resumed one)."""
    return {**spec.to_json(), "target_fingerprint": base.fingerprint()}


def run_sweep(spec: SweepSpec, out_dir, engine=None, restart: bool = False, on_record=None,
              on_event=None) -> SweepOutcome:
    """Evaluate every point of ``spec`` not yet stored in ``out_dir`` on ``engine`` (default: a local pool on
    every core). ``on_record(record, done, total, eta_s)`` after each point is stored (``eta_s``: the
    estimated seconds left at this run's rate, None before the first point); ``on_event(kind, detail)`` as
    the engines describe (:mod:`dlavm.dse.engines`), plus ``"plan"`` before anything starts.

    A KeyboardInterrupt stops the workers and propagates: every point finished before it is stored,
    and the same call resumes."""
    engine = engine or LocalEngine()
    on_event = on_event or (lambda kind, detail: None)
    base = get_target(spec.target)   # a bad base target is refused before any worker starts
    points = spec.points()
    with ResultStore.open(out_dir, stored_spec(spec, base), source_fingerprint(), restart=restart) as store:
        done = store.done_ids()
        todo = [p for p in points if p.point_id not in done]
        out = SweepOutcome(total=len(points), stored_before=len(points) - len(todo))
        on_event("plan", f"{spec.describe()}; {out.stored_before} already in {out_dir}, {len(todo)} to run "
                         f"on {engine.describe()}")
        if not todo:
            return out
        t0 = time.perf_counter()

        def record(r: dict) -> None:
            store.add(r)
            out.computed += 1
            out.counts[r["status"]] = out.counts.get(r["status"], 0) + 1
            elapsed = time.perf_counter() - t0
            left = len(todo) - out.computed
            if on_record:
                on_record(r, out.stored_before + out.computed, out.total, elapsed / out.computed * left)

        try:
            engine.run(model_job(spec), todo, record, on_event)
        finally:
            out.seconds = time.perf_counter() - t0
    return out


__all__ = ["run_sweep", "SweepOutcome", "model_job", "stored_spec"]
