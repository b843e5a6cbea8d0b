"""``dlavm compile``: a thin wrapper over dlavm.compiler.compile and dlavm.llm.compile_llm.

``COMMANDS`` (with the commands of run_cmds, profile_cmds and generate_cmds) is registered on the main group
by dlavm/cli/main.py.
"""
from __future__ import annotations

import click


def _progress(stage, done, total, detail):
    """One status line on stderr, rewritten in place: pass i/n, weights packed, streams encoded."""
    count = f"{done}/{total}" if total else str(done)
    click.echo(f"\r\033[K[{stage} {count}] {detail}"[:120], err=True, nl=False)


@click.command("compile")
@click.argument("model")
@click.option("--target", "-t", default="vcu128", show_default=True, help="Target name or file.")
@click.option("--weights", type=click.Choice(["int4", "int8", "fp16"]), default="int4", show_default=True)
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True, help="Artifact directory.")
@click.option("--driver/--no-driver", default=True, show_default=True, help="Generate the host C++ driver.")
@click.option("--llm", is_flag=True,
              help="Compile a decoder LM for generation: KV-cached entries 'logits' and 'greedy' (doc/llm.md); "
                   "--max-seq is then the maximum context.")
@click.option("--time-passes", is_flag=True,
              help="Print a table of graph-pass timings, with each pattern rule's hits and time.")
def compile_cmd(model, target, weights, max_seq, out, driver, llm, time_passes):
    """Compile MODEL for a target into an artifact directory and print the compile report."""
    try:
        if llm:
            from dlavm.llm import compile_llm
            cm = compile_llm(model, target=target, weights=weights, max_ctx=max_seq, on_progress=_progress)
        else:
            from dlavm.compiler import compile as dlavm_compile
            cm = dlavm_compile(model, target=target, weights=weights, max_seq=max_seq, on_progress=_progress)
    finally:
        click.echo("", err=True)  # ends the progress line, so an error is a line of its own
    if time_passes:
        from dlavm.ir import format_records
        click.echo(format_records(cm.pass_records), err=True)
    path = cm.save(out, driver=driver)
    click.echo(cm.report())
    click.echo(f"artifact written to {path}")


COMMANDS = [compile_cmd]
