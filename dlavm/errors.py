"""What counts as refused input, for every caller that reports failures: the ``dlavm`` command's
``error:`` line (:mod:`dlavm.cli.errors`) and a design-space sweep's refused points (doc/dse.md).

A *project error* is an exception whose class, or one of its bases, is defined in the ``dlavm``
package (``TargetError``, ``CompileError``, ``PlanError``, ...): dlavm raised it on purpose and its
message names the value and the rule. Anything else that escapes is a bug in dlavm.
"""
from __future__ import annotations


def is_project_error(exc: BaseException) -> bool:
    """True for an exception whose class, or one of its bases, is defined in the ``dlavm`` package.

    Checked by module name, so classifying an error imports nothing (the
    error path of a torch-free command stays torch-free).
    """
    return any(c.__module__ == "dlavm" or c.__module__.startswith("dlavm.") for c in type(exc).__mro__)


def one_line(text: str) -> str:
    """``text`` as one line: line breaks inside a message become ``; ``."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


__all__ = ["is_project_error", "one_line"]
