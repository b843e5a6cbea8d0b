"""``devproc.load_torch_model``: a torch model as a pipeline constant (doc/devproc.md, "Types")."""
from __future__ import annotations

import hashlib
import re

import torch

from ..lang.errors import DevprocError
from ..lang.trace import ModelHandle
from ..lang.types import TensorType, dtype_of

_TORCH_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.int64: "int64", torch.int32: "int32",
                 torch.bool: "bool", torch.uint8: "uint8", torch.bfloat16: "float32"}


class TorchModel(ModelHandle):
    """A torch module with its example inputs and dynamic shapes, or a MODEL string (recipe, ``hf:DIR``,
    ``file.py:factory``: doc/models.md). Compiled by ``devproc.compile`` for the use the pipeline makes
    of it: ``model(x)`` (its ``forward``) or generation (prefill / decode / decode_loop)."""

    def __init__(self, module, example_inputs: tuple, dynamic_shapes, name: str, source: str | None,
                 max_seq: int | None, dims: dict):
        self.module, self.example_inputs, self.dynamic_shapes = module, tuple(example_inputs), dynamic_shapes
        self.name, self.source, self.max_seq, self.dims = name, source, max_seq, dims
        self._out_types: list | None = None
        self._hash: tuple | None = None
        self._loaded = self._stamp()

    def _stamp(self) -> tuple:
        """Which tensors the module holds and their version counters (changes when a weight is replaced or
        changed in place)."""
        return tuple((k, id(v), v._version) for k, v in self.module.state_dict(keep_vars=True).items())

    def __repr__(self) -> str:
        return f"<devproc TorchModel {self.name}>"

    def output_types(self) -> list:
        """The types of forward's results (from one run on the example inputs)."""
        if self._out_types is None:
            with torch.no_grad():
                out = self.module(*self.example_inputs)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            types = []
            for k, o in enumerate(outs):
                if not isinstance(o, torch.Tensor) or o.dtype not in _TORCH_DTYPES:
                    raise DevprocError(f"model '{self.name}': output {k} is not a tensor of a dtype DevProc holds")
                types.append(TensorType(dtype_of(_TORCH_DTYPES[o.dtype]), o.dim()))
            self._out_types = types
        return self._out_types

    def weights_sha256(self) -> str:
        """SHA-256 of every parameter and buffer (name, dtype, shape, bytes); recomputed only when a tensor
        was replaced or changed in place since the last time."""
        state = self.module.state_dict(keep_vars=True)
        stamp = self._stamp()
        if self._hash is None or self._hash[0] != stamp:
            h = hashlib.sha256()
            for k, v in sorted(state.items()):
                t = v.detach().cpu().contiguous()
                h.update(f"{k}|{t.dtype}|{list(t.shape)}|".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self._hash = (stamp, h.hexdigest())
        return self._hash[1]

    def key(self) -> dict:
        """What decides this model's compiled program (a part of the JIT key)."""
        return {"name": self.name, "source": self.source, "max_seq": self.max_seq, "weights": self.weights_sha256(),
                "dims": {k: list(v) for k, v in sorted(self.dims.items())},
                "inputs": [[str(x.dtype), list(x.shape)] for x in self.example_inputs]}

    def seq_bound(self) -> int:
        if self.max_seq is not None:
            return self.max_seq
        if len(self.dims) == 1:
            return next(iter(self.dims.values()))[1]
        raise DevprocError(f"model '{self.name}' used for generation needs max_seq= (the context its KV cache "
                           f"holds): it has dims {sorted(self.dims) or 'none'}")

    def compile(self, use: str, target: str, weights: str):
        """The dlavm CompiledModel for ``use`` (``forward`` or ``llm``)."""
        from dlavm.compiler import CompileError, compile as dlavm_compile
        # a MODEL string is compiled as dlavm compiles it (its source recorded, a checkpoint's tokenizer
        # bundled) while the module still holds the weights it was loaded with; after a change, the module
        source = self.source if self._stamp() == self._loaded else None
        try:
            if use == "llm":
                from dlavm.llm import compile_llm
                if source is not None:
                    return compile_llm(source, target=target, weights=weights, max_seq=self.max_seq,
                                       name=self.name)
                from dlavm.frontend.torch import from_torch
                mod = from_torch(self.module, self.example_inputs, self.dynamic_shapes)
                return compile_llm(mod, target=target, weights=weights, max_seq=self.seq_bound(), name=self.name)
            if source is not None:
                return dlavm_compile(source, target=target, weights=weights, max_seq=self.max_seq,
                                     name=self.name)
            return dlavm_compile(self.module, self.example_inputs, self.dynamic_shapes, target=target,
                                 weights=weights, name=self.name)
        except CompileError as e:
            raise DevprocError(f"model '{self.name}': {str(e).splitlines()[0]}") from None


def _name(s: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", s).strip("_")[:40] or "model"
    return out if not out[0].isdigit() else "m_" + out


def load_torch_model(model, example_inputs=None, dynamic_shapes=None, *, max_seq: int | None = None,
                     name: str | None = None) -> TorchModel:
    """A TorchModel: ``model`` is a MODEL string (``"tiny-llama"``, ``"hf:DIR"``, ``"file.py:factory"``,
    loaded as ``dlavm`` loads it, ``max_seq`` bounding its sequence dim) or a ``torch.nn.Module`` with its
    ``example_inputs`` and torch.export ``dynamic_shapes`` (``max_seq``: the KV cache's context when the
    pipeline generates with it)."""
    if isinstance(model, str):
        from dlavm.models import ModelLoadError, ModelNotFound, load_model
        try:
            spec = load_model(model, **({"max_seq": max_seq} if max_seq is not None else {}))
        except (ModelLoadError, ModelNotFound, ValueError) as e:
            raise DevprocError(f"model {model!r}: {str(e).splitlines()[0]}") from None
        if spec.shape_only:
            raise DevprocError(f"model {model!r} has no weights (shape only): it cannot run in a pipeline")
        return TorchModel(spec.module.eval(), spec.example_inputs, spec.dynamic_shapes, _name(name or spec.name),
                          model, max_seq, dict(spec.dims))
    if not isinstance(model, torch.nn.Module):
        raise DevprocError(f"load_torch_model takes a MODEL string or a torch.nn.Module, got {type(model).__name__}")
    if example_inputs is None or not isinstance(example_inputs, (tuple, list)):
        raise DevprocError("load_torch_model of a module needs example_inputs (a tuple, one per forward argument)")
    from dlavm.models.spec import derive_dims
    dims: dict = {}
    try:
        if dynamic_shapes is not None:   # None: every size is the example's
            dynamic_shapes, dims, _ = derive_dims(model, tuple(example_inputs), dynamic_shapes, max_seq)
    except ValueError as e:
        raise DevprocError(f"model {type(model).__name__}: {str(e).splitlines()[0]}") from None
    return TorchModel(model.eval(), tuple(example_inputs), dynamic_shapes, _name(name or type(model).__name__), None,
                      max_seq, dict(dims))

