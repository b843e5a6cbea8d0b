"""``dlavm run | disasm``: run an artifact on the simulator; print its streams as assembly."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("run")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=1, show_default=True, help="Value of every dynamic dim.")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--direct", is_flag=True, help="Push instructions through registers instead of AUX streams.")
def run_cmd(artifact, seq, entry, direct):
    """Run ARTIFACT on the simulator with random inputs; print an output summary and cycles."""
    from dlavm.compiler import random_inputs
    from dlavm.compiler import load
    cm = load(artifact)
    inputs = random_inputs(cm.manifest, entry, seq)  # refuses an unknown entry or a seq past the bounds
    entry = entry or cm.entries[0]
    rt = cm.runtime(mode="direct" if direct else "aux")
    state = {d: seq for d in cm.manifest.entries[entry].state_dims}  # LLM: a prefill of seq tokens
    outs = rt.run(entry, *inputs, dims=state)
    for i, o in enumerate(outs):
        summary = f"min {o.min():.4g} max {o.max():.4g} mean {o.mean():.4g}" if o.size else "empty"
        click.echo(f"output {i}: shape {list(o.shape)} {o.dtype}  {summary}")
    t = cm.target
    click.echo(f"cycles {rt.last_cycles:,} = {t.figures.cycles_to_us(rt.last_cycles):.1f} us at {t.clock_mhz} MHz")


@click.command("disasm")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
def disasm_cmd(artifact):
    """Print every AUX stream of ARTIFACT as assembly (dynamic fields and guards annotated)."""
    from dlavm.runtime.loader import verify_artifact
    m = verify_artifact(artifact)
    for name, s in m.streams.items():
        click.echo(f"# stream {name} at {s.addr:#x}: {s.count} instructions")
        click.echo((Path(artifact) / s.asm).read_text(), nl=False)


COMMANDS = [run_cmd, disasm_cmd]
