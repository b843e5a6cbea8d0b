"""``dlavm compile | run | disasm | profile``: thin wrappers over dlavm.compiler and dlavm.backend.

``COMMANDS`` is registered on the main group by dlavm/cli/main.py.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command("compile")
@click.argument("model")
@click.option("--target", "-t", default="vcu128", show_default=True, help="Target name or file.")
@click.option("--weights", type=click.Choice(["int4", "int8", "fp16"]), default="int4", show_default=True)
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True, help="Artifact directory.")
@click.option("--driver/--no-driver", default=True, show_default=True, help="Generate the host C++ driver.")
def compile_cmd(model, target, weights, max_seq, out, driver):
    """Compile MODEL for a target into an artifact directory and print the compile report."""
    from dlavm.compiler import compile as dlavm_compile
    cm = dlavm_compile(model, target=target, weights=weights, max_seq=max_seq)
    path = cm.save(out, driver=driver)
    click.echo(cm.report())
    click.echo(f"artifact written to {path}")


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
    entry = entry or cm.entries[0]
    rt = cm.runtime(mode="direct" if direct else "aux")
    outs = rt.run(entry, *random_inputs(cm.manifest, entry, seq))
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
    for name, s in m["streams"].items():
        click.echo(f"# stream {name} at {s['addr']:#x}: {s['count']} instructions")
        click.echo((Path(artifact) / s["asm"]).read_text(), nl=False)


@click.command("profile")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=1, show_default=True, help="Value of every dynamic dim.")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--timing-only", is_flag=True, help="Timing-only simulation (no numerics).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="Write a Perfetto/Chrome trace JSON.")
def profile_cmd(artifact, seq, entry, timing_only, trace_path):
    """Cycles, time at the target clock, % of roofline and a per-op table for one run of ARTIFACT."""
    from dlavm.compiler import format_profile, profile
    from dlavm.runtime.loader import verify_artifact
    m = verify_artifact(artifact)
    functional = not timing_only and m.get("weights_complete", True)
    p = profile(m, lambda rel: (Path(artifact) / rel).read_bytes(), seq, entry, functional, trace_path)
    click.echo(format_profile(p))
    if trace_path:
        click.echo(f"trace written to {trace_path}")


COMMANDS = [compile_cmd, run_cmd, disasm_cmd, profile_cmd]
