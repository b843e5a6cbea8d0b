"""The one place where a failure of the ``dlavm`` command becomes its ``error: ...`` line and exit code.

The contract (doc/cli.md, "Contract"): every failure prints exactly one line
``error: <message>`` on stderr and exits non-zero; never a traceback. A
*project error* (an exception class defined in the ``dlavm`` package, such
as ``TargetError``, ``ManifestError``, ``ModelNotFound``), a click usage
error and an ``OSError`` on a path the user gave are refused input: their
message names the value and the rule, and the exit code is
:data:`EXIT_BAD_INPUT`; so is a missing optional package (torch on a
deployment host) that the command needs. Anything else is a bug in dlavm: it still gets one
line, with a hint to report it, and the distinct code :data:`EXIT_INTERNAL`
(``DLAVM_DEBUG=1`` prints the traceback as well), so a test can tell the two apart.
"""
from __future__ import annotations

import os
import sys
import traceback

import click

from dlavm.errors import is_project_error, one_line

#: The command ran and its answer is "no": ``diff`` found differences, ``check`` or ``golden`` disagree.
EXIT_NEGATIVE = 1
#: The input was refused (bad option, file, model, target or artifact); the message says why.
EXIT_BAD_INPUT = 2
#: An exception that is not a project error escaped: a bug in dlavm (``EX_SOFTWARE`` of sysexits.h).
EXIT_INTERNAL = 70
#: Interrupted by the user (Ctrl-C), as a shell reports SIGINT.
EXIT_INTERRUPTED = 130

#: Environment variable that makes an internal error print its traceback too.
DEBUG_ENV = "DLAVM_DEBUG"


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # str(KeyError) would quote the message
    return str(exc) or type(exc).__name__


def describe(exc: BaseException) -> tuple[str, int]:
    """``(message without the 'error: ' prefix, exit code)`` for an exception that ended a command."""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return one_line(exc.format_message()) + hint, EXIT_BAD_INPUT
    if isinstance(exc, click.ClickException):
        return one_line(exc.format_message()), EXIT_BAD_INPUT
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if is_project_error(exc):
        return one_line(_message(exc)), EXIT_BAD_INPUT
    if isinstance(exc, OSError) and exc.filename is not None:
        return one_line(f"{exc.filename}: {exc.strerror or exc}"), EXIT_BAD_INPUT
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "dlavm":
        return (f"this command needs the Python package '{exc.name.split('.')[0]}', which is not installed here "
                "(artifacts run without torch: see doc/cli.md)"), EXIT_BAD_INPUT
    return (one_line(f"internal error: {type(exc).__name__}: {_message(exc)}")
            + f" (a bug in dlavm: please report it with the command line; {DEBUG_ENV}=1 shows the traceback)",
            EXIT_INTERNAL)


def fail(exc: BaseException) -> "NoReturn":  # noqa: F821
    """Print ``exc`` as the command's one ``error:`` line and exit with its code."""
    message, code = describe(exc)
    if code == EXIT_INTERNAL and os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
