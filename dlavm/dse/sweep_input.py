"""Reading a sweep (doc/dse.md, "The sweep"): ``--vary`` text, sweep files (JSON, or YAML with PyYAML)
and the command line's other options, into a checked :class:`~dlavm.dse.space.SweepSpec`.

Every refusal is a :class:`~dlavm.dse.space.SweepError`, one line naming where the value came from
(``--vary 'tin=1.5'``, ``sweep file 'x.json': vary.tin``), the field, the value and the rule.
"""
from __future__ import annotations

from pathlib import Path

from dlavm.target import Target, TargetError, builtin_names, get_target
from dlavm.target.loader import read_object_file

from .space import (FILE_KEYS, SAMPLE_METHODS, Axis, SweepError, SweepSpec, _INT_TEXT, _KeyedError, _kind_of,
                    _parse_token, _prefixed, _refuse_unknown)


def parse_vary(text: str, base: Target | None = None) -> Axis:
    """The axis of one ``--vary`` option: ``NAME=V1,V2,...``, ``NAME=LO:HI:STEP`` or ``NAME=LO:HI``
    (a continuous range). Values are typed from the field's type in ``base``'s schema (the
    Target dataclass; ``base`` itself is not consulted for values). Raises SweepError naming the option.
    """
    where = f"--vary {text!r}"
    if not isinstance(text, str) or "=" not in text:
        raise SweepError(f"{where}: must be NAME=V1,V2,... or NAME=LO:HI[:STEP]")
    name, _, rest = text.partition("=")
    name = name.strip()
    with _prefixed(where):
        kind = _kind_of(name)
        if ":" in rest:
            if "," in rest:
                raise SweepError(f"{name}: give a list V1,V2,... or a range LO:HI[:STEP], not both")
            bounds = rest.split(":")
            if len(bounds) not in (2, 3) or not all(b.strip() for b in bounds):
                raise SweepError(f"{name}: range {rest!r} must be LO:HI or LO:HI:STEP")
            step_kind = "int" if kind == "posint" else kind
            lo = _parse_token(f"{name} range start", kind, bounds[0])
            hi = _parse_token(f"{name} range end", kind, bounds[1])
            step = _parse_token(f"{name} range step", step_kind, bounds[2]) if len(bounds) == 3 else None
            return Axis(name, lo=lo, hi=hi, step=step)
        return Axis(name, tuple(_parse_token(name, kind, tok) for tok in rest.split(",")))


def _axis_from_data(name: object, spec: object) -> Axis:
    """An axis from sweep-file data: a list of values, one value, or ``{"range": [LO, HI], "step": S}``."""
    _kind_of(name)
    if isinstance(spec, dict):
        _refuse_unknown(name, spec, ("range", "step"))
        bounds = spec.get("range")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise SweepError(f"{name}: range = {bounds!r} must be a list [LO, HI]")
        return Axis(name, lo=bounds[0], hi=bounds[1], step=spec.get("step"))
    if isinstance(spec, list):
        return Axis(name, tuple(spec))
    if isinstance(spec, (dict, tuple)) or spec is None:
        raise SweepError(f"{name} = {spec!r} must be a list of values, one value or "
                         "{\"range\": [LO, HI], \"step\": S}")
    return Axis(name, (spec,))


def read_sweep_file(path: str | Path) -> dict:
    """The object of a sweep file (JSON; YAML for .yaml/.yml when PyYAML is installed), keys checked.

    Refuses, naming the file: what :func:`dlavm.target.loader.read_object_file` refuses (a missing file,
    bad syntax, a repeated key, a top level that is not an object) and keys other than :data:`FILE_KEYS`.
    A NaN or Infinity is refused where it is used, naming its field.
    """
    path = Path(path)
    where = f"sweep file {str(path)!r}"
    data = read_object_file(path, where, f"an object with keys {', '.join(FILE_KEYS)}", SweepError)
    _refuse_unknown(where, data, FILE_KEYS)
    return data


def _parse_sample(text: object) -> tuple[str, int | None]:
    """``grid`` | ``random:N`` | ``lhs:N`` -> (method, N)."""
    if not isinstance(text, str):
        raise SweepError(f"sample = {text!r} must be grid, random:N or lhs:N")
    method, colon, count = text.strip().partition(":")
    if method not in SAMPLE_METHODS or (method == "grid") == bool(colon):
        raise SweepError(f"sample {text!r} must be grid, random:N or lhs:N")
    if method == "grid":
        return method, None
    if not _INT_TEXT.fullmatch(count.strip()) or int(count) < 1:
        raise SweepError(f"sample {text!r}: N = {count!r} must be an integer >= 1")
    return method, int(count)


def _file_sample(where: str, value: object) -> tuple[str, int | None, int | None]:
    """A sweep file's sample: ``"lhs:64"`` or ``{"method": "lhs", "n": 64, "seed": 1}``."""
    if isinstance(value, str):
        with _prefixed(where):
            return (*_parse_sample(value), None)
    if not isinstance(value, dict):
        raise SweepError(f"{where}: sample = {value!r} must be \"grid\", \"random:N\", \"lhs:N\" or "
                         "{\"method\": ..., \"n\": N, \"seed\": S}")
    _refuse_unknown(f"{where}: sample", value, ("method", "n", "seed"))
    method, n, seed = value.get("method"), value.get("n"), value.get("seed")
    if method not in SAMPLE_METHODS:
        raise SweepError(f"{where}: sample.method = {method!r} must be one of {', '.join(SAMPLE_METHODS)}")
    for key, v in (("n", n), ("seed", seed)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise SweepError(f"{where}: sample.{key} = {v!r} must be an integer")
    return method, n, seed


def build_spec(model: str | None, target: str | None, vary: list[str] | None, seq: list[int] | None,
               ctx: list[int] | None, sample: str | None, seed: int | None, llm: bool | None,
               sweep_file: str | None) -> SweepSpec:
    """The sweep of the command line, over an optional sweep file (see doc/dse.md, "The sweep").

    Every command-line value given (not None / not empty) overrides the file's: ``model``,
    ``target``, ``sample``, ``seed``, ``llm``; ``--seq`` / ``--ctx`` replace the file's ``seq`` /
    ``ctx`` (whether the file gives them as keys or under ``vary``); a ``--vary NAME`` replaces the
    file's axis NAME in its place. Axis order: the file's ``vary`` (then its ``ctx``, ``seq``), then
    new ``--vary`` names as given, then ``--ctx``, ``--seq``, then run axes named nowhere with
    :data:`DEFAULTS`. A relative ``target`` path in the file is taken from the file's folder when it
    does not exist from the working directory. Each value is typed against the base target's schema;
    the base target is loaded (an unknown target is refused here, naming where it came from).
    """
    origin: dict[str, str] = {}          # key (model, target, sample, llm, or an axis name) -> where it came from
    axes: dict[str, Axis] = {}
    file_sample: tuple[str, int | None, int | None] = ("grid", None, None)
    file_target = file_model = file_llm = None
    if sweep_file is not None:
        path = Path(sweep_file)
        where = f"sweep file {str(path)!r}"
        data = read_sweep_file(path)
        file_model, file_target, file_llm = data.get("model"), data.get("target"), data.get("llm")
        if "model" in data and (not isinstance(file_model, str) or not file_model.strip()):
            raise SweepError(f"{where}: model = {file_model!r} must be a non-empty string naming a model")
        if "target" in data:
            if not isinstance(file_target, str) or not file_target.strip():
                raise SweepError(f"{where}: target = {file_target!r} must be a built-in target name or a file path")
            beside = path.parent / file_target
            if (file_target not in builtin_names() and not Path(file_target).is_absolute()
                    and not Path(file_target).exists() and beside.exists()):
                file_target = str(beside)
        if "llm" in data and not isinstance(file_llm, bool):
            raise SweepError(f"{where}: llm = {file_llm!r} must be true or false")
        vary_data = data.get("vary", {})
        if not isinstance(vary_data, dict):
            raise SweepError(f"{where}: vary = {vary_data!r} must be an object NAME -> values")
        for name in ("ctx", "seq"):
            if name in data and name in vary_data:
                raise SweepError(f"{where}: {name} is given both as a key and under vary; give it once")
        for key, value in [*vary_data.items(), *((n, data[n]) for n in ("ctx", "seq") if n in data)]:
            label = f"vary.{key}" if key in vary_data else key
            with _prefixed(f"{where}: {label}"):
                axes[key] = _axis_from_data(key, value)
            origin[key] = f"{where}: {label}"
        if "sample" in data:
            file_sample = _file_sample(where, data["sample"])
            origin["sample"] = f"{where}: sample"
        for key in ("model", "target", "llm"):
            if key in data:
                origin[key] = f"{where}: {key}"
        if file_sample[2] is not None:
            origin["seed"] = f"{where}: sample.seed"

    if model is not None:
        origin["model"] = "MODEL"
    model = model if model is not None else file_model
    if model is None:
        raise SweepError("no MODEL: give it on the command line or as 'model' in the sweep file")
    if target is not None:
        origin["target"] = "--target"
    target = target if target is not None else (file_target if file_target is not None else "vcu128")
    try:
        base = get_target(target)
    except TargetError as exc:
        raise SweepError(f"{origin.get('target', '--target')}: {exc}") from None
    if llm is not None:
        origin["llm"] = "--llm/--no-llm"
    llm = llm if llm is not None else (file_llm if file_llm is not None else True)

    given: set[str] = set()
    for text in vary or []:
        axis = parse_vary(text, base)
        if axis.name in given:
            raise SweepError(f"--vary {text!r}: {axis.name} is varied twice on the command line; give it once")
        given.add(axis.name)
        axes[axis.name] = axis
        origin[axis.name] = f"--vary {text!r}"
    for name, values in (("ctx", ctx), ("seq", seq)):
        if not values:
            continue
        option = f"--{name}"
        if name in given:
            raise SweepError(f"{option}: {name} is also given as --vary {name}=...; give it once")
        if not isinstance(values, (list, tuple)):
            raise SweepError(f"{option}: {values!r} must be a list of integers")
        with _prefixed(f"{option} {','.join(map(str, values))}"):
            axes[name] = Axis(name, tuple(values))
        origin[name] = option

    method, n, file_seed = file_sample
    if sample is not None:
        with _prefixed("--sample"):
            method, n = _parse_sample(sample)
        origin["sample"] = "--sample"
    if seed is not None:
        origin["seed"] = "--seed"
    seed = seed if seed is not None else (file_seed if file_seed is not None else 0)

    def where(exc: SweepError) -> str:
        return origin.get(getattr(exc, "key", ""), "sweep")

    try:
        return SweepSpec(model=model, target=target, axes=tuple(axes.values()), sample=method, n=n,
                         seed=seed, llm=llm)
    except _KeyedError as exc:
        raise SweepError(f"{where(exc)}: {exc}") from None
    except SweepError as exc:
        raise SweepError(f"sweep: {exc}") from None


__all__ = ["parse_vary", "build_spec", "read_sweep_file"]
