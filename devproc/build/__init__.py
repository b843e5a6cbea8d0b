"""The compile side of DevProc (torch): models, ``devproc.compile``, the JIT, the C++ host program."""
from .compile import Library, compile  # noqa: A004
from .jit import jit_stats, set_options
from .models import TorchModel, load_torch_model


def build_cpp(directory, sanitize: bool = False):
    """Compile a saved pipeline's C++ host program (devproc.build.cpp)."""
    from .cpp import build_cpp as build
    return build(directory, sanitize=sanitize)

__all__ = ["Library", "TorchModel", "build_cpp", "compile", "jit_stats", "load_torch_model", "set_options"]
