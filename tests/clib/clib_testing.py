"""Helpers for tests/clib (a uniquely named module, importable from every test file)."""
from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLIB = ROOT / "clib"
CXXFLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror"]


class ServerThread:
    """A hw_models.server.SimServer on 127.0.0.1, served from a daemon thread."""

    def __init__(self, target: str = "tiny", **options):
        from hw_models.server import SimServer
        self.server = SimServer(target, "127.0.0.1", 0, **options)
        self.port = self.server.port
        self.uri = f"sim://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def run_program(exe: Path, *args, check_rc: int | None = 0, timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert res.returncode == check_rc, f"{exe.name} {args} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def write_artifact(directory: Path, files: dict[str, bytes], manifest) -> Path:
    """An artifact dir: the files plus ``manifest`` (a ``dlavm.artifact.Manifest``) listing their sha256, sealed
    with ``manifest.sha256`` as the compiler's writer seals it."""
    from dlavm.artifact import MANIFEST_SUM, manifest_sum_text
    directory.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(data)
    sums = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    text = dataclasses.replace(manifest, files=sums).dumps()
    (directory / "manifest.json").write_text(text)
    (directory / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))
    return directory
