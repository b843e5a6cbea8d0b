"""Running a saved pipeline with numpy alone (doc/devproc.md): ``Runtime(devproc.load(dir)).run(...)``."""
from .library import SavedLibrary, load
from .runtime import KVState, Runtime

__all__ = ["KVState", "Runtime", "SavedLibrary", "load"]
