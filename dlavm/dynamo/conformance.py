"""The op conformance suite of the ``dlavm`` torch.compile backend (doc/ops.md).

One :class:`Case` per ATen overload the torch frontend converts (``dlavm.frontend.torch.CONVERTERS``;
the catalog is :mod:`dlavm.dynamo.op_cases`): a small function using the op, its inputs per dtype, and
the axes whose size ``n`` varies. Each case runs through ``torch.compile(backend="dlavm",
options={"target": "tiny", "cache_dir": False})`` and is compared with torch eager at the tolerance
of :data:`TOLERANCES` (per output dtype and per placement), at the shape edges of the target
(:func:`edges`), static (one compilation per size) and dynamic (the varied axes marked dynamic,
compiled once with ``dim_bound`` = the largest edge and run at every edge).

An overload torch.compile never hands to a backend has a row in :data:`UNREACHABLE` with the reason,
or, when it is CompositeImplicit (torch decomposes it before the backend sees it), a case whose
``reached_as`` names what torch hands over instead; the run checks both claims.

Ops the tiny target runs on the host only would be left to eager by the backend (a host-only program
costs a round trip and gains nothing), which would test nothing: such a case is *anchored*, its
function returns the op's outputs plus a device softmax over its first output (as float32, one
element per row: all ones, whatever the op computed), which keeps the subgraph a device program.
The op's own outputs are compared at the host tolerance. (A device add would not do: legalization
leaves an add of host arithmetic on the host, as the inside of a larger pattern.)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from . import backend as be
from .op_cases import CASES, F16, F32, UNREACHABLE, Case


#: (output dtype kind, placement) -> (atol, rtol): an output passes when every element has
#: |compiled - eager| <= atol + rtol * |eager| (NaN where eager has NaN). "device": computed by the
#: device in fp16 (activations are fp16 on the device whatever the input dtype); "host": computed by
#: the compiled program's host code (numpy, in the value's dtype) or by torch eager for a fallback.
#: Host float32 allows last-bit differences of the math library; host float16 a few fp16 roundings
#: (the host rounds every step of a decomposition to fp16, torch's fp16 CPU kernels compute in fp32
#: and round once). Integer and bool outputs are exact everywhere.
TOLERANCES = {
    ("float32", "device"): (1e-2, 1e-2),
    ("float16", "device"): (1e-2, 1e-2),
    ("float32", "host"): (1e-5, 1e-5),
    ("float16", "host"): (1e-3, 2e-3),
    ("int", "device"): (0.0, 0.0),
    ("int", "host"): (0.0, 0.0),
}
#: relative errors are reported over elements whose eager magnitude is at least this
REL_FLOOR = 1e-2


def tolerance(dtype: torch.dtype, placement: str) -> tuple:
    """(atol, rtol) of an output of ``dtype`` computed at ``placement`` (anything but "device" is host)."""
    kind = "float16" if dtype == F16 else "float32" if dtype.is_floating_point else "int"
    return TOLERANCES[(kind, "device" if placement == "device" else "host")]


def edges(target: str = "tiny") -> dict:
    """The shape edges of ``target``: 1, the vector tile (the MVM input width ``tin``) -1, 0, +1, an
    odd size between the tile and the bound, and the bound (twice the tile)."""
    from ..target import get_target
    tile = get_target(target).tin
    return {"1": 1, "tile-1": tile - 1, "tile": tile, "tile+1": tile + 1, "odd": tile + tile // 2 + 1,
            "bound": 2 * tile}


#: the static edges of the reduced grid (``make test``, which must stay within its time budget: each
#: static run is a compilation): for the first dtype of each case whose overload reaches the backend
#: itself; a CompositeImplicit case runs dynamic only, as the overloads it becomes have static runs of
#: their own. The full grid runs every edge static, for every dtype of every case.
REDUCED_STATIC = ("tile+1",)


def static_runs(case: Case, full: bool) -> list:
    """(dtype, edge) of the static runs of ``case`` in the full or the reduced grid."""
    sizes = edges()
    if full:
        return [(d, e) for d in case.dtypes for e in sizes if sizes[e] >= case.min_n]
    if case.reached_as:
        return []
    return [(case.dtypes[0], e) for e in REDUCED_STATIC if sizes[e] >= case.min_n]


# ------------------------------------------------------------------ running a case
@dataclass
class Run:
    """One (case, dtype, mode, size) comparison."""
    op: str
    dtype: str
    mode: str                  # "static" or "dynamic"
    edge: str                  # the edge's name (edges())
    n: int
    passed: bool = False
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: str = ""            # device / host / eager
    reason: str = ""           # why it failed (empty when it passed)
    host_ops: tuple = ()       # IR ops the compiled program ran on the host
    device_ops: tuple = ()     # device ops (IR names) the compiled program ran


def _anchored(fn):
    def anchored(*xs):
        outs = _outputs(fn(*xs))
        return (*outs, outs[0].to(F32).reshape(-1, 1).softmax(-1))
    return anchored


def _outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _compare(got, want, placement: str, device_last: bool):
    """(passed, max abs, max rel, why) of compiled outputs ``got`` against eager ``want``; the last
    output is the anchor (device tolerance) when ``device_last``."""
    got, want = _outputs(got), _outputs(want)
    if len(got) != len(want):
        return False, math.inf, math.inf, f"{len(got)} outputs, eager gives {len(want)}"
    worst_abs = worst_rel = 0.0
    why = ""
    for k, (a, b) in enumerate(zip(got, want)):
        where = "device" if device_last and k == len(got) - 1 else placement
        if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return False, math.inf, math.inf, f"output {k} is {_desc(a)}, eager gives {_desc(b)}"
        atol, rtol = tolerance(b.dtype, where)
        a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
        nan = torch.isnan(b64)
        if not torch.equal(torch.isnan(a64), nan):
            why = why or f"output {k}: NaN where eager has none (or none where it has)"
            worst_abs = math.inf
            continue
        diff = (a64 - b64).abs().masked_fill(nan, 0.0)
        if diff.numel():
            worst_abs = max(worst_abs, float(diff.max()))
            big = b64.abs() >= REL_FLOOR
            if big.any():
                worst_rel = max(worst_rel, float((diff[big] / b64.abs()[big]).max()))
            bad = diff > atol + rtol * b64.abs().masked_fill(nan, 0.0)
            if bad.any() and not why:
                i = int(bad.reshape(-1).nonzero()[0])
                why = (f"output {k} ({where} tolerance atol {atol:g}, rtol {rtol:g}): element {i} is "
                       f"{float(a64.reshape(-1)[i]):.6g}, eager {float(b64.reshape(-1)[i]):.6g}")
    return not why, worst_abs, worst_rel, why


def _desc(t) -> str:
    return f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__


def _placement(case: Case, graphs: list) -> tuple:
    """(where, reason, host IR ops, device IR ops) of the case's op in the graphs one run compiled."""
    ops = {op_name_of(o) for o in (case.reached_as or (case.op,))}
    host, device, eager = set(), set(), []
    for g in graphs:
        if g.eager_reason:
            eager.append(g.eager_reason)
        for s in g.subgraphs:
            if s.how == "eager":
                if ops & set(s.ops):
                    eager.append(s.reason)
                continue
            for op, where in s.placement:
                (device if where == "device" else host).add(op.split("#")[0])
        eager += [f"{f.op}: {f.reason}" for f in g.fallbacks if f.op in ops]
    if eager:
        return "eager", eager[0], tuple(sorted(host)), tuple(sorted(device))
    if case.device:
        return ("device" if device else "host"), "", tuple(sorted(host)), tuple(sorted(device))
    # an anchored case whose program runs nothing but the anchor: the op compiled to nothing (an
    # identity, a view the layout absorbs)
    where = "host" if host else "device" if device - {"dev.softmax"} else "folded"
    return where, "", tuple(sorted(host)), tuple(sorted(device))


def op_name_of(overload: str) -> str:
    """``aten.add`` for ``aten.add.Tensor`` (the name the backend's reports use)."""
    parts = overload.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else overload


def _reached_check(case: Case, graphs: list) -> str:
    """Why the ATen graphs handed over do not show what the case claims ("" when they do)."""
    seen = {o for g in graphs for o in g.aten}
    if case.reached_as:
        if case.op in seen:
            return f"{case.op} reached the backend, yet the catalog says torch decomposes it"
        missing = [o for o in case.reached_as if o not in seen]
        return f"{', '.join(missing)} did not reach the backend (it got {', '.join(sorted(seen))})" if missing else ""
    return "" if case.op in seen else f"{case.op} did not reach the backend (it got {', '.join(sorted(seen))})"


def _finish(run: Run, case: Case, graphs: list, got, want, fresh_ok: str = "") -> Run:
    run.where, eager_reason, run.host_ops, run.device_ops = _placement(case, graphs)
    ok, run.max_abs, run.max_rel, why = _compare(got, want, run.where, not case.device)
    reached = _reached_check(case, graphs) if graphs else ""
    if run.where == "eager":
        why = why or f"ran in eager: {eager_reason}"
    elif case.device and run.where != "device":
        why = why or f"expected on the device, the compiled program ran it on the host ({', '.join(run.host_ops)})"
    run.reason = why or reached or fresh_ok
    run.passed = not run.reason
    return run


def _options(bound: int | None) -> dict:
    opts = {"target": "tiny", "cache_dir": False}
    if bound is not None:
        opts["dim_bound"] = bound
    return opts


def _failure(e: Exception) -> str:
    """A run's failure in one line: the exception's class and the first line of its message."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _inputs(case: Case, n: int, dtype, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return case.make(n, dtype, g)


def _callable(case: Case, dtype):
    fn = case.build(dtype)
    return fn if case.device else _anchored(fn)


def _seed(case: Case, dtype, n: int) -> int:
    return (sum(map(ord, case.op)) * 31 + sum(map(ord, str(dtype))) * 7 + n) % 2**31


def run_static(case: Case, dtype, edge: str, n: int) -> Run:
    """Compile ``case`` for size ``n`` (static shapes) and compare one call with eager."""
    import torch._dynamo as dynamo
    run = Run(case.op, _dtype(dtype), "static", edge, n)
    dynamo.reset()
    fn = _callable(case, dtype)
    xs = _inputs(case, n, dtype, _seed(case, dtype, n))
    try:
        with torch.no_grad(), be.collect_reports() as graphs:
            want = fn(*xs)
            got = torch.compile(fn, backend="dlavm", dynamic=False, options=_options(None))(*xs)
    except Exception as e:  # noqa: BLE001 -- a failure of the op is a recorded result
        run.reason = _failure(e)
        return run
    finally:
        dynamo.reset()
    return _finish(run, case, graphs, got, want)


def run_dynamic(case: Case, dtype, sizes: dict) -> list:
    """Compile ``case`` once with its ``dims`` dynamic (``dim_bound`` = the largest size) and run it at
    every size of ``sizes`` (edge name -> n). Size 1 is not marked dynamic: dynamo specialises sizes 0
    and 1, so that call compiles a static graph of its own. Any other size within the bound must reuse
    the first program: a compilation it causes is a recorded failure."""
    import torch._dynamo as dynamo
    bound = max(sizes.values())
    first = next(k for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v < bound) if len(sizes) > 1 else None
    order = ([first] if first else []) + [k for k in sizes if k != first]
    dynamo.reset()
    fn = _callable(case, dtype)
    compiled = torch.compile(fn, backend="dlavm", dynamic=None, options=_options(bound))
    out, dyn_graphs = [], []
    compiled_once = False
    try:
        for edge in order:
            n = sizes[edge]
            run = Run(case.op, _dtype(dtype), "dynamic", edge, n)
            xs = _inputs(case, n, dtype, _seed(case, dtype, n))
            if n > 1:
                for i, axis in case.dims:
                    torch._dynamo.mark_dynamic(xs[i], axis)
            before = be.STATS.compiles
            try:
                with torch.no_grad(), be.collect_reports() as graphs:
                    want = fn(*xs)
                    got = compiled(*xs)
            except Exception as e:  # noqa: BLE001 -- a failure of the op is a recorded result
                run.reason = _failure(e)
                out.append(run)
                continue
            grew = ""
            if n > 1 and compiled_once and be.STATS.compiles > before:
                grew = f"size {n} within the bound {bound} compiled {be.STATS.compiles - before} new program(s)"
            if n > 1 and be.STATS.compiles > before:
                compiled_once = True
            if n > 1:   # a call that dynamo did not hand over again ran the dynamic graph of the first call
                graphs = dyn_graphs = graphs or dyn_graphs
            out.append(_finish(run, case, graphs, got, want, grew))
    finally:
        dynamo.reset()
    return out


def _dtype(dtype) -> str:
    return str(dtype).replace("torch.", "")


# ------------------------------------------------------------------ the whole suite
def full_grid() -> bool:
    """Whether the full grid runs (every edge static too): ``DLAVM_OPS_FULL=1``."""
    return os.environ.get("DLAVM_OPS_FULL", "") not in ("", "0")


def run_case(case: Case, full: bool = False, on_run=None) -> list:
    """Every run of ``case``: per dtype, dynamic at every edge; then its :func:`static_runs`."""
    sizes = {k: v for k, v in edges().items() if v >= case.min_n}
    runs = []
    for dtype in case.dtypes:
        for r in run_dynamic(case, dtype, sizes):
            runs.append(r)
            on_run and on_run(r)
    for dtype, edge in static_runs(case, full):
        r = run_static(case, dtype, edge, sizes[edge])
        runs.append(r)
        on_run and on_run(r)
    return runs


@dataclass
class Row:
    """The conformance table's row of one overload."""
    op: str
    converted: str              # "yes", "as <overloads>" or "unreachable"
    device: str = ""            # where the runs put it
    host_ops: str = ""
    shapes: str = ""
    dtypes: str = ""
    runs: int = 0
    failed: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    reason: str = ""
    note: str = ""

    @property
    def status(self) -> str:
        if self.converted == "unreachable":
            return "n/a"
        return "pass" if self.runs and not self.failed else "FAIL"


def row_of(case: Case, runs: list) -> Row:
    ok = [r for r in runs if r.passed]
    bad = [r for r in runs if not r.passed]
    wheres = sorted({r.where for r in runs if r.where})
    host = sorted({op for r in runs for op in r.host_ops})
    sizes = sorted({r.n for r in runs})
    fin = [r for r in runs if math.isfinite(r.max_abs)]
    return Row(case.op, "yes" if not case.reached_as else "as " + ", ".join(case.reached_as),
               "/".join(wheres), ", ".join(host), ",".join(map(str, sizes)),
               ",".join(sorted({r.dtype for r in runs})), len(runs), len(bad),
               max((r.max_abs for r in fin), default=0.0) if len(fin) == len(runs) else math.inf,
               max((r.max_rel for r in fin), default=0.0),
               "; ".join(sorted({f"{r.dtype} {r.mode} n={r.n}: {r.reason}" for r in bad}))[:400] if bad else
               f"{len(ok)} runs", case.note)


def coverage_gaps() -> list:
    """Converted overloads with neither a case nor an :data:`UNREACHABLE` reason (should be none),
    and catalog entries for overloads the frontend does not convert."""
    from ..frontend.torch import CONVERTERS
    converted = {str(k) for k in CONVERTERS}
    listed = set(CASES) | set(UNREACHABLE)
    return ([f"{op}: converted, but the conformance catalog has no case for it" for op in sorted(converted - listed)]
            + [f"{op}: in the catalog, but the frontend does not convert it" for op in sorted(listed - converted)])


def run_all(full: bool = False, ops=None, on_case=None, on_run=None) -> list:
    """[Row] of every converted overload (or of ``ops``), in name order."""
    from ..frontend.torch import CONVERTERS
    rows = []
    names = sorted({str(k) for k in CONVERTERS} | set(CASES)) if ops is None else list(ops)
    for i, op in enumerate(names):
        on_case and on_case(i, len(names), op)
        if op in UNREACHABLE:
            rows.append(Row(op, "unreachable", reason=UNREACHABLE[op]))
        elif op in CASES:
            rows.append(row_of(CASES[op], run_case(CASES[op], full, on_run)))
        else:
            rows.append(Row(op, "no case", reason="converted, but the catalog has no case for it", failed=1))
    return rows


def _fmt(v: float) -> str:
    return "-" if v == 0 else "inf" if not math.isfinite(v) else f"{v:.2e}"


def format_table(rows: list, markdown: bool = False) -> str:
    head = ["op", "converted", "runs on", "host ops of the program", "sizes", "dtypes", "runs", "max abs", "max rel",
            "result"]
    body = [[r.op, r.converted, r.device or "-", r.host_ops or "-", r.shapes or "-", r.dtypes or "-",
             str(r.runs) if r.runs else "-", _fmt(r.max_abs), _fmt(r.max_rel),
             f"FAIL ({r.failed}): {r.reason}" if r.status == "FAIL" else f"n/a: {r.reason}" if r.status == "n/a" else
             r.status + (f" ({r.note})" if r.note else "")] for r in rows]
    if markdown:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(esc(c) for c in b) + " |" for b in body])
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if i < len(head) - 1 else 0 for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head] + body)


def summary(rows: list) -> str:
    tested = [r for r in rows if r.converted != "unreachable"]
    failed = [r for r in tested if r.status == "FAIL"]
    runs = sum(r.runs for r in tested)
    where = {}
    for r in tested:
        for w in (r.device or "-").split("/"):
            where[w] = where.get(w, 0) + 1
    return (f"{len(rows)} converted overloads: {len(tested) - len(failed)} pass, {len(failed)} fail, "
            f"{len(rows) - len(tested)} not reachable from torch.compile; {runs} runs; ops placed "
            + ", ".join(f"{k} {v}" for k, v in sorted(where.items())))


def markdown_doc(rows: list, full: bool, seconds: float) -> str:
    grid = "full grid (every edge static and dynamic)" if full else \
        (f"reduced grid: dynamic at every edge for every dtype, static at {', '.join(REDUCED_STATIC)} for the "
         f"first dtype of each case that reaches the backend itself")
    e = ", ".join(f"{k} = {v}" for k, v in edges().items())
    tol = "\n".join(f"| {k[0]} | {k[1]} | {v[0]:g} | {v[1]:g} |" for k, v in TOLERANCES.items())
    return f"""# ATen op conformance of the torch.compile backend

Generated by `dlavm ops --conformance{" --full" if full else ""} --write doc/ops.md` ({grid}, {seconds:.0f} s);
do not edit by hand. `make test` runs the reduced grid (`tests/ops/test_conformance.py`); `DLAVM_OPS_FULL=1 pytest
tests/ops` and `dlavm ops --conformance --full` run the full one.

Every ATen overload the torch frontend converts (`dlavm ops --aten`) has a row. Each case
(`dlavm/dynamo/op_cases.py`) is a small function using the op, compiled with
`torch.compile(backend="dlavm", options={{"target": "tiny", "cache_dir": False}})` and compared with
torch eager, per dtype, static and dynamic, at the shape edges of the tiny target:
{e}.
Dynamic: the varied axes are marked dynamic and compiled once with `dim_bound` = {max(edges().values())}; every
other size within the bound must reuse that program (size 1 compiles a static graph of its own:
dynamo specialises sizes 0 and 1).

- converted: `yes` when torch.compile hands the overload itself to the backend; `as X` when torch
  decomposes it first (CompositeImplicit) and the backend receives X (checked on every run);
  `unreachable` with the reason when it never reaches a backend as an op with an output.
- runs on: where the op ran, from the compiled program's report: `device`, `host` (the compiled
  program's host code), `folded` (it compiled to nothing: an identity or a view the device op's
  layout absorbs), `eager` (left to torch: a failure, the converter was not exercised). A
  host-only op is anchored (its case also returns a device softmax of its result, one element per
  row), since the backend leaves a subgraph without device work to eager; the anchor's `reshape`
  and `cast` show among the host ops.
- max abs / max rel: the worst error over all runs (rel over elements with |eager| >= {REL_FLOOR:g}).

Tolerance: |compiled - eager| <= atol + rtol * |eager|, by output dtype and placement (device
activations are fp16 whatever the input dtype; integer and bool outputs are exact):

| dtype | placement | atol | rtol |
|---|---|---|---|
{tol}

{summary(rows)}.

{format_table(rows, markdown=True)}
"""


__all__ = ["Case", "CASES", "UNREACHABLE", "TOLERANCES", "tolerance", "edges", "Run", "Row", "run_case",
           "run_static", "run_dynamic", "run_all", "coverage_gaps", "format_table", "summary",
           "markdown_doc", "full_grid", "static_runs", "REDUCED_STATIC"]
