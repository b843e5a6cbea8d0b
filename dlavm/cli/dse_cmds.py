"""``dlavm dse``: design-space sweeps over targets and ``dlavm dse report`` (doc/dse.md).

``dlavm dse MODEL ...`` runs a sweep (the group's default command, ``run``); ``dlavm dse report DIR``
reads one back. Thin: both call :mod:`dlavm.dse`.
"""
from __future__ import annotations

import click


def _csv_ints(ctx, param, value):
    """Click callback: ``512,2048`` -> ``[512, 2048]`` (None when the option is not given)."""
    if value is None:
        return None
    out = []
    for part in value.split(","):
        try:
            out.append(int(part.strip()))
        except ValueError:
            raise click.BadParameter(f"{value!r}: give integers separated by commas (e.g. 512,2048)",
                                     ctx, param) from None
    return out


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class _DseGroup(click.Group):
    """``dlavm dse MODEL ...`` is ``dlavm dse run MODEL ...``; ``dlavm dse report DIR`` is the report."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("dse", cls=_DseGroup)
def dse_group():
    """Design-space exploration: sweep target parameters, weight formats and contexts (doc/dse.md).

    \b
    dlavm dse MODEL --vary hbm_channels=16,32 --vary tin=64,128 --ctx 512,2048 -o results/
    dlavm dse report results/
    """


@dse_group.command("run")
@click.argument("model", required=False)
@click.option("--target", "-t", default=None, help="Base target: a built-in name or a target file [vcu128].")
@click.option("--vary", multiple=True, metavar="NAME=VALUES",
              help="An axis: a target field or weights/ctx/seq, with values V1,V2,... or a range LO:HI:STEP "
                   "(repeatable).")
@click.option("--seq", callback=_csv_ints, default=None, metavar="N[,N...]",
              help="Tokens of the measured call (1: a decode step) [1].")
@click.option("--ctx", callback=_csv_ints, default=None, metavar="N[,N...]",
              help="Compiled context: tokens in the KV cache after the measured call [512].")
@click.option("--sample", default=None, metavar="grid|random:N|lhs:N",
              help="The full grid (default), N random grid points, or a Latin hypercube of N points.")
@click.option("--seed", type=int, default=None, help="Seed of random and lhs sampling [0].")
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False), default=None,
              help="A sweep file (JSON, or YAML with PyYAML); options given here override its keys.")
@click.option("--llm/--no-llm", default=None,
              help="Compile for generation with a KV cache (default) or as a plain model (--seq sizes every "
                   "dynamic dim; no --ctx).")
@click.option("-o", "--output", "out", type=click.Path(file_okay=True), required=True,
              help="Results folder (the store, dse.sqlite); running the same sweep again resumes it.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (local) or Ray actors [every usable core; with --ray, the cluster's CPUs].")
@click.option("--ray", "ray_address", default=None, metavar="HOST:PORT|local",
              help="Run the points as Ray actors on the cluster at HOST:PORT ('local': a private local "
                   "cluster of --workers CPUs).")
@click.option("--point-timeout", type=float, default=None, metavar="SECONDS",
              help="Stop a point that runs longer and record it as failed (default: no limit).")
@click.option("--restart", is_flag=True, help="Discard the points already in the results folder.")
def run_cmd(model, target, vary, seq, ctx, sample, seed, sweep_file, llm, out, workers, ray_address, point_timeout,
            restart):
    """Sweep MODEL over target variants: compile and profile each point (timing-only); store the results."""
    from dlavm.dse import LocalEngine, RayEngine, build_spec, run_sweep

    from .progress import Progress
    spec = build_spec(model, target, list(vary), seq, ctx, sample, seed, llm, sweep_file)
    engine = (RayEngine(ray_address, workers, point_timeout) if ray_address
              else LocalEngine(workers, point_timeout))
    state = {"done": 0, "total": 0}
    with Progress() as progress:

        def on_event(kind, detail):
            progress.note(f"dse: {detail}")

        def on_record(r, done, total, eta):
            state.update(done=done, total=total)
            params = " ".join(f"{k}={v}" for k, v in r["params"].items())
            what = (f"{r['metrics']['tokens_per_s']:.2f} tok/s" if r["status"] == "ok"
                    else f"{r['status']}: {r['reason']}")
            if r["status"] != "ok":
                progress.note(f"dse: point {r['index']} ({params}) {what}")
            progress("dse", done, total, f"{params}: {what[:60]}; ETA {_fmt_s(eta)}")

        try:
            outcome = run_sweep(spec, out, engine, restart=restart, on_record=on_record, on_event=on_event)
        except KeyboardInterrupt:
            progress.close()
            click.echo(f"dse: interrupted with {state['done']} of {state['total']} points stored in {out}; "
                       f"run the same command to resume", err=True)
            raise
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items())) or "nothing new"
    click.echo(f"{outcome.total} points in {out}: {outcome.stored_before} were stored before, this run computed "
               f"{outcome.computed} ({counts}) in {_fmt_s(outcome.seconds)}")
    click.echo(f"read them with: dlavm dse report {out}")


@dse_group.command("report")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--resource", type=click.Choice(["lut", "ff", "dsp", "bram36", "uram"]), default="lut",
              show_default=True, help="The resource of the Pareto front (tokens/s against it).")
@click.option("--part", default=None, help="Mark points whose estimate exceeds this FPGA part (xcvu37p, xcu280).")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write pareto.png and params.png into the results folder.")
def report_cmd(results, resource, part, plots):
    """Points, refusals, the Pareto fronts and plots of the sweep stored in RESULTS."""
    from dlavm.dse import ResultStore
    from dlavm.dse.report import format_report, write_csv, write_plots
    with ResultStore.read(results) as store:
        spec, rows = store.spec(), store.rows()
    click.echo(format_report(spec, rows, resource=resource, part=part))
    written = [write_csv(rows, f"{results}/results.csv")]
    if plots:
        written += write_plots(spec, rows, results, resource=resource)
    for path in written:
        click.echo(f"written: {path}")


COMMANDS = [dse_group]
