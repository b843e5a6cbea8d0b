"""Graph passes: each one job, with a docstring saying what holds afterwards."""
from .canonicalize import RULES as CANONICALIZE_RULES
from .canonicalize import canonicalize
from .rewrite import Rule, rewrite

IMPORT_PIPELINE = [canonicalize]

__all__ = ["CANONICALIZE_RULES", "IMPORT_PIPELINE", "Rule", "canonicalize", "rewrite"]
from .device_pipeline import device_pipeline, host_ops, report_host_ops
from .fold import fold_views, fold_weights
from .fold_batchnorm import fold_batchnorm
from .fuse import FUSIONS, fuse
from .legalize import legalize, legalize_patterns
from .quantize import fake_quant, fake_quantized_module, fake_quantized_params, quantize
__all__ += ["device_pipeline", "host_ops", "report_host_ops", "fold_batchnorm", "fold_views", "fold_weights", "FUSIONS",
            "fuse", "legalize", "legalize_patterns", "fake_quant", "fake_quantized_module", "fake_quantized_params", "quantize"]
from .kv_cache import KVCacheError, add_kv_cache, kv_cache
__all__ += ["KVCacheError", "add_kv_cache", "kv_cache"]
from .pad_heads import pad_heads, pad_heads_module
__all__ += ["pad_heads", "pad_heads_module"]
