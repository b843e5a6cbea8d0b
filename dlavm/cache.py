"""Where dlavm keeps what it can rebuild: the demo tokenizer, the trained demo checkpoint, built
``dlavm-server`` executables, the serving demo's artifact. One rule for all of them (doc/cli.md,
"Caches"): ``$DLAVM_CACHE_DIR/NAME`` when that variable is set, else ``build/NAME`` of this checkout
(git-ignored) when it is writable, else ``dlavm-NAME`` in the system's temporary directory. Nothing in
a cache is needed: deleting it costs a rebuild."""
from __future__ import annotations

import os
import tempfile
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


__all__ = ["cache_dir", "CACHE_ENV", "REPO_ROOT"]
