"""``dlavm profile``: cycles, time and a per-op table of one run of an artifact."""
from __future__ import annotations

import click

from .device_option import device_hal, device_option


@click.command("profile")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=1, show_default=True, help="Value of every dynamic dim.")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--timing-only", is_flag=True, help="Timing-only simulation (no numerics).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="Write a Perfetto/Chrome trace JSON.")
@click.option("--ctx", type=int, default=None,
              help="LLM artifacts: tokens in the KV cache after the call (default --seq: prefill; "
                   "decode at context n is --seq 1 --ctx n).")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON (for machines).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw a roofline and a per-layer timeline to FILE.png (needs matplotlib).")
@device_option
def profile_cmd(artifact, seq, entry, timing_only, trace_path, ctx, device, as_json, plot_path):
    """Cycles, time at the target clock, % of roofline and a per-op table for one run of ARTIFACT."""
    from dlavm.compiler import format_profile, profile
    from dlavm.runtime.loader import load_verified
    if plot_path:
        from dlavm.compare.trace_plot import require_matplotlib
        require_matplotlib()  # refused before the run, not after it
    art = load_verified(artifact)
    m = art.manifest
    functional = not timing_only and m.weights_complete
    p = profile(m, art.read, seq, entry, functional, trace_path, ctx, hal=device_hal(device, m))
    if as_json:
        import json
        click.echo(json.dumps(p, indent=1))
    else:
        click.echo(format_profile(p))
    if plot_path:
        from dlavm.compare.trace_plot import plot_profile
        plot_profile(p, plot_path)
    if not as_json:
        for what, path in (("trace", trace_path), ("plot", plot_path)):
            if path:
                click.echo(f"{what} written to {path}")


COMMANDS = [profile_cmd]
