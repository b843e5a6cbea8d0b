"""``torch.compile(model, backend="dlavm")``: the dynamo backend, its partitioner and ``explain``
(doc/torch_compile.md)."""
from .backend import DEFAULTS, STATS, BackendError, Options, dlavm_backend, reset_stats
from .explain import Explanation, explain

__all__ = ["dlavm_backend", "explain", "Explanation", "BackendError", "Options", "DEFAULTS", "STATS",
           "reset_stats"]
