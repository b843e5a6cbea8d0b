"""What a model recipe or a user factory hands the compiler."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class ModelDimError(ValueError):
    """Dim values a model's inputs cannot be made at (unknown dim, out of its bounds)."""


@dataclass
class ModelSpec:
    """A torch module plus everything needed to export and exercise it.

    ``dynamic_shapes`` is torch.export's spec (``torch.export.Dim`` per
    dynamic axis). ``make_inputs(**dims)`` returns deterministic example inputs
    for given dim values (e.g. ``seq=7``), so tests and the CLI can run the
    model at any size within its bounds. ``shape_only`` models live on torch's
    ``meta`` device: they import and compile but cannot be executed.
    ``extras`` holds what a loader knows beyond that (``hf:DIR`` checkpoints:
    ``checkpoint``, ``model_type``, ``tokenizer``).
    """

    name: str
    module: Any
    example_inputs: tuple
    dynamic_shapes: Any = None
    make_inputs: Callable | None = None
    dims: dict = field(default_factory=dict)  # dim name -> (min, max)
    shape_only: bool = False
    description: str = ""
    extras: dict = field(default_factory=dict)  # loader-specific facts, e.g. hf: checkpoint and tokenizer paths

    def inputs_at(self, **dims) -> tuple:
        """``make_inputs(**dims)`` after checking every name is one of ``self.dims`` and every value an
        integer within its bounds; :class:`ModelDimError` names the dim, the value and the bounds."""
        known = ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in self.dims.items()) or "none"
        for name, value in dims.items():
            if name not in self.dims:
                raise ModelDimError(f"model '{self.name}' has no dynamic dim {name!r} (dims: {known})")
            lo, hi = self.dims[name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ModelDimError(f"model '{self.name}': {name}={value!r} is outside its bounds [{lo}, {hi}]")
        if self.make_inputs is None:
            raise ModelDimError(f"model '{self.name}' has no make_inputs: its inputs cannot be made at {dims}")
        return tuple(self.make_inputs(**dims))

    @classmethod
    def from_factory_result(cls, name: str, result) -> "ModelSpec":
        """Accept a ``ModelSpec`` or a ``(module, example_inputs[, dynamic_shapes])`` tuple."""
        if isinstance(result, ModelSpec):
            return result
        if isinstance(result, tuple) and len(result) in (2, 3):
            module, inputs = result[0], tuple(result[1])
            dyn = result[2] if len(result) == 3 else None
            return cls(name, module, inputs, dyn)
        raise TypeError(f"factory '{name}' must return a ModelSpec or (module, example_inputs[, "
                        f"dynamic_shapes]), got {type(result).__name__}")
