"""LLM compilation: a decoder-only causal LM -> one artifact with KV-cached generation entries.

:func:`compile_llm` imports the model with its token count bounded by the
maximum context, runs the device pipeline, gives the graph a persistent
device KV cache (:mod:`dlavm.passes.kv_cache`) and builds the artifact.
The result runs :meth:`~dlavm.compiler.CompiledModel.generate` (Python) and
carries a C++ driver with a greedy generation loop. See doc/llm.md.
"""
from .compile import compile_llm, llm_module

__all__ = ["compile_llm", "llm_module"]
