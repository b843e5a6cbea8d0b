"""Design-space exploration over hardware targets (doc/dse.md): sweep target descriptions, weight
formats and contexts; compile and profile each point in timing-only mode; store the results; report the
Pareto fronts.

``space`` defines a sweep and its points (``sweep_input`` reads one from the command line and sweep
files), ``evaluate`` computes one point, ``engines`` runs points on a local process pool or on Ray,
``store`` keeps the results (SQLite, resumable), ``sweep`` ties them together and ``report`` reads
them back (tables, Pareto fronts, plots).
"""
from .engines import EngineError, JobError, LocalEngine, RayEngine
from .space import SweepError, SweepSpec
from .store import ResultStore, StoreError
from .sweep import SweepOutcome, run_sweep
from .sweep_input import build_spec

__all__ = ["SweepSpec", "SweepError", "build_spec", "run_sweep", "SweepOutcome", "LocalEngine", "RayEngine",
           "JobError", "EngineError", "ResultStore", "StoreError"]
