"""DLAVM: compile PyTorch models to an FPGA LLM accelerator.

Layers (data flows one way, lower layers never import higher ones):
``sym`` -> ``ir`` -> ``frontend`` / ``reference`` -> passes -> task IR ->
backend -> runtime. ``target`` is plain data describing the hardware.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``dlavm.compile`` / ``dlavm.load`` are loaded on first use so that
    # ``import dlavm.runtime`` on a deployment host pulls in neither torch nor
    # the compiler.
    if name in ("compile", "load"):
        from . import compiler
        return getattr(compiler, name)
    if name == "compile_llm":
        from .llm import compile_llm
        return compile_llm
    if name == "explain":  # torch.compile(backend="dlavm")'s partition report (doc/torch_compile.md)
        from .dynamo import explain
        return explain
    if name == "host_op":  # the registry of user host ops (doc/host_ops.md): imports nothing of dlavm
        from .host_ops import host_op
        return host_op
    raise AttributeError(f"module 'dlavm' has no attribute {name!r}")
