"""Finding and loading device descriptions: built-in names or user files.

A target file is JSON (always) or YAML (when PyYAML is installed) holding
the fields of :class:`~dlavm.target.schema.Target`. The optional key ``base``
names a built-in target or another file (relative to this one) whose fields
are inherited, so a variant states only what differs.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from dlavm.target.schema import Target, TargetError, target_from_dict

BUILTIN_DIR = Path(__file__).with_name("builtin")


def builtin_names() -> list[str]:
    """Names of the built-in targets, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def _refuse_duplicates(error: type[Exception]):
    def hook(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise error(f"key(s) {dup} given more than once")
        return dict(pairs)
    return hook


def read_object_file(path: Path, where: str, holds: str, error: type[Exception] = TargetError) -> dict[str, Any]:
    """The object a JSON file holds (a YAML one, ``.yaml``/``.yml``, when PyYAML is installed): what target
    files and sweep files (doc/dse.md) are read with. Every refusal is an ``error`` starting with ``where``
    (``target file 'x.json'``): a missing or unreadable file, bad syntax, a key given twice (JSON), nesting
    too deep, or a top level that is not an object (``holds`` says what it must hold). Values are not
    checked here: each reader types its own fields, naming them (a NaN is refused as a field's value)."""
    if not path.is_file():
        raise error(f"{where} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{where} cannot be read as UTF-8 text: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # optional dependency: JSON is always available
        except ImportError:
            raise error(f"{where} is YAML but PyYAML is not installed; use JSON or install pyyaml") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise error(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise error(f"{where}: nested too deeply") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=_refuse_duplicates(error))
        except json.JSONDecodeError as exc:
            raise error(f"{where} is not valid JSON: {exc}") from None
        except error as exc:
            raise error(f"{where}: {exc}") from None
        except RecursionError:
            raise error(f"{where}: nested too deeply") from None
    if not isinstance(data, dict):
        raise error(f"{where} must hold {holds}, not {type(data).__name__}")
    return data


def _read_file(path: Path) -> dict[str, Any]:
    return read_object_file(path, f"target file {str(path)!r}", "an object of target fields")


def _resolve(data: dict[str, Any], origin: str, where: str, here: Path | None, seen: tuple[str, ...]) -> Target:
    """The Target of one file's ``data``; a refusal is prefixed with ``where`` (the file)."""
    data = dict(data)
    base_ref = data.pop("base", None)
    base = None
    if base_ref is not None:
        if not isinstance(base_ref, str) or not base_ref:
            raise TargetError(f"{where}: field base = {base_ref!r} must be a string naming a built-in target "
                              "or a target file")
        try:
            base = _load(base_ref, here, seen + (origin,))
        except TargetError as exc:
            raise TargetError(f"{where}: base {base_ref!r}: {exc}") from None
    try:
        return target_from_dict(data, base=base)
    except TargetError as exc:
        raise TargetError(f"{where}: {exc}") from None


def _load(ref: str, here: Path | None, seen: tuple[str, ...]) -> Target:
    builtin = ref in builtin_names()
    if builtin:
        key, path = ref, BUILTIN_DIR / f"{ref}.json"
    else:
        path = Path(ref)
        if not path.is_absolute() and here is not None and not path.exists():
            path = here / path
        if path.suffix not in (".json", ".yaml", ".yml") and not path.is_file():
            raise TargetError(f"unknown target {ref!r}; built-in targets are {builtin_names()}, "
                              "or give a path to a .json/.yaml file")
        key = str(path.resolve())
    if key in seen:
        raise TargetError(f"'base' chain loops: {' -> '.join(seen + (key,))}")
    where = f"built-in target {key!r}" if builtin else f"target file {str(path)!r}"
    return _resolve(_read_file(path), key, where, path.parent, seen)


@lru_cache(maxsize=64)
def _cached_builtin(name: str) -> Target:
    return _load(name, None, ())


def get_target(name_or_path: str | Path | Target) -> Target:
    """The target named ``name_or_path``: a built-in name, a file path, or a Target.

    Raises :class:`TargetError` naming the unknown target, missing file or
    bad field.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    ref = str(name_or_path)
    if ref in builtin_names():
        return _cached_builtin(ref)
    return _load(ref, Path.cwd(), ())


def list_targets() -> list[Target]:
    """All built-in targets, in name order."""
    return [get_target(n) for n in builtin_names()]
