"""``dlavm profile``: cycles, time and a per-op table of one run of an artifact."""
from __future__ import annotations

import click


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
def profile_cmd(artifact, seq, entry, timing_only, trace_path, ctx):
    """Cycles, time at the target clock, % of roofline and a per-op table for one run of ARTIFACT."""
    from dlavm.compiler import format_profile, profile
    from dlavm.runtime.loader import load_verified
    art = load_verified(artifact)
    m = art.manifest
    functional = not timing_only and m.weights_complete
    p = profile(m, art.read, seq, entry, functional, trace_path, ctx)
    click.echo(format_profile(p))
    if trace_path:
        click.echo(f"trace written to {trace_path}")


COMMANDS = [profile_cmd]
