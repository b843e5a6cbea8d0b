"""What a model recipe or a user factory hands the compiler (the factory contract: doc/models.md)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable


class ModelDimError(ValueError):
    """Dim values a model's inputs cannot be made at (unknown dim, out of its bounds), or a
    ``dynamic_shapes`` spec whose dims cannot be named and bounded."""


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
        integer within its bounds; :class:`ModelDimError` names the dim, the value and the bounds.
        With no dims given and no ``make_inputs``, the example inputs."""
        known = ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in self.dims.items()) or "none"
        for name, value in dims.items():
            if name not in self.dims:
                raise ModelDimError(f"model '{self.name}' has no dynamic dim {name!r} (dims: {known})")
            lo, hi = self.dims[name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ModelDimError(f"model '{self.name}': {name}={value!r} is outside its bounds [{lo}, {hi}]")
        if self.make_inputs is None:
            if not dims:
                return tuple(self.example_inputs)
            raise ModelDimError(f"model '{self.name}' has no make_inputs: its inputs cannot be made at {dims}")
        return tuple(self.make_inputs(**dims))

    def check_points(self) -> list:
        """The dim bindings a check runs at: for each dim its lower bound, a middle value and its upper
        bound (the others at their defaults); ``[{}]`` (once, at the example inputs) without dims."""
        if not self.dims:
            return [{}]
        return [{k: v} for k, (lo, hi) in self.dims.items() for v in sorted({lo, (lo + hi) // 2 + 1, hi})]

    @classmethod
    def from_factory_result(cls, name: str, result, max_seq: int | None = None) -> "ModelSpec":
        """Accept a ``ModelSpec`` or a ``(module, example_inputs[, dynamic_shapes])`` tuple.

        Where ``dims`` or ``make_inputs`` are missing they are derived from ``dynamic_shapes`` and the
        example inputs (:func:`derive_dims`, :func:`input_maker`); ``max_seq`` bounds a ``Dim`` that
        has no upper bound. Raises ``TypeError`` for a result of another kind and
        :class:`ModelDimError` for dims that cannot be named or bounded.
        """
        if isinstance(result, ModelSpec):
            spec = result
        elif isinstance(result, tuple) and len(result) in (2, 3):
            module, inputs = result[0], result[1]
            if not isinstance(inputs, (tuple, list)):
                raise TypeError(f"factory '{name}' returned example_inputs of type {type(inputs).__name__}; "
                                "give a tuple of the forward's arguments, e.g. (torch.randn(1, 8),)")
            if not callable(module):
                raise TypeError(f"factory '{name}' returned a {type(module).__name__} as the module; "
                                "give a torch.nn.Module")
            spec = cls(name, module, tuple(inputs), result[2] if len(result) == 3 else None)
        else:
            got = (f"a tuple of {len(result)} items" if isinstance(result, tuple)
                   else type(result).__name__)
            raise TypeError(f"factory '{name}' must return a ModelSpec or (module, example_inputs[, "
                            f"dynamic_shapes]), got {got}")
        if spec.dynamic_shapes is not None and not spec.dims:
            spec.dynamic_shapes, spec.dims, axes = derive_dims(spec.module, spec.example_inputs,
                                                               spec.dynamic_shapes, max_seq, spec.name)
            if spec.make_inputs is None:
                spec.make_inputs = input_maker(spec.example_inputs, axes)
        return spec


# --- dims and inputs from torch.export's dynamic_shapes ------------------------------------------

def _dim_kind(d) -> str:
    """'none' (static axis), 'dim', 'derived', 'hint' (Dim.AUTO / DYNAMIC / STATIC) or 'other'."""
    if d is None:
        return "none"
    t = type(d).__name__
    if t == "_DimHint":
        return "static" if "STATIC" in repr(d) else "hint"
    if t == "_DerivedDim" or (hasattr(d, "root") and hasattr(d, "fn")):
        return "derived"
    if hasattr(d, "__name__") and hasattr(d, "min") and hasattr(d, "max"):
        return "dim"
    return "other"


def _bound(v):
    """An int bound, or None for torch's infinity (``int_oo``)."""
    try:
        v = int(v)
    except Exception:  # noqa: BLE001 -- torch's int_oo refuses int() in more than one way
        return None
    return v if abs(v) < 2**62 else None


def _walk(spec, example, where: str, out: list) -> None:
    """Pair ``spec`` with ``example`` (tensors, tuples/lists, dicts, nested alike) and append
    ``(path, axis, dim object, where)`` for every dynamic axis; ``path`` indexes into the inputs."""
    import torch
    if spec is None:
        return
    if isinstance(example, torch.Tensor):
        if isinstance(spec, dict):
            items = list(spec.items())
        elif isinstance(spec, (tuple, list)):
            items = list(enumerate(spec))
        else:
            raise ModelDimError(f"dynamic_shapes for {where} (a tensor of shape {list(example.shape)}) must be "
                                f"a dict {{axis: Dim}} or a tuple with one entry per axis, got {type(spec).__name__}")
        for axis, d in items:
            if isinstance(axis, bool) or not isinstance(axis, int) or not -example.dim() <= axis < example.dim():
                raise ModelDimError(f"dynamic_shapes for {where}: axis {axis!r} is not an axis of its "
                                    f"shape {list(example.shape)}")
            out.append(((), axis % example.dim(), d, f"{where} axis {axis % example.dim()}"))
        return
    if isinstance(example, (tuple, list)) and isinstance(spec, (tuple, list)) and len(spec) == len(example):
        for i, (s, x) in enumerate(zip(spec, example)):
            sub: list = []
            _walk(s, x, f"{where}[{i}]", sub)
            out += [((i,) + p, a, d, w) for p, a, d, w in sub]
        return
    if isinstance(example, dict) and isinstance(spec, dict) and set(spec) <= set(example):
        for k, s in spec.items():
            sub = []
            _walk(s, example[k], f"{where}[{k!r}]", sub)
            out += [((k,) + p, a, d, w) for p, a, d, w in sub]
        return
    raise ModelDimError(f"dynamic_shapes for {where} does not match its example input "
                        f"({type(spec).__name__} for a {type(example).__name__})")


def _per_input(module, example_inputs: tuple, dynamic_shapes) -> list:
    """``dynamic_shapes`` as one spec per example input (a dict is keyed by the forward's parameter names)."""
    if isinstance(dynamic_shapes, dict):
        try:
            params = list(inspect.signature(module.forward).parameters)
        except (TypeError, ValueError, AttributeError):
            params = []
        unknown = sorted(set(dynamic_shapes) - set(params[:len(example_inputs)]))
        if unknown:
            raise ModelDimError(f"dynamic_shapes names {unknown}, which are not arguments of "
                                f"{type(module).__name__}.forward{tuple(params)}")
        return [dynamic_shapes.get(p) for p in params[:len(example_inputs)]]
    if isinstance(dynamic_shapes, (tuple, list)):
        if len(dynamic_shapes) != len(example_inputs):
            raise ModelDimError(f"dynamic_shapes has {len(dynamic_shapes)} entries for {len(example_inputs)} "
                                "example inputs: give one per input (None for an input with no dynamic axis)")
        return list(dynamic_shapes)
    raise ModelDimError(f"dynamic_shapes must be a tuple (one entry per input) or a dict keyed by the "
                        f"forward's argument names, got {type(dynamic_shapes).__name__}")


def derive_dims(module, example_inputs: tuple, dynamic_shapes, max_seq: int | None = None,
                name: str = "model") -> tuple:
    """``(dynamic_shapes, dims, axes)`` read off torch.export's ``dynamic_shapes``.

    ``dims`` maps each ``Dim``'s name to ``(min, max)``: a ``Dim`` without an upper bound takes
    ``max_seq`` (it is then rebuilt bounded in the returned ``dynamic_shapes``) or is refused, naming
    it; a lower bound below 1 (torch's default 0) is checked from 1. ``axes`` lists
    ``(input path, axis, dim name, size function)`` for :func:`input_maker`. ``Dim.STATIC`` marks a
    static axis; ``Dim.AUTO`` / ``Dim.DYNAMIC`` name no dim and are refused: dlavm's dims are named
    and bounded (doc/models.md)."""
    import torch
    per_input = _per_input(module, example_inputs, dynamic_shapes)
    found: list = []
    for i, (spec, x) in enumerate(zip(per_input, example_inputs)):
        sub: list = []
        _walk(spec, x, f"input {i}", sub)
        found += [((i,) + p, a, d, w) for p, a, d, w in sub]
    dims: dict = {}
    rebuilt: dict = {}   # name -> bounded Dim replacing an unbounded one
    axes: list = []
    for path, axis, d, where in found:
        kind = _dim_kind(d)
        if kind in ("none", "static"):
            continue
        if kind == "hint":
            raise ModelDimError(f"model '{name}': {where} is {d!r}, which names no dim: use "
                                "torch.export.Dim('NAME', min=..., max=...) so the dim has a name and bounds")
        if kind == "other":
            raise ModelDimError(f"model '{name}': {where} is {d!r}, not a torch.export.Dim")
        root = d.root if kind == "derived" else d
        rname = root.__name__
        lo, hi = _bound(root.min), _bound(root.max)
        if hi is None:
            if max_seq is None:
                raise ModelDimError(f"model '{name}': dim '{rname}' ({where}) has no upper bound: give it one "
                                    f"(Dim('{rname}', max=N)), or give the factory a max_seq parameter and "
                                    "pass --max-seq N")
            if kind == "derived":
                raise ModelDimError(f"model '{name}': dim '{rname}' has no upper bound and is used in the "
                                    f"derived dim '{d.__name__}' ({where}): give it one (Dim('{rname}', max=N))")
            hi = max_seq
            rebuilt.setdefault(rname, torch.export.Dim(rname, min=max(lo or 0, 0), max=max_seq))
        lo = max(lo or 0, 1)
        if lo > hi:
            raise ModelDimError(f"model '{name}': dim '{rname}' has bounds [{lo}, {hi}]: no size fits them")
        if rname in dims and dims[rname] != (lo, hi):
            raise ModelDimError(f"model '{name}': two dims named '{rname}' with different bounds "
                                f"{list(dims[rname])} and {[lo, hi]}")
        dims[rname] = (lo, hi)
        size = (lambda v, fn=d.fn: int(fn(v))) if kind == "derived" else (lambda v: v)
        axes.append((path, axis, rname, size))
    if rebuilt:
        dynamic_shapes = _replace_dims(dynamic_shapes, rebuilt)
    return dynamic_shapes, dims, axes


def _replace_dims(spec, rebuilt: dict):
    if isinstance(spec, dict):
        return {k: _replace_dims(v, rebuilt) for k, v in spec.items()}
    if isinstance(spec, (tuple, list)):
        return type(spec)(_replace_dims(v, rebuilt) for v in spec)
    if _dim_kind(spec) == "dim" and spec.__name__ in rebuilt:
        return rebuilt[spec.__name__]
    return spec


def _get(x, path):
    for k in path:
        x = x[k]
    return x


def input_maker(example_inputs: tuple, axes: list) -> Callable:
    """``make_inputs(seed=0, **dims)``: the example inputs with each dynamic axis resized to its dim's value.

    A dim not given keeps the example's size; an input whose shape does not change is the example
    itself; a resized one is new, deterministic data of the example's dtype: floats are seeded
    ``randn``, integers and bools seeded ``randint`` within the example's observed ``[min, max]``
    (token ids stay valid ids). Static axes never change."""
    import torch

    def resized(x, sizes: dict, gen):
        if x.is_floating_point():
            return torch.randn(sizes, generator=gen, dtype=torch.float32).to(x.dtype)
        lo, hi = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
        return torch.randint(lo, hi + 1, sizes, generator=gen).to(x.dtype)

    def make(seed: int = 0, **dims):
        by_tensor: dict = {}
        for path, axis, dname, size in axes:
            if dname in dims:
                by_tensor.setdefault(path, {})[axis] = size(dims[dname])
        gen = torch.Generator().manual_seed(seed)

        def rebuild(x, path):
            if path in by_tensor:
                shape = list(x.shape)
                for axis, n in by_tensor[path].items():
                    shape[axis] = n
                return x if shape == list(x.shape) else resized(x, shape, gen)
            if isinstance(x, (tuple, list)):
                return type(x)(rebuild(v, path + (i,)) for i, v in enumerate(x))
            if isinstance(x, dict):
                return {k: rebuild(v, path + (k,)) for k, v in x.items()}
            return x
        return tuple(rebuild(x, (i,)) for i, x in enumerate(example_inputs))
    return make
