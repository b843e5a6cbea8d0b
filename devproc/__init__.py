"""DevProc: whole deployment pipelines (pre-processing, models, post-processing, generate loops) written
once in Python, run just in time, or saved ahead of time and run from Python without torch or from a
generated C++ host program (doc/devproc.md).

``import devproc`` loads the language only (numpy); compiling (``compile``, ``load_torch_model``, a JIT
call) imports ``devproc.build`` and torch on first use, and ``devproc.runtime`` runs a saved pipeline
with numpy alone.
"""
from .lang import (Bool, DevprocError, Float16, Float32, Image, Int32, Int64, KVCache, String, Tensor, Tokenizer,
                   TorchModel, UInt8, const, input, kernel, load_tokenizer)
from .lang.api import OP_FUNCTIONS as _OPS

globals().update(_OPS)

from .lang.trace import install_jit

_BUILD = ("compile", "load_torch_model", "set_options", "jit_stats", "build_cpp", "Library")


def _jit_call(kernel, args, kwargs):
    from .build.jit import jit_call
    return jit_call(kernel, args, kwargs)


install_jit(_jit_call)


def __getattr__(name):
    """The compile side (torch) and the runtime, imported on first use."""
    import importlib
    if name in _BUILD or name == "build":
        build = importlib.import_module("devproc.build")
        return build if name == "build" else getattr(build, name)
    if name in ("runtime", "load"):
        runtime = importlib.import_module("devproc.runtime")
        return runtime if name == "runtime" else runtime.load
    raise AttributeError(f"module 'devproc' has no attribute {name!r}")


__all__ = ["Bool", "DevprocError", "Float16", "Float32", "Image", "Int32", "Int64", "KVCache", "String", "Tensor",
           "Tokenizer", "TorchModel", "UInt8", "const", "input", "kernel", "load_tokenizer", *_OPS, *_BUILD, "load", "runtime"]
