"""``dlavm profile --plot FILE.png``: a roofline and a per-layer timeline of a profiled run, with matplotlib.

Input is the dict of :func:`dlavm.compiler.profile` (its ``ops``: per op
tag, the MACs, bytes moved, busy cycles, layer, first start and last end).

* Left, the roofline: each device op at its operational intensity (MACs per
  byte moved) and achieved throughput (MACs per busy cycle, as GMAC/s at the
  target clock), under the target's roofs: peak compute (``peak MACs per
  cycle``) and HBM bandwidth (``HBM bytes per cycle``), log-log.
* Right, the timeline: one row per layer (``-`` for ops outside layers), a
  bar per op from its first to its last busy cycle, coloured by op kind.

matplotlib is imported when a plot is drawn (it is in the ``dev`` extra);
without it :class:`PlotError` says so in one line.
"""
from __future__ import annotations

from pathlib import Path


class PlotError(RuntimeError):
    """The plot cannot be drawn (matplotlib missing, nothing to draw); names the cause."""


def require_matplotlib(what: str = "--plot"):
    """The ``matplotlib.pyplot`` module on the non-interactive Agg backend, or :class:`PlotError` saying that
    ``what`` (the option or the plots that asked) needs it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"{what} needs matplotlib, which is not installed here "
                        "(pip install matplotlib, or the dev extra: pip install -e '.[dev]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def roofline_points(p: dict) -> list:
    """``[(tag, MACs per byte, GMAC/s)]`` of the device ops of ``p`` that do MACs and move bytes."""
    ghz = p["clock_mhz"] / 1e3
    return [(o["tag"], o["macs"] / o["bytes"], o["macs"] / o["cycles"] * ghz)
            for o in p.get("ops", ()) if o["macs"] and o["bytes"] and o["cycles"]]


def plot_profile(p: dict, path) -> Path:
    """Draw the roofline and the per-layer timeline of profile ``p`` to ``path`` (format by its extension)."""
    plt = require_matplotlib()
    ops = p.get("ops") or []
    if not ops:
        raise PlotError("nothing to plot: the profile has no device instruction records "
                        "(a device server reports totals only; profile on the simulator)")
    ghz = p["clock_mhz"] / 1e3
    peak = p["peak_macs_per_cycle"] * ghz           # GMAC/s
    bw = p["hbm_bytes_per_cycle"] * ghz             # GB/s
    fig, (ax_r, ax_t) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.4]})

    pts = roofline_points(p)
    lo = min([x for _, x, _ in pts] + [peak / bw / 100])
    hi = max([x for _, x, _ in pts] + [peak / bw * 100])
    xs = [lo / 2, peak / bw, hi * 2]
    ax_r.plot(xs, [min(peak, bw * x) for x in xs], color="black", lw=1.5,
              label=f"roofs: {peak:,.0f} GMAC/s, HBM {bw:,.1f} GB/s")
    kinds = sorted({t.split("#")[0] for t, _, _ in pts})
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(sorted({o["tag"].split("#")[0] for o in ops}))}
    for kind in kinds:
        sel = [(x, y) for t, x, y in pts if t.split("#")[0] == kind]
        ax_r.scatter([x for x, _ in sel], [y for _, y in sel], s=18, color=colors[kind], label=kind)
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    ax_r.set_xlabel("operational intensity (MACs per byte moved)")
    ax_r.set_ylabel("achieved throughput (GMAC/s)")
    dev = p.get("device_roofline_fraction")
    ax_r.set_title(f"roofline (port peak): {p['entry']} on {p['target']} ({100 * p['roofline_fraction']:.1f}% of "
                   f"port peak" + (f", {100 * dev:.1f}% of device peak)" if dev is not None else ")"))
    ax_r.grid(True, which="both", alpha=0.3)
    ax_r.legend(fontsize=7, loc="lower right")

    layers = sorted({o["layer"] for o in ops if o["layer"] is not None})
    rows = {None: 0, **{layer: i + 1 for i, layer in enumerate(layers)}}
    kinds_t = sorted({o["tag"].split("#")[0] for o in ops})
    colors_t = colors
    us = 1.0 / p["clock_mhz"]
    origin = min((o["start"] for o in ops), default=0)  # the simulator's clock runs on across calls
    for o in ops:
        k = o["tag"].split("#")[0]
        ax_t.barh(rows[o["layer"]], max(o["end"] - o["start"], 1) * us, left=(o["start"] - origin) * us, height=0.7,
                  color=colors_t[k], edgecolor="none")
    from matplotlib.patches import Patch
    ax_t.legend(handles=[Patch(color=colors_t[k], label=k) for k in kinds_t], fontsize=7, loc="lower right")
    ax_t.set_yticks(list(rows.values()), ["-" if r is None else str(r) for r in rows])
    ax_t.invert_yaxis()
    ax_t.set_xlabel("device time since the first instruction (us)")
    ax_t.set_ylabel("layer")
    host = p.get("host") or {}
    extra = f"; host fallback {host['seconds'] * 1e3:.2f} ms wall, not shown" if host.get("steps") else ""
    ax_t.set_title(f"per-layer timeline ({p['time_us']:.1f} us{extra})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["PlotError", "plot_profile", "require_matplotlib", "roofline_points"]
