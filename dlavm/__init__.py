"""DLAVM: compile PyTorch models to an FPGA LLM accelerator.

Layers (data flows one way, lower layers never import higher ones):
``sym`` -> ``ir`` -> ``frontend`` / ``reference`` -> passes -> task IR ->
backend -> runtime. ``target`` is plain data describing the hardware.
"""

__version__ = "0.1.0"
