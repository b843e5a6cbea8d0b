"""The accelerator described as data.

* :class:`Target` (``schema.py``): every hardware parameter, a frozen dataclass.
* ``target.figures`` (``derived.py``): every derived figure, computed in one place.
* :func:`get_target` / :func:`list_targets` (``loader.py``): built-ins
  (``vcu128``, ``u280``, ``v80``, ``tiny``, stored as JSON in ``builtin/``) and user files.
* ``isa.py`` / ``asm.py``: the instruction formats, register map, encoder,
  decoder, assembler and disassembler (the single definition of the ISA's bits).
* ``layout.py`` / ``pwl.py``: tensor layouts (int4 packing) and activation
  tables, i.e. data the compiler writes into device memory.
* ``insn_model.py``: each instruction's memory accesses, compute cycles and
  latency, shared by the simulator and the compiler.
* ``hbm_model.py``: how long a memory channel takes to move an instruction's
  bytes (port, HBM pseudo-channel: refresh, rows, turnaround, outstanding
  bursts), shared by the simulator's timing model and ``insn_model.py``.
* ``resources.py``: the resource estimate (LUT, FF, DSP, BRAM36, URAM per
  unit) as formulas of a target's fields, and the FPGA parts to check it against.

This package imports nothing from the compiler; everything in it is data or a
pure function of data.
"""
from dlavm.target.derived import Figures, Region
from dlavm.target.loader import builtin_names, get_target, list_targets
from dlavm.target.schema import ADDRESS_UNIT, FIELD_NAMES, Target, TargetError, target_from_dict

__all__ = ["Target", "TargetError", "Figures", "Region", "get_target", "list_targets",
           "builtin_names", "target_from_dict", "FIELD_NAMES", "ADDRESS_UNIT"]
