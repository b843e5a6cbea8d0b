"""Where dlavm keeps what it can rebuild: the demo tokenizer, the trained demo checkpoint, built
``dlavm-server`` executables, the serving demo's artifact. One rule for all of them (doc/cli.md,
"Caches"): ``$DLAVM_CACHE_DIR/NAME`` when that variable is set, else ``build/NAME`` of this checkout
(git-ignored) when it is writable, else ``dlavm-NAME`` in the system's temporary directory. Nothing in
a cache is needed: deleting it costs a rebuild."""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

#: the checkout (or installed tree) this package lives in
REPO_ROOT = Path(__file__).resolve().parents[1]
#: the environment variable that moves every cache
CACHE_ENV = "DLAVM_CACHE_DIR"


def cache_dir(name: str) -> Path:
    """The cache folder ``name`` (module docstring); not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / name
    build = REPO_ROOT / "build"
    if os.access(REPO_ROOT, os.W_OK) and (not build.exists() or os.access(build, os.W_OK)):
        return build / name
    return Path(tempfile.gettempdir()) / f"dlavm-{name}"


#: the packages whose sources decide what the compiler produces and what the simulator measures
FINGERPRINTED = ("dlavm", "hw_models")


@lru_cache(maxsize=4)
def source_fingerprint(packages: tuple = FINGERPRINTED) -> str:
    """sha256 (hex) of every Python source and data file (``.py``, ``.json``) of the compiler and the
    simulator (:data:`FINGERPRINTED`), by relative path and content: two processes that report the same
    fingerprint compile and simulate alike. What keys a cache or a result store computed by this code
    (``dlavm dse``'s store, doc/dse.md). Computed once per process. ``packages``: other top-level
    packages of this checkout instead (DevProc's JIT adds ``("devproc",)`` to its key)."""
    h = hashlib.sha256()
    for pkg in packages:
        root = REPO_ROOT / pkg
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json") and p.is_file()
                           and "__pycache__" not in p.parts):
            rel = path.relative_to(REPO_ROOT).as_posix().encode()
            data = path.read_bytes()
            h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


__all__ = ["cache_dir", "source_fingerprint", "CACHE_ENV", "REPO_ROOT", "FINGERPRINTED"]
