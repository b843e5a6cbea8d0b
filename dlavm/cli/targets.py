"""``dlavm targets``: list the device descriptions with their derived figures, or their resource estimates."""
from __future__ import annotations

import click

from dlavm.target import Target, TargetError, builtin_names, get_target, list_targets

#: (header, function of a target) for each column of the table.
COLUMNS = (
    ("target", lambda t: t.name),
    ("MHz", lambda t: f"{t.clock_mhz:g}"),
    ("HBM ch x bit", lambda t: f"{t.hbm_channels}x{t.hbm_bits_per_cycle}"),
    ("HBM GB/s", lambda t: f"{t.figures.hbm_gbytes_per_s:.1f}"),          # the port peak
    ("device GB/s", lambda t: f"{t.figures.device_hbm_gbytes_per_s:.1f}"),  # the board's HBM (device peak)
    ("HBM MiB", lambda t: str(t.figures.hbm_bytes >> 20)),
    ("Tin x Tout x grp", lambda t: f"{t.tin}x{t.tout}x{t.mvm_groups}"),
    ("MAC/cyc", lambda t: str(t.figures.peak_macs_per_cycle)),
    ("peak TMAC/s", lambda t: f"{t.figures.peak_tmacs_per_s:.3f}"),
    ("ridge MAC/B", lambda t: f"{t.figures.ridge_macs_per_byte:.2f}"),
    ("SRAM KiB", lambda t: str(t.sram_bytes // 1024)),
    ("weights", lambda t: ",".join(t.weight_formats)),
    ("max seq", lambda t: str(t.max_seq_len)),
    ("host RTT cyc", lambda t: str(t.figures.host_rtt_cycles)),
)


def format_table(targets: list[Target]) -> str:
    """Plain-text table, one row per target (used by the command and its tests)."""
    rows = [[h for h, _ in COLUMNS]] + [[f(t) for _, f in COLUMNS] for t in targets]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_resources(targets: list[Target], part: str | None = None) -> str:
    """One table per target: the resources of each unit of :func:`dlavm.target.resources.estimate` and the
    total; with ``part``, the part's capacity, the total as a percentage of it, and the kinds it exceeds.

    An unknown ``part`` is a :class:`TargetError` naming the known parts (before anything is computed).
    """
    from dlavm.target import resources

    capacity = resources.part_capacity(part) if part is not None else None
    part = part.lower() if part is not None else None
    blocks = []
    for t in targets:
        est = resources.estimate(t)
        rows = [["unit", *(k.upper() for k in resources.KINDS)]]
        rows += [[unit, *(str(v) for v in res.as_dict().values())] for unit, res in est.items()]
        if capacity is not None:
            frac = resources.utilisation(est["total"], part)
            rows.append([part, *(str(v) for v in capacity.as_dict().values())])
            rows.append([f"% of {part}", *(f"{100 * frac[k]:.1f}" for k in resources.KINDS)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"{t.name}: resource estimate (memories exact; logic uncalibrated, doc/dse.md)"]
        lines += ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
                  for r in rows]
        lines.insert(2, "  ".join("-" * w for w in widths))
        if capacity is not None:
            over = resources.exceeded(est["total"], part)
            lines.append(f"exceeds {part}: {', '.join(over)}" if over else f"fits {part}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def select_targets(files: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> list[Target]:
    """The targets ``dlavm targets`` shows: the built-ins and the target of each file of ``files``; with
    ``names``, only those, in that order.

    A name is looked up first among the targets the files define (the ``name`` field of each file),
    then among the built-ins and as a file path (:func:`dlavm.target.get_target`), so
    ``--file mine.json --name mine`` finds the target defined in ``mine.json``. A name found nowhere is
    a :class:`TargetError` listing every name that was available.
    """
    from_files = [get_target(f) for f in files]
    if not names:
        return list_targets() + from_files
    by_name = {t.name: t for t in from_files}
    shown = []
    for n in names:
        if n in by_name:
            shown.append(by_name[n])
            continue
        try:
            shown.append(get_target(n))
        except TargetError as exc:
            if not from_files:
                raise
            raise TargetError(f"unknown target {n!r}: the files {list(files)} define {sorted(by_name)}, "
                              f"the built-in targets are {builtin_names()}") from exc
    return shown


@click.command("targets")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="Also show a user target from a JSON/YAML file (repeatable).")
@click.option("--name", "names", multiple=True,
              help="Show only these targets (repeatable): names of built-ins or of targets defined by --file "
                   "files, or target files.")
@click.option("--resources", "show_resources", is_flag=True,
              help="Print each target's resource estimate per unit (LUT, FF, DSP, BRAM36, URAM) instead.")
@click.option("--part", default=None, metavar="NAME",
              help="With the estimate, show it as a percentage of an FPGA part (xcvu37p, xcu280); "
                   "implies --resources.")
def targets(files: tuple[str, ...], names: tuple[str, ...], show_resources: bool, part: str | None) -> None:
    """List device targets with key parameters and derived figures, or their resource estimates."""
    shown = select_targets(files, names)
    if show_resources or part is not None:
        click.echo(format_resources(shown, part))
    else:
        click.echo(format_table(shown))
