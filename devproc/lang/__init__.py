"""DevProc's language: types, tracing, the pipeline graph and the op registry (numpy only; doc/devproc.md)."""
from .api import OP_FUNCTIONS, PUBLIC_OPS, const, input, load_tokenizer, tokenizer_from_bytes  # noqa: A004
from .errors import DevprocError
from .graph import Graph, graph_from_json
from .ops import OPS
from .trace import ConstArray, InputSpec, Kernel, ModelHandle, TokenizerHandle, Value, kernel, trace
from .types import (Bool, DType, Float16, Float32, Image, Int32, Int64, KVCache, String, Tensor, Tokenizer,
                    TorchModel, Type, UInt8)

__all__ = ["OP_FUNCTIONS", "OPS", "PUBLIC_OPS", "Bool", "ConstArray", "DType", "DevprocError", "Float16", "Float32",
           "Graph", "Image", "InputSpec", "Int32", "Int64", "KVCache", "Kernel", "ModelHandle", "String", "Tensor",
           "TokenizerHandle", "Tokenizer", "TorchModel", "Type", "UInt8", "Value", "const", "graph_from_json",
           "input", "kernel", "load_tokenizer", "tokenizer_from_bytes", "trace"]
