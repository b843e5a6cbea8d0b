"""Task IR: imperative device programs over symbolic ints (doc/task_ir.md).

``ir`` (statements, printer), ``passes`` (fold, dce, unroll, specialise),
``deps`` (wait bits), ``lower`` + ``rules`` (device graph -> task IR),
``memory`` (buffer placement).
"""
from .ir import Emit, For, HostWait, If, Program, RegWrite, format_program
from .passes import dce, flatten, fold, simplify_loops, specialize, unroll, unroll_to_bound
from .deps import assign_waits

__all__ = ["Emit", "For", "HostWait", "If", "Program", "RegWrite", "format_program", "dce", "flatten",
           "fold", "simplify_loops", "specialize", "unroll", "unroll_to_bound", "assign_waits"]
