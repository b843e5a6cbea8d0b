"""``dlavm targets``: list the device descriptions with their derived figures."""
from __future__ import annotations

import click

from dlavm.target import Target, get_target, list_targets

#: (header, function of a target) for each column of the table.
COLUMNS = (
    ("target", lambda t: t.name),
    ("MHz", lambda t: f"{t.clock_mhz:g}"),
    ("HBM ch x bit", lambda t: f"{t.hbm_channels}x{t.hbm_bits_per_cycle}"),
    ("HBM GB/s", lambda t: f"{t.figures.hbm_gbytes_per_s:.1f}"),
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


@click.command("targets")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="Also show a user target from a JSON/YAML file (repeatable).")
@click.option("--name", "names", multiple=True, help="Show only these targets (names or files).")
def targets(files: tuple[str, ...], names: tuple[str, ...]) -> None:
    """List device targets with key parameters and derived figures."""
    shown = [get_target(n) for n in names] if names else list_targets()
    shown += [get_target(f) for f in files]
    click.echo(format_table(shown))
