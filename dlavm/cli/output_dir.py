"""The output folder of ``dlavm compile``: refused when not empty, replaced only when it holds an artifact.

The rule (doc/cli.md, "compile"):

* a folder that does not exist or is empty is written;
* a non-empty folder is refused unless ``--force`` is given, naming the folder
  and what is in it (stale files of another model must never stay behind);
* with ``--force`` the folder must hold a dlavm artifact (a ``manifest.json``
  whose ``format`` is ``dlavm-artifact``) and nothing else: then exactly the
  files that artifact lists, its ``manifest.json`` and ``manifest.sha256`` are
  removed, and the folders they leave empty. A folder holding anything that
  artifact did not write (a user's notes, a build folder, a folder that is no
  artifact at all) is refused even with ``--force``, naming what is in the way;
  nothing is deleted that dlavm did not write.

The manifest is read as plain JSON here, not verified: an artifact of an older
format or a damaged one is still recognised by its file list and replaced.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from dlavm.artifact import MANIFEST_SUM

#: The ``format`` field that marks a folder as a dlavm artifact.
ARTIFACT_FORMAT = "dlavm-artifact"
#: How many entries a refusal names before it says "and N more".
_SHOWN = 5


class OutputDirError(ValueError):
    """The output folder cannot be written (not empty, not an artifact, or holding other files)."""


def _listing(paths: list[str]) -> str:
    shown = ", ".join(sorted(paths)[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def _all_entries(root: Path) -> tuple[list[str], list[str]]:
    """(files and links, folders) under ``root`` as paths relative to it; links are not followed."""
    files, dirs = [], []
    for here, subdirs, names in os.walk(root, followlinks=False):
        rel = Path(here).relative_to(root)
        for d in list(subdirs):
            if (Path(here) / d).is_symlink():   # a link to a folder is an entry, never walked into
                subdirs.remove(d)
                files.append((rel / d).as_posix())
            else:
                dirs.append((rel / d).as_posix())
        files += [(rel / n).as_posix() for n in names]
    return files, dirs


def _artifact_files(root: Path) -> set[str] | None:
    """The files the artifact in ``root`` wrote (relative paths), or None when ``root`` holds no artifact."""
    manifest = root / "manifest.json"
    if manifest.is_symlink() or not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
        return None
    listed = data.get("files")
    names = set(listed) if isinstance(listed, dict) else set()
    return {n for n in names if isinstance(n, str)} | {"manifest.json", MANIFEST_SUM}


def plan_output(directory, force: bool = False) -> list[Path]:
    """The files to remove before an artifact is written to ``directory`` (empty: nothing to remove).

    Raises :class:`OutputDirError` when the folder must not be written (see the module docstring).
    Removes nothing itself: :func:`clear_output` does, after the compilation succeeded.
    """
    root = Path(directory)
    if not root.exists() and not root.is_symlink():
        return []
    if root.is_symlink() or not root.is_dir():
        raise OutputDirError(f"output folder '{directory}' exists and is not a folder")
    files, dirs = _all_entries(root)
    if not files and not dirs:
        return []
    owned = _artifact_files(root)
    what = (f"the dlavm artifact of '{_model_name(root)}'" if owned is not None
            else f"{len(files)} file(s) that are no dlavm artifact ({_listing(files or dirs)})")
    if not force:
        raise OutputDirError(f"output folder '{directory}' is not empty: it holds {what}; give --force to "
                             "replace an artifact, or choose another folder")
    if owned is None:
        raise OutputDirError(f"output folder '{directory}' is not empty and holds no dlavm artifact "
                             f"({_listing(files or dirs)}); --force only replaces an artifact: remove the "
                             "folder yourself or choose another")
    foreign = [f for f in files if f not in owned]
    if foreign:
        raise OutputDirError(f"output folder '{directory}' holds the artifact of '{_model_name(root)}' and "
                             f"{len(foreign)} file(s) it did not write ({_listing(foreign)}); --force removes only "
                             "what dlavm wrote: move those files away or choose another folder")
    return [root / f for f in sorted(files)]


def _model_name(root: Path) -> str:
    try:
        return str(json.loads((root / "manifest.json").read_text(encoding="utf-8")).get("model", "?"))
    except (OSError, ValueError, AttributeError):
        return "?"


def clear_output(directory, force: bool = False) -> int:
    """Check ``directory`` again (:func:`plan_output`) and remove the old artifact's files and the folders
    they leave empty; returns how many files were removed. Links are removed, never followed."""
    root = Path(directory)
    doomed = plan_output(directory, force)
    for path in doomed:
        path.unlink()
    if doomed:
        _, dirs = _all_entries(root)
        for d in sorted(dirs, key=lambda p: -p.count("/")):   # deepest first
            try:
                (root / d).rmdir()
            except OSError:
                pass   # not empty: it holds something that stays
    return len(doomed)


__all__ = ["OutputDirError", "plan_output", "clear_output"]
