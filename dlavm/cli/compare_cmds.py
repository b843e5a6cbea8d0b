"""``dlavm diff | golden``: thin wrappers over dlavm.compare (doc/compare.md).

``COMMANDS`` is registered on the main group by dlavm/cli/main.py. Exit
codes: 0 same, 1 different, 2 error (bad input: the message names the file).
"""
from __future__ import annotations

import sys

import click

from .errors import EXIT_NEGATIVE


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--at", "at", default=None, help="Specialise at dim values, e.g. seq=1,kv=127 "
              "(default: a golden's own, else symbolic).")
@click.option("--raw-addresses", is_flag=True, help="Compare raw device addresses instead of relocated ones.")
@click.option("--context", type=int, default=1, show_default=True, help="Neighbouring instructions shown.")
def diff_cmd(a, b, at, raw_addresses, context):
    """Compare two artifacts, streams (.bin/.asm) or listings/goldens instruction by instruction.

    Exits 0 when they are the same, 1 when they differ, 2 on bad input.
    """
    from dlavm.compare.diff import diff_listings, format_diff
    from dlavm.compare.listing import open_pair
    la, lb = open_pair(a, b, at, raw_addresses)
    res = diff_listings(la, lb)
    click.echo(format_diff(res, context=context), nl=False)
    sys.exit(0 if res.same else EXIT_NEGATIVE)


@click.command("golden")
@click.option("--update", "do_update", is_flag=True, help="Rewrite the golden files that differ.")
@click.option("--case", "case_keys", multiple=True, help="Only this case (target/name or name; repeatable).")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="Golden folder (default: compare/).")
def golden_cmd(do_update, case_keys, root):
    """Regenerate the golden streams from the current compiler and diff them against compare/.

    Exits 1 when a golden differs or is missing (0 after --update).
    """
    from pathlib import Path

    from dlavm.compare import golden
    from dlavm.compare.cases import CASES, find_case
    from dlavm.compare.diff import format_diff
    cases = [find_case(k) for k in case_keys] if case_keys else list(CASES)
    root = Path(root) if root else None
    statuses = golden.update(cases, root) if do_update else golden.check(cases, root)
    def shown(path):
        try:
            return path.resolve().relative_to(Path.cwd())
        except ValueError:
            return path

    bad = 0
    for st in statuses:
        if st.state == "same":
            click.echo(f"ok       {shown(st.path)}")
            continue
        bad += 1
        verb = {"missing": "written" if do_update else "MISSING", "format": "rewritten" if do_update else "FORMAT",
                "differs": "updated" if do_update else "DIFFERS"}[st.state]
        click.echo(f"{verb:<8} {shown(st.path)}")
        if st.diff is not None and not do_update:
            click.echo(format_diff(st.diff), nl=False)
    if bad and not do_update:
        click.echo(f"{bad} golden(s) differ from the current compiler; review, then `dlavm golden --update`")
        sys.exit(EXIT_NEGATIVE)


COMMANDS = [diff_cmd, golden_cmd]
