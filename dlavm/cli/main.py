"""The ``dlavm`` command. Thin: every command calls the library."""
from __future__ import annotations

import sys

import click

from .compare_cmds import COMMANDS as COMPARE_COMMANDS
from .compile_cmds import COMMANDS as COMPILE_COMMANDS
from .dse_cmds import COMMANDS as DSE_COMMANDS
from .generate_cmds import COMMANDS as GENERATE_COMMANDS
from .profile_cmds import COMMANDS as PROFILE_COMMANDS
from .run_cmds import COMMANDS as RUN_COMMANDS
from .serve_cmds import COMMANDS as SERVE_COMMANDS
from .errors import EXIT_NEGATIVE, fail
from .targets import targets


class _Group(click.Group):
    """The ``dlavm`` group: every failure becomes one ``error:`` line (:mod:`dlavm.cli.errors`).

    Nothing heavy is imported at module level: ``--help``, usage errors and the torch-free commands
    (doc/cli.md) answer without torch, and each command imports what it needs.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 -- the one place failures are reported
            fail(exc)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dlavm")
def main():
    """DLAVM: compile PyTorch models to an FPGA LLM accelerator.

    MODEL arguments are a built-in recipe name (see `dlavm models`),
    hf:path/to/checkpoint (a local Hugging Face directory with config.json and
    safetensors), or path/to/file.py:factory, where the factory returns a
    ModelSpec or (module, example_inputs, dynamic_shapes).
    """


@main.command("models")
def models_cmd():
    """List the built-in model recipes."""
    from ..models import list_recipes
    for r in list_recipes():
        click.echo(f"{r.name:<18} {r.summary}")


@main.command("import")
@click.argument("model")
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
@click.option("--summary", is_flag=True, help="Print a summary instead of the whole IR.")
@click.option("--spans", is_flag=True, help="Annotate each value with its source line.")
@click.option("--raw", is_flag=True, help="Skip the import pipeline (canonicalize): the IR as converted.")
@click.option("--dump-ir", "dump_ir", type=click.Path(file_okay=False), default=None,
              help="Write the IR before and after each pass to DIR/NN-pass.txt.")
@click.option("--time-passes", is_flag=True, help="Print a table of pass timings.")
def import_cmd(model, max_seq, summary, spans, raw, dump_ir, time_passes):
    """Import MODEL through torch.export and print its graph IR."""
    import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
    from ..models import import_model
    from ..ir import PassContext, format_records, print_module, summarize_module

    from .progress import Progress
    with Progress() as progress:  # import stages and passes from the first second (doc/cli.md, "Progress")
        ctx = PassContext(dump_dir=dump_ir, on_progress=lambda name, i, n: progress("import pass", i, n, name))
        res = import_model(model, max_seq=max_seq, canonicalize=not raw, pass_ctx=ctx, on_progress=progress)
    click.echo(summarize_module(res.module) if summary else print_module(res.module, show_spans=spans))
    t = res.timings
    click.echo(f"# import: build {t['build_s']:.2f}s, torch.export {t['export_s']:.2f}s, "
               f"decompose {t['decompose_s']:.2f}s, convert {t['convert_s']:.2f}s", err=True)
    if time_passes:
        click.echo(format_records(ctx.records), err=True)


@main.command("ops")
@click.option("--aten", is_flag=True, help="List the ATen overloads the torch frontend converts.")
@click.option("--device", "device", is_flag=True,
              help="List what each target runs on the device: device ops, the patterns they come from, limits.")
@click.option("--target", "-t", "targets", multiple=True,
              help="With --device: only this target (name or file; repeatable). Default: every built-in target.")
@click.option("--conformance", is_flag=True,
              help="Run the op conformance suite through torch.compile(backend='dlavm') and print its table.")
@click.option("--full", is_flag=True, help="With --conformance: every shape edge static too (the full grid).")
@click.option("--op", "only", multiple=True, help="With --conformance: only this ATen overload (repeatable).")
@click.option("--write", "write", type=click.Path(dir_okay=False), default=None,
              help="With --conformance: also write the table as Markdown to FILE (doc/ops.md).")
def ops_cmd(aten, device, targets, conformance, full, only, write):
    """List the graph-IR ops (or the supported ATen ops, or what each target runs on the device)."""
    if targets and not device:
        raise click.UsageError("--target goes with --device")
    if sum(map(bool, (aten, device, conformance))) > 1:
        raise click.UsageError("--aten, --device and --conformance do different things: give one")
    if (full or only or write) and not conformance:
        raise click.UsageError("--full, --op and --write go with --conformance")
    if conformance:
        _conformance(full, only, write)
        return
    import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
    if device:
        _print_device_ops(targets)
        return
    if aten:
        from ..frontend.torch import CONVERTERS
        for name in sorted({str(k) for k in CONVERTERS}):
            click.echo(name)
        return
    from ..ir import list_ops
    for op in list_ops():
        attrs = ", ".join(f"{k}:{v.kind}" for k, v in op.attr_specs.items())
        click.echo(f"{op.name:<14} ({', '.join(op.inputs)}) [{attrs}]  {op.doc}")


def _conformance(full, only, write) -> None:
    """The conformance suite (doc/ops.md): progress per op on stderr, the table on stdout; exit 1 when an
    op fails."""
    import time

    from ..dynamo import conformance as conf
    from .progress import Progress
    unknown = [o for o in only if o not in conf.CASES and o not in conf.UNREACHABLE]
    if unknown:
        raise click.BadParameter(f"'{unknown[0]}' is not in the conformance catalog (`dlavm ops --aten` lists "
                                 f"the converted overloads)", param_hint="--op")
    t0 = time.monotonic()
    with Progress() as progress:
        rows = conf.run_all(full, ops=list(only) or None,
                            on_case=lambda i, n, op: progress("conformance", i + 1, n, op))
    seconds = time.monotonic() - t0
    click.echo(conf.format_table(rows))
    click.echo(conf.summary(rows) + f" ({'full' if full else 'reduced'} grid, {seconds:.0f} s)")
    if write:
        from pathlib import Path
        Path(write).write_text(conf.markdown_doc(rows, full, seconds))
        click.echo(f"wrote {write}", err=True)
    if any(r.status == "FAIL" for r in rows):
        sys.exit(EXIT_NEGATIVE)


def _print_device_ops(targets) -> None:
    from ..devops.catalog import device_op_rows, target_capabilities
    from ..target import get_target, list_targets
    for i, t in enumerate([get_target(t) for t in targets] if targets else list_targets()):
        click.echo(("\n" if i else "") + f"target {t.name}: "
                   + "; ".join(f"{k} {v}" for k, v in target_capabilities(t)))
        rows = device_op_rows(t)
        w = max(len(r["op"]) for r in rows)
        click.echo(f"  {'op':<{w}}  {'runs':<8}  from (legalization patterns) / emits / limits")
        for r in rows:
            parts = [r["from"] or "-", f"emits {r['emits']}" if r["emits"] else "",
                     f"limits: {r['limits']}" if r["limits"] else "",
                     r["lowering"] if r["runs"] == "no" else ""]
            click.echo(f"  {r['op']:<{w}}  {r['runs']:<8}  " + " | ".join(p for p in parts if p))


@main.command("check")
@click.argument("model")
@click.option("--dims", "dims", multiple=True, help="Dim binding like seq=7 (repeatable).")
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
def check_cmd(model, dims, max_seq):
    """Run MODEL's graph IR on the reference executor and compare with torch eager.

    Without --dims, at each dim's lower bound, a middle value and its upper bound (a model without
    dynamic dims: once, at its example inputs). Prints one line per comparison and a summary; a
    check that compared nothing is an error.
    """
    import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
    from ..models import import_model

    bindings = [dict(_parse_dims(dims))] if dims else None
    res = import_model(model, max_seq=max_seq)
    from ..reference import compare_with_torch
    if res.spec.shape_only:
        raise click.UsageError(f"model '{model}' is shape-only (meta device) and cannot be executed")
    bindings = bindings or res.spec.check_points()
    results = []
    for b in bindings:
        agreement = compare_with_torch(res.module, "forward", res.spec.module, res.spec.inputs_at(**b), b)
        click.echo(str(agreement))
        results.append(agreement)
    bad = sum(not a.ok for a in results)
    worst = max(a.max_abs for a in results)
    click.echo(f"check: {len(results)} binding(s) compared, {sum(a.compared for a in results)} values, "
               f"max abs err {worst:.3e}: " + (f"{bad} MISMATCH" if bad else "all match torch"))
    if bad:
        sys.exit(EXIT_NEGATIVE)


def _parse_dims(items):
    """``NAME=INT`` items as (name, value) pairs; the model checks names and bounds (``ModelSpec.inputs_at``)."""
    for item in items:
        key, sep, val = item.partition("=")
        try:
            value = int(val, 10) if sep else None
        except ValueError:
            value = None
        if value is None or not key.strip().isidentifier():
            raise click.BadParameter(f"expected NAME=INT, got '{item}'", param_hint="--dims")
        yield key.strip(), value


main.add_command(targets)
for _cmd in (COMPILE_COMMANDS + RUN_COMMANDS + PROFILE_COMMANDS + GENERATE_COMMANDS + COMPARE_COMMANDS
             + SERVE_COMMANDS + DSE_COMMANDS):
    main.add_command(_cmd)

if __name__ == "__main__":
    main()
