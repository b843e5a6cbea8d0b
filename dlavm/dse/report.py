"""Reading a sweep's results (doc/dse.md "Reading results"): the text report, the Pareto fronts, plots, CSV.

Input is what the store returns: the sweep's definition (``SweepSpec.to_json()``) and one record per
finished point (doc/dse.md "What a point records")::

    {"point_id": str, "index": int, "params": {axis: value}, "status": "ok" | "refused" | "failed",
     "reason": str | None, "metrics": {...} (empty unless ok), "compile_s": float, "sim_s": float,
     "worker": "host:pid"}

Everything here is a pure function of the records' points, statuses, reasons and metrics: rows are
taken in ``index`` order and wall times and workers never reach the report or the plots, so two
engines (or two runs) that computed the same points give the same text and the same PNG bytes.

**The Pareto front** of tokens/s against a cost ``x`` (a resource, or device bytes): a point is on it
when no other ok point has at least its tokens/s with no more ``x`` and is strictly better in one of
the two. Points with equal ``(x, tokens/s)`` do not dominate each other, so such ties are all on the
front or all off it.

matplotlib is imported when a plot is drawn; without it :class:`ReportError` says so in one line.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from dlavm.compare.trace_plot import require_matplotlib

from .evaluate import METRICS, STATUSES   # the record's statuses and metrics (in the order the CSV writes them)
from .space import SPEC_KEYS, SweepError, SweepSpec

#: the resources a front can be drawn against (``dlavm dse report --resource``)
RESOURCES = ("lut", "ff", "dsp", "bram36", "uram")
#: the cost a front can be drawn against besides a metric: the weights pool plus the KV cache buffers
BYTES = "bytes"
#: how many points "best by tokens/s" lists
TOP = 10
#: plot geometry: pixels are inches x DPI, exactly (no tight bounding box), so a test can check the size
DPI = 100
PARETO_INCHES = (13, 5)
PANEL_INCHES = (5, 4)
PANEL_COLUMNS = 3
#: columns of the record kept in the CSV after the metrics (per-run figures: they differ between runs)
RUN_COLUMNS = ("compile_s", "sim_s", "worker")


class ReportError(ValueError):
    """A result cannot be read or drawn: names the point, the field, the value and the rule, in one line."""


# ---------------------------------------------------------------- records

def _point_name(row: dict) -> str:
    idx = row.get("index") if isinstance(row, dict) else None
    return f"point #{idx}" if isinstance(idx, int) and not isinstance(idx, bool) else "a point"


def check_rows(rows) -> list[dict]:
    """``rows`` sorted by ``index``, each checked for the shape a record has; :class:`ReportError` otherwise."""
    if not isinstance(rows, (list, tuple)):
        raise ReportError(f"results: expected a list of point records, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReportError(f"results: record {i} is a {type(row).__name__}, must be a dict")
        idx = row.get("index")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise ReportError(f"results: record {i}: index {idx!r} must be an integer >= 0")
        if row.get("status") not in STATUSES:
            raise ReportError(f"{_point_name(row)}: status {row.get('status')!r} must be one of {', '.join(STATUSES)}")
        for key in ("params", "metrics"):
            if not isinstance(row.get(key, {}), dict):
                raise ReportError(f"{_point_name(row)}: {key} must be a dict, got {type(row[key]).__name__}")
        reason = row.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ReportError(f"{_point_name(row)}: reason {reason!r} must be a string or null")
    return sorted(rows, key=lambda r: r["index"])


def _number(row: dict, name: str) -> float:
    """Metric ``name`` of ok record ``row`` (``bytes``: weight_bytes + kv_bytes), a finite number."""
    if name == BYTES:
        return _number(row, "weight_bytes") + _number(row, "kv_bytes")
    value = (row.get("metrics") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportError(f"{_point_name(row)}: metrics.{name} is {value!r}, must be a finite number")
    return value


def _metric(row: dict, name: str):
    """Metric ``name`` of ``row`` when it is a finite number, else None (tables show ``-``)."""
    try:
        return _number(row, name)
    except ReportError:
        return None


def _check_cost(x: str, what: str = "x") -> None:
    if x != BYTES and x not in METRICS:
        raise ReportError(f"{what}: {x!r} is not a metric; use {BYTES!r} or one of {', '.join(METRICS)}")


def pareto_front(rows, x: str, y: str = "tokens_per_s") -> list[dict]:
    """The ok rows on the front of ``y`` (maximised) against ``x`` (minimised), sorted by ``x``.

    ``x`` is a metric name or ``"bytes"`` (weight_bytes + kv_bytes). A row is on the front when no other
    ok row has ``x' <= x`` and ``y' >= y`` with one of them strict; rows with equal ``(x, y)`` are all on
    it or all off it. Ties in ``x`` on the front (equal points) keep ``index`` order. Raises
    :class:`ReportError` for an unknown name or an ok row whose ``x`` or ``y`` is not a finite number.
    """
    _check_cost(x, "x")
    _check_cost(y, "y")
    ok = [(_number(r, x), _number(r, y), r) for r in check_rows(rows) if r["status"] == "ok"]
    ok.sort(key=lambda t: (t[0], -t[1], t[2]["index"]))
    front, best = [], -math.inf          # best: the highest y at any strictly smaller x
    i = 0
    while i < len(ok):
        j = i
        while j < len(ok) and ok[j][0] == ok[i][0]:
            j += 1
        top = ok[i][1]                   # the group of equal x is sorted by y, highest first
        if top > best:                   # not dominated by a smaller x with at least this y
            front.extend(r for _, yv, r in ok[i:j] if yv == top)
            best = top
        i = j
    return front


# ---------------------------------------------------------------- the sweep's axes

def _key(value) -> str:
    """A hashable, canonical stand-in for a parameter value (values compare as their JSON)."""
    return json.dumps(value, sort_keys=True)


def _spec_axes(spec) -> list[tuple[str, list | None, bool]]:
    """``[(name, values or None (a continuous range), varies by definition)]`` of the sweep definition, in
    its order, read by :meth:`SweepSpec.from_json` (the one reader of that format; the store's other keys,
    such as ``target_fingerprint``, are not the report's)."""
    if not isinstance(spec, dict):
        raise ReportError(f"sweep definition: expected an object, got {type(spec).__name__}")
    try:
        sweep = SweepSpec.from_json({k: v for k, v in spec.items() if k in SPEC_KEYS})
    except SweepError as e:
        raise ReportError(str(e)) from None
    varied = set(sweep.varied())
    return [(a.name, list(a.grid_values()) if a.size() is not None else None, a.name in varied)
            for a in sweep.axes]


def varied_axes(spec: dict, rows: list[dict]) -> list[str]:
    """The axes that vary: those the spec gives more than one value, and any whose value differs between
    rows; in the spec's order, then (names only the rows know) sorted."""
    axes = _spec_axes(spec)
    seen: dict[str, set] = {}
    for r in rows:
        for name, value in (r.get("params") or {}).items():
            seen.setdefault(name, set()).add(_key(value))
    names = [n for n, _, varies in axes if varies or len(seen.get(n, ())) > 1]
    known = {n for n, _, _ in axes}
    names += sorted(n for n, vals in seen.items() if n not in known and len(vals) > 1)
    return names


def _axis_values(spec: dict, rows: list[dict], name: str) -> list:
    """The values axis ``name`` takes, in the spec's order, then those only the rows hold (sorted)."""
    given = next((v for n, v, _ in _spec_axes(spec) if n == name), None) or []
    keys = {_key(v) for v in given}
    extra = {}
    for r in rows:
        v = (r.get("params") or {}).get(name)
        if name in (r.get("params") or {}) and _key(v) not in keys:
            extra[_key(v)] = v
    return list(given) + [extra[k] for k in sorted(extra)]


# ---------------------------------------------------------------- the text report

_BYTE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in _BYTE_UNITS:
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_param(value) -> str:
    return value if isinstance(value, str) else _key(value)


def _params_text(row: dict, names: list[str]) -> str:
    params = row.get("params") or {}
    shown = names or list(params)
    return " ".join(f"{n}={_fmt_param(params[n])}" for n in shown if n in params) or "(no parameters)"


def _table(header: list[str], rows: list[list[str]], left: set[int]) -> list[str]:
    """Aligned lines: columns in ``left`` left-aligned (text), the others right-aligned (numbers)."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header)] + [line(r) for r in rows]


def _part_check(part: str | None):
    """``row -> [resource kinds over the part]`` for ``part`` (its ``part`` attribute names it), or None."""
    if part is None:
        return None
    from dlavm.target.resources import PARTS, Resources, exceeded
    if part not in PARTS:
        raise ReportError(f"part: unknown FPGA part {part!r}; known: {', '.join(sorted(PARTS))}")

    def over(row: dict) -> list[str]:
        return list(exceeded(Resources(**{k: int(_number(row, k)) for k in RESOURCES}), part))
    over.part = part
    return over


def _point_table(rows: list[dict], names: list[str], cost: str, over) -> list[str]:
    header = ["#", *names, "tokens/s", "prefill tok/s", "% port peak", "% device peak",
              "bytes" if cost == BYTES else cost, "stream bytes"]
    if over is not None:
        header.append(f"over {over.part}")
    body = []
    for r in rows:
        params = r.get("params") or {}
        cells = [str(r["index"]), *(_fmt_param(params[n]) if n in params else "-" for n in names),
                 _fmt(_metric(r, "tokens_per_s"), ",.2f"), _fmt(_metric(r, "prefill_tokens_per_s"), ",.1f"),
                 *(_fmt(None if _metric(r, k) is None else 100 * _metric(r, k), ".1f")
                   for k in ("roofline_fraction", "device_roofline_fraction")),
                 _fmt_bytes(_metric(r, BYTES)) if cost == BYTES else _fmt(_metric(r, cost), ",.0f"),
                 _fmt_bytes(_metric(r, "stream_bytes"))]
        if over is not None:
            cells.append(",".join(over(r)) or "-")
        body.append(cells)
    left = {1 + i for i, n in enumerate(names)
            if any(isinstance((r.get("params") or {}).get(n), str) for r in rows)}
    if over is not None:
        left.add(len(header) - 1)
    return ["  " + line for line in _table(header, body, left)]


#: What differs between reasons of one kind (a derived target's name, addresses, sizes), and what stands for it.
_REASON_VALUES = ((re.compile(r"target '[^']*'"), "target '...'"), (re.compile(r"0x[0-9a-fA-F]+"), "..."),
                  (re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+)?(?![\w.])"), "..."))


def reason_kind(reason: str | None) -> str:
    """The first line of ``reason`` with what differs from point to point (the derived target's name,
    addresses, sizes) replaced by ``...``: the key that groups refusals of one kind."""
    text = ((reason or "").strip().splitlines() or ["(no reason recorded)"])[0]
    for pattern, stand_in in _REASON_VALUES:
        text = pattern.sub(stand_in, text)
    return text


def _reasons(rows: list[dict], status: str, names: list[str]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == status:
            groups.setdefault(reason_kind(r.get("reason")), []).append(r)
    if not groups:
        return []
    n = sum(len(g) for g in groups.values())
    lines = [f"{status} ({n} point{'s' * (n != 1)}, {len(groups)} reason{'s' * (len(groups) != 1)})"]
    width = len(str(max(len(g) for g in groups.values())))
    for reason, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"  {len(group):>{width}}  {reason}")
        ex = group[0]
        lines.append(f"  {'':>{width}}  e.g. #{ex['index']} {_params_text(ex, names)}: "
                     f"{((ex.get('reason') or '').strip().splitlines() or [''])[0]}")
    return lines + [""]


def format_report(spec: dict, rows: list[dict], resource: str = "lut", part: str | None = None,
                  top: int = TOP) -> str:
    """The terminal report of a sweep (doc/dse.md "Reading results"), ending in a newline.

    A header (model, base target, how many points are ok, refused and failed, the varied axes), the
    refused and failed points grouped by reason (first line of the reason) with a count and one example
    each, the ``top`` points by tokens/s, and the Pareto fronts of tokens/s against ``resource`` and
    against device bytes, as aligned tables of the varied parameters and the figures. ``part`` (an FPGA
    part of :data:`dlavm.target.resources.PARTS`) adds a column naming the resources a point exceeds.
    No rows, or no ok row, give a report that says so. Raises :class:`ReportError` for an unknown
    resource or part, or a malformed record.
    """
    if resource not in RESOURCES:
        raise ReportError(f"resource: {resource!r} is not one of {', '.join(RESOURCES)}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ReportError(f"top: {top!r} must be an integer >= 1")
    axes = _spec_axes(spec)
    rows = check_rows(rows)
    over = _part_check(part)
    names = varied_axes(spec, rows)
    model, target = spec.get("model", "?"), spec.get("target", "?")
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    lines = [f"dse report: {model} on {target}",
             f"{len(rows)} point{'s' * (len(rows) != 1)} stored: "
             + ", ".join(f"{counts[s]} {s}" for s in STATUSES)]
    if names:
        sizes = {n: len({_key((r.get("params") or {}).get(n)) for r in rows if n in (r.get("params") or {})})
                 for n in names}
        lines.append("varied: " + ", ".join(f"{n} ({sizes[n]} value{'s' * (sizes[n] != 1)})" for n in names))
    fixed = [f"{n}={_fmt_param(v[0])}" for n, v, _ in axes if n not in names and v]
    if fixed:
        lines.append("fixed: " + " ".join(fixed))
    ok = [r for r in rows if r["status"] == "ok"]
    if over is not None and ok:
        hits = {r["index"]: over(r) for r in ok}
        n_over = sum(bool(h) for h in hits.values())
        kinds = {k: sum(k in h for h in hits.values()) for k in RESOURCES}
        detail = ", ".join(f"{k} {c}" for k, c in kinds.items() if c)
        lines.append(f"part {part}: {n_over} of {len(ok)} ok points exceed it" + (f" ({detail})" if detail else ""))
    lines.append("")
    if not rows:
        return "\n".join(lines + ["no points stored yet: nothing to report", ""])
    lines += _reasons(rows, "refused", names) + _reasons(rows, "failed", names)
    if not ok:
        return "\n".join(lines + ["no ok point: no best points and no Pareto front", ""])

    best = sorted(ok, key=lambda r: (-_number(r, "tokens_per_s"), r["index"]))[:top]
    lines.append(f"best {len(best)} of {len(ok)} ok point{'s' * (len(ok) != 1)} by tokens/s")
    lines += _point_table(best, names, resource, over) + [""]
    for cost, what in ((resource, resource), (BYTES, "device bytes (weights + KV cache)")):
        front = pareto_front(ok, cost)
        lines.append(f"Pareto front: tokens/s vs {what}: {len(front)} of {len(ok)} ok points")
        lines += _point_table(front, names, cost, over) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots

def _empty_panel(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _log_useful(values) -> bool:
    """A log axis reads better when the values are positive and span more than a factor of 20."""
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def _pareto_panel(ax, ok: list[dict], cost: str, label: str, scale: float, capacity=None) -> None:
    if not ok:
        _empty_panel(ax, "no ok point to plot")
        return
    xs = [_number(r, cost) / scale for r in ok]
    ax.scatter(xs, [_number(r, "tokens_per_s") for r in ok], s=14, color="0.65", label="ok points", zorder=2)
    front = pareto_front(ok, cost)
    fx = [_number(r, cost) / scale for r in front]
    fy = [_number(r, "tokens_per_s") for r in front]
    ax.plot(fx, fy, drawstyle="steps-post", color="tab:red", lw=1.2, zorder=3)
    ax.scatter(fx, fy, s=26, color="tab:red", label=f"Pareto front ({len(front)})", zorder=4)
    labels: dict[tuple, list[str]] = {}          # equal points share one label
    for r, x, y in zip(front, fx, fy):
        labels.setdefault((x, y), []).append(f"#{r['index']}")
    for (x, y), names in labels.items():
        ax.annotate(",".join(names), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    if capacity is not None:
        ax.axvline(capacity[1] / scale, color="black", ls="--", lw=1, label=capacity[0])
    if _log_useful(xs + ([capacity[1] / scale] if capacity else [])):
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("tokens/s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _params_panel(plt, ax, spec: dict, ok: list[dict], rows: list[dict], axis: str, names: list[str]) -> None:
    drawn = [r for r in ok if axis in (r.get("params") or {})]
    values = _axis_values(spec, rows, axis)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        position = {_key(v): v for v in values}
    else:                                # categorical (weights, or any axis with a non-number): its order
        position = {_key(v): i for i, v in enumerate(values)}
    others = [n for n in names if n != axis]
    lines: dict[str, list[dict]] = {}
    for r in drawn:
        lines.setdefault(_key([(r.get("params") or {}).get(n) for n in others]), []).append(r)
    for i, (_, group) in enumerate(sorted(lines.items())):
        group.sort(key=lambda r: position[_key(r["params"][axis])])
        label = _params_text(group[0], others) if others else None
        ax.plot([position[_key(r["params"][axis])] for r in group], [_number(r, "tokens_per_s") for r in group],
                marker="o", ms=4, lw=1, color=plt.cm.tab10(i % 10), label=label)
    if numeric:
        if _log_useful(values):
            ax.set_xscale("log", base=2)
        if len(values) <= 12:
            ax.set_xticks(values, [_fmt_param(v) for v in values])
            ax.minorticks_off()
    else:
        ax.set_xticks(range(len(values)), [_fmt_param(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(axis)
    ax.set_ylabel("tokens/s")
    ax.set_title(f"tokens/s vs {axis}" + (f" ({len(lines)} lines)" if len(lines) > 10 else ""), fontsize=9)
    ax.grid(True, alpha=0.3)
    if others and 1 < len(lines) <= 10:
        ax.legend(fontsize=6, loc="best")
    if not drawn:
        _empty_panel(ax, "no ok point to plot")


def write_plots(spec: dict, rows: list[dict], out_dir, resource: str = "lut", part: str | None = None) -> list[Path]:
    """Draw ``out_dir/pareto.png`` and ``out_dir/params.png``; returns their paths.

    pareto.png: two panels, tokens/s against ``resource`` and against device bytes (in the unit of the
    largest), every ok point in grey and the Pareto front in red (a step line, each point labelled with
    its index); an x axis is logarithmic when the points span more than a factor of 20; ``part`` adds
    the part's capacity line to the resource panel.
    params.png: one panel per varied axis (categorical axes such as ``weights`` in the sweep's order),
    tokens/s against its values, a line joining the points equal in every other varied axis. Refused and
    failed points are not drawn; without ok points the panels say so. Sizes: :data:`PARETO_INCHES` and
    :data:`PANEL_INCHES` per panel (:data:`PANEL_COLUMNS` per row) at :data:`DPI`. Deterministic: the
    same records, in any order, give the same bytes.
    """
    if resource not in RESOURCES:
        raise ReportError(f"resource: {resource!r} is not one of {', '.join(RESOURCES)}")
    _spec_axes(spec)
    rows = check_rows(rows)
    capacity = None
    if part is not None:
        _part_check(part)
        from dlavm.target.resources import PARTS
        capacity = (f"{part} capacity", getattr(PARTS[part][0], resource))
    plt = require_matplotlib("drawing the dse plots")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r["status"] == "ok"]
    title = f"{spec.get('model', '?')} on {spec.get('target', '?')}: {len(ok)} ok of {len(rows)} points"

    fig, (ax_r, ax_b) = plt.subplots(1, 2, figsize=PARETO_INCHES, dpi=DPI)
    _pareto_panel(ax_r, ok, resource, resource.upper() if resource != "bram36" else "BRAM36", 1.0, capacity)
    top = max((_number(r, BYTES) for r in ok), default=0)
    unit, scale = next(((u, float(n)) for u, n in _BYTE_UNITS if top >= n), ("B", 1.0))
    _pareto_panel(ax_b, ok, BYTES, f"device bytes: weights + KV cache ({unit})", scale)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    pareto = out_dir / "pareto.png"
    fig.savefig(pareto, dpi=DPI)
    plt.close(fig)

    names = varied_axes(spec, rows)
    cols = max(1, min(PANEL_COLUMNS, len(names)))
    nrows = max(1, math.ceil(len(names) / cols))
    fig, axs = plt.subplots(nrows, cols, figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * nrows), dpi=DPI,
                            squeeze=False)
    flat = [a for row in axs for a in row]
    if not names:
        _empty_panel(flat[0], "no axis varies" if ok else "no ok point to plot")
    for ax, axis in zip(flat, names):
        _params_panel(plt, ax, spec, ok, rows, axis, names)
    for ax in flat[len(names) or 1:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    params = out_dir / "params.png"
    fig.savefig(params, dpi=DPI)
    plt.close(fig)
    return [pareto, params]


# ---------------------------------------------------------------- CSV

def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)           # shortest text that reads back to the same float
    if isinstance(value, (list, dict, bool)):
        return _key(value)
    return value


def write_csv(rows, path) -> Path:
    """Write one CSV line per point, in ``index`` order, to ``path``; returns it.

    Columns: ``index``, ``point_id``, one per parameter (in the order the rows first name them),
    ``status``, ``reason``, one per metric (:data:`METRICS`' order, then any others sorted; a metric
    named like a parameter, e.g. ``clock_mhz`` when it is swept, is written as ``metrics.clock_mhz``),
    then the per-run ``compile_s``, ``sim_s`` and ``worker``. Missing values are empty cells; floats are
    written so they read back exactly.
    """
    rows = check_rows(rows)
    params: dict[str, None] = {}
    extra: set[str] = set()
    for r in rows:
        params.update(dict.fromkeys(r.get("params") or {}))
        extra.update(k for k in (r.get("metrics") or {}) if k not in METRICS)
    fixed = {"index", "point_id", "status", "reason", *RUN_COLUMNS}
    clash = set(params) & fixed
    if clash:
        raise ReportError(f"results: parameter {sorted(clash)[0]!r} has the name of a CSV column; "
                          f"parameters cannot be named {', '.join(sorted(fixed))}")
    metrics = [*METRICS, *sorted(extra)]
    metric_cols = [f"metrics.{m}" if m in params or m in fixed else m for m in metrics]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "point_id", *params, "status", "reason", *metric_cols, *RUN_COLUMNS])
        for r in rows:
            p, m = r.get("params") or {}, r.get("metrics") or {}
            w.writerow([r["index"], _csv_value(r.get("point_id")), *(_csv_value(p.get(n)) for n in params),
                        r["status"], _csv_value(r.get("reason")), *(_csv_value(m.get(k)) for k in metrics),
                        *(_csv_value(r.get(k)) for k in RUN_COLUMNS)])
    return path


__all__ = ["ReportError", "pareto_front", "format_report", "write_plots", "write_csv", "varied_axes",
           "check_rows", "METRICS", "RESOURCES", "STATUSES", "BYTES", "TOP"]
