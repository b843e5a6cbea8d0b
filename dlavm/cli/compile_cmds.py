"""``dlavm compile``: a thin wrapper over dlavm.compiler.compile and dlavm.llm.compile_llm.

``COMMANDS`` (with the commands of run_cmds, profile_cmds and generate_cmds) is registered on the main group
by dlavm/cli/main.py.
"""
from __future__ import annotations

import click


@click.command("compile")
@click.argument("model")
@click.option("--target", "-t", default="vcu128", show_default=True, help="Target name or file.")
@click.option("--weights", type=click.Choice(["int4", "int8", "fp16"]), default="int4", show_default=True)
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True,
              help="Artifact directory: new or empty, or with --force one that holds an artifact.")
@click.option("--force", is_flag=True,
              help="Replace the artifact already in the output directory (only an artifact: doc/cli.md).")
@click.option("--driver/--no-driver", default=True, show_default=True, help="Generate the host C++ driver.")
@click.option("--llm", is_flag=True,
              help="Compile a decoder LM for generation: KV-cached entries 'logits' and 'greedy' (doc/llm.md); "
                   "--max-seq is then the maximum context.")
@click.option("--batch", type=click.IntRange(1, 8), default=1, show_default=True,
              help="With --llm: batched decode of up to B sequences per step (B KV-cache slots, entries "
                   "'logits_batch' and 'greedy_batch'; doc/llm.md). 1: one sequence.")
@click.option("--time-passes", is_flag=True,
              help="Print a table of graph-pass timings, with each pattern rule's hits and time.")
@click.option("--ops-report", "ops_report", type=click.Path(dir_okay=False), default=None,
              help="Write a supported-ops report (per op: where it runs, why, module, count) to FILE: "
                   ".csv or .md.")
@click.option("--dump-ir", "dump_ir", type=click.Path(file_okay=False), default=None,
              help="Write the IR before and after each graph pass to DIR/NN-pass.txt.")
def compile_cmd(model, target, weights, max_seq, out, force, driver, llm, batch, time_passes, ops_report,
                dump_ir):
    """Compile MODEL for a target into an artifact directory and print the compile report."""
    from .output_dir import clear_output, plan_output
    from .progress import Progress
    if batch != 1 and not llm:
        raise click.UsageError("--batch applies to --llm (batched decode of an LLM)")
    plan_output(out, force)  # refuses a non-empty folder before a long compilation, not after it
    if ops_report:
        from dlavm.compiler import check_ops_report_path
        check_ops_report_path(ops_report)
    with Progress() as progress:  # ends the progress line before any error
        if llm:
            from dlavm.llm import compile_llm
            cm = compile_llm(model, target=target, weights=weights, max_seq=max_seq, on_progress=progress,
                             dump_ir=dump_ir, batch=batch)
        else:
            from dlavm.compiler import compile as dlavm_compile
            cm = dlavm_compile(model, target=target, weights=weights, max_seq=max_seq, on_progress=progress,
                               dump_ir=dump_ir)
    if time_passes:
        from dlavm.ir import format_records
        click.echo(format_records(cm.pass_records), err=True)
    clear_output(out, force)  # the old artifact's files only (dlavm/cli/output_dir.py)
    path = cm.save(out, driver=driver)
    click.echo(cm.report())
    click.echo(f"artifact written to {path}")
    if ops_report:
        click.echo(f"ops report written to {cm.write_ops_report(ops_report)}")


COMMANDS = [compile_cmd]
