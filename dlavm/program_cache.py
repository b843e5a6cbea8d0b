"""The compiled-program cache: compile once, and every later process loads the artifact.

An entry is an artifact directory (doc/backend.md) named by the SHA-256 of its *key*: a JSON object
of everything that decides what the compiler produces (the program's graph and weights as a hash,
the target's fingerprint, the weight format, the dynamic bounds, the compiler's source fingerprint
and the torch version). Changing any of them is another entry.

* **Safe for several processes**: an entry is written to a private temporary folder and renamed
  into place in one step; a process that loses the race uses its own build and drops it.
* **Never runs a corrupt entry**: an entry is loaded through the artifact's verification
  (``dlavm.load``: manifest schema, every file's size and hash) and its ``key.json`` must hold the
  very key; anything else is moved aside, deleted and rebuilt, with a logged reason.
* **Where**: ``cache_dir("programs")`` (doc/cli.md, "Caches"): ``$DLAVM_CACHE_DIR/programs``, else
  ``build/programs``; the torch.compile backend takes another folder as its ``cache_dir`` option.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .cache import cache_dir, source_fingerprint
from .compiler import CompiledModel, load

log = logging.getLogger("dlavm.program_cache")

#: the file of an entry that holds its key
KEY_FILE = "key.json"


def default_folder() -> Path:
    return cache_dir("programs")


def entry_key(parts: dict) -> str:
    """The key (hex SHA-256) of ``parts`` (JSON-able), with the compiler's source fingerprint added."""
    full = dict(parts, compiler=source_fingerprint())
    return hashlib.sha256(json.dumps(full, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ProgramCache:
    """Compiled programs on disk under ``folder`` (None: no cache, every lookup builds)."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None
        #: counts of this object's lookups: hit (loaded), miss (built), rebuilt (a bad entry replaced)
        self.counts = {"hit": 0, "miss": 0, "rebuilt": 0}

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / key

    def get(self, parts: dict, build: Callable[[], CompiledModel], save: Callable | None = None,
            load_entry: Callable | None = None) -> tuple[CompiledModel, str]:
        """``(program, how)``: the cached program for ``parts``, or ``build()``'s, stored; ``how`` is
        ``hit``, ``miss`` or ``rebuilt``. Another kind of entry (a DevProc pipeline) gives
        ``save(built, folder)`` and ``load_entry(folder)`` (default: an artifact, ``dlavm.load``)."""
        load_entry = load_entry or load
        if self.folder is None:
            self.counts["miss"] += 1
            return build(), "miss"
        key = entry_key(parts)
        final = self.path(key)
        how = "miss"
        if final.exists():
            problem = self._problem(final, key)
            if problem is None:
                try:
                    cm = load_entry(final)
                    self.counts["hit"] += 1
                    return cm, "hit"
                except Exception as e:  # noqa: BLE001 -- whatever a damaged entry raises, it is rebuilt
                    problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("dlavm: program cache entry %s is damaged (%s); rebuilding it", final, problem)
            self._discard(final)
            how = "rebuilt"
        cm = build()
        self._store(cm, final, key, parts, save)
        self.counts[how] += 1
        return cm, how

    @staticmethod
    def _problem(entry: Path, key: str) -> str | None:
        try:
            held = json.loads((entry / KEY_FILE).read_text())
        except (OSError, ValueError) as e:
            return f"no readable {KEY_FILE}: {e}"
        if not isinstance(held, dict) or held.get("key") != key:
            return f"{KEY_FILE} holds another key"
        return None

    def _store(self, cm: CompiledModel, final: Path, key: str, parts: dict, save: Callable | None = None) -> None:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=final.parent))
        except OSError as e:
            log.warning("dlavm: cannot write the program cache under %s (%s); not cached", self.folder, e)
            return
        try:
            if save is not None:
                save(cm, tmp)
            else:
                cm.save(tmp, driver=False)     # the artifact reads only the files its manifest lists
            (tmp / KEY_FILE).write_text(json.dumps({"key": key, "parts": parts}, sort_keys=True, indent=1))
            os.rename(tmp, final)          # atomic; fails when another process stored it first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _discard(entry: Path) -> None:
        aside = entry.with_name(f".bad-{entry.name}-{os.getpid()}")
        try:
            os.rename(entry, aside)
        except OSError:
            return   # another process moved it first
        shutil.rmtree(aside, ignore_errors=True)


__all__ = ["ProgramCache", "entry_key", "default_folder", "KEY_FILE"]
