"""An artifact directory, verified once: :func:`load_artifact` reads every file once, checks it, keeps the bytes.

What :func:`load_artifact` guarantees (else :class:`~dlavm.artifact.errors.ArtifactError`,
one line ``artifact DIR: FILE: FIELD: RULE`` or ``artifact DIR: file "REL" ...``):

1. ``manifest.json`` and every file the manifest lists are regular files
   reached without following a symbolic link (each path component is opened
   relative to its parent with ``O_NOFOLLOW``; a FIFO, device, socket or
   directory is refused without blocking on it);
2. ``manifest.sha256`` holds the line ``<sha256>  manifest.json`` (the
   ``sha256sum`` format) written by the writer, and ``manifest.json`` matches
   it, so a one-field edit of the manifest is refused;
3. the manifest passes :func:`~dlavm.artifact.read_manifest` (schema,
   references, memory map);
4. every listed file matches its sha256; sizes: a stream file holds ``count``
   64-byte entries, a weight file ``nbytes`` bytes, a host-constant file its
   dtype times its shape (a quantised one: its packed bytes, its scales file
   two bytes per scale); the bundled tokenizer.json holds at most
   ``TOKENIZER_MAX_BYTES``, the chat template ``CHAT_TEMPLATE_MAX_BYTES``;
5. every patch names a field of the instruction at its ``index`` (decoded
   from the stream's opcode) with that field's ``word``, ``lo``, ``width`` and
   ``kind`` (:mod:`dlavm.target.isa`).

The bytes checked are the bytes used: :meth:`VerifiedArtifact.read` returns
them from memory, never re-reading the file, so a file changed after loading
is not seen. ``dlavm::Artifact::open`` (clib/src/artifact.cc) applies the
rules the shared refusal table (tests/artifact/refusals.py) marks for it.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field

from dlavm.target.isa import INSN_BYTES, OPS_BY_CODE

from .errors import ArtifactError
from .reader import check_format_version, parse_json, read_manifest
from .schema import CHAT_TEMPLATE_MAX_BYTES, DTYPE_BYTES, TOKENIZER_MAX_BYTES, Manifest

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
#: The largest manifest read (bytes); a 7B model's is a few megabytes.
MAX_MANIFEST_BYTES = 1 << 28
_SUM_LINE = re.compile(rb"([0-9a-f]{64})  manifest\.json\n?")
_READ_CHUNK = 1 << 22


def _refuse(directory: str, why: str) -> ArtifactError:
    return ArtifactError(f"artifact {directory}: {why}")


def manifest_sum_text(manifest_bytes: bytes) -> str:
    """The text of ``manifest.sha256`` for a manifest of these bytes (what the writer stores)."""
    return f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST}\n"


def _open_inside(directory: str, rel: str, root_fd: int, missing: str | None = None) -> tuple:
    """(fd, size) of the regular file ``rel`` under ``root_fd``, no component a symbolic link; ``missing``:
    the message when it does not exist."""
    parts = rel.split("/")
    missing = missing or f'file "{rel}" is missing'
    fd = root_fd
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _refuse(directory, missing) from None
            where = rel if last else "/".join(parts[:i + 1])
            if stat.S_ISLNK(st.st_mode):
                raise _refuse(directory, f'file "{rel}": "{where}" is a symbolic link; an artifact holds '
                                         f'regular files only')
            if last and not stat.S_ISREG(st.st_mode):
                raise _refuse(directory, f'file "{rel}" is not a regular file')
            if not last and not stat.S_ISDIR(st.st_mode):
                raise _refuse(directory, f'file "{rel}": "{where}" is not a directory')
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:   # swapped for a link or removed since the stat
                if e.errno == errno.ELOOP:
                    raise _refuse(directory, f'file "{rel}": "{where}" is a symbolic link; an artifact holds '
                                             f'regular files only') from None
                raise _refuse(directory, f'file "{rel}" cannot be opened ({e.strerror})') from None
            if fd != root_fd:
                os.close(fd)
            fd = nfd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(directory, f'file "{rel}" is not a regular file')
        return fd, st.st_size
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise


def _read_fd(directory: str, rel: str, fd: int, size: int, limit: int | None) -> bytes:
    if limit is not None and size > limit:
        raise _refuse(directory, f'file "{rel}" holds {size} bytes, more than the {limit} it may')
    chunks, got = [], 0
    while True:   # read to the end: a file that grows after the stat is read (and checked) as it is
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except OSError as e:
            raise _refuse(directory, f'file "{rel}" cannot be read ({e.strerror})') from None
        if not chunk:
            return b"".join(chunks)
        got += len(chunk)
        if limit is not None and got > limit:
            raise _refuse(directory, f'file "{rel}" holds more than the {limit} bytes it may')
        chunks.append(chunk)


class _Root:
    """The artifact directory opened once; files are opened relative to it."""

    def __init__(self, directory: str):
        self.directory = directory
        try:
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise _refuse(directory, f"cannot open the artifact directory ({e.strerror})") from None

    def read(self, rel: str, limit: int | None = None, missing: str | None = None) -> bytes:
        fd, size = _open_inside(self.directory, rel, self.fd, missing)
        try:
            return _read_fd(self.directory, rel, fd, size, limit)
        finally:
            os.close(fd)

    def close(self):
        os.close(self.fd)


def _sha256_checked(directory: str, rel: str, data: bytes, digest: str) -> bytes:
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise _refuse(directory, f'file "{rel}" does not match its sha256 (manifest {digest}, file {got})')
    return data


def _check_manifest_sum(root: _Root, text: bytes) -> None:
    d = root.directory
    recorded = root.read(MANIFEST_SUM, 1024, missing=f"{MANIFEST_SUM}: not found (the writer records the "
                                                     f"sha256 of manifest.json there)")
    m = _SUM_LINE.fullmatch(recorded)
    if m is None:
        raise _refuse(d, f'{MANIFEST_SUM}: must be the one line "<64 lowercase hex digits>  manifest.json"')
    got = hashlib.sha256(text).hexdigest()
    if m.group(1).decode() != got:
        raise _refuse(d, f"{MANIFEST}: does not match {MANIFEST_SUM} (recorded {m.group(1).decode()}, "
                         f"file {got})")


def _expected_sizes(m: Manifest) -> dict:
    """{relpath: (bytes the file must hold, "FIELD: what")} from the manifest's own fields."""
    out = {}
    for name, s in m.streams.items():
        out[s.file] = (s.count * INSN_BYTES, f"streams.{name}.file", f"its count ({s.count}) needs")
    for i, w in enumerate(m.weights):
        out[w.file] = (w.nbytes, f"weights[{i}].file", "its nbytes is")
    for i, c in enumerate(m.host_consts):
        if c.quant is not None:
            q, (rows, cols) = c.quant, c.shape
            out[c.file] = (quantised_bytes(q.format, rows, cols), f"host_consts[{i}].file",
                           f"its {q.format} shape {list(c.shape)} needs")
            out[q.scales] = (rows * -(-cols // q.group) * 2, f"host_consts[{i}].quant.scales",
                             f"its float16 scales of {rows} rows, groups of {q.group} need")
            continue
        n = DTYPE_BYTES[c.dtype]
        for x in c.shape:
            n *= x
        out[c.file] = (n, f"host_consts[{i}].file", f"its {c.dtype} shape {list(c.shape)} needs")
    return out


def quantised_bytes(fmt: str, rows: int, cols: int) -> int:
    """Bytes of a ``rows x cols`` array stored as ``fmt`` (``HostQuant.format``): int8 one per element,
    int4 two per byte with every row padded to an even length."""
    return rows * cols if fmt == "int8" else rows * -(-cols // 2)


def _size_limits(m: Manifest) -> dict:
    """{relpath: (most bytes the file may hold, FIELD)} for files without an exact size."""
    out = {}
    if m.tokenizer is not None:
        out[m.tokenizer.file] = (TOKENIZER_MAX_BYTES, "tokenizer.file")
        if m.tokenizer.chat_template is not None:
            out[m.tokenizer.chat_template] = (CHAT_TEMPLATE_MAX_BYTES, "tokenizer.chat_template")
    return out


def _check_patch_fields(d: str, m: Manifest, data: dict) -> None:
    for name, s in m.streams.items():
        blob = data[s.file]
        for i, p in enumerate(s.patches):
            q = f"manifest.json: streams.{name}.patches[{i}]"
            opcode = blob[p.index * INSN_BYTES]
            fmt = OPS_BY_CODE.get(opcode)
            if fmt is None:
                raise _refuse(d, f"{q}.index: entry {p.index} holds no instruction (opcode {opcode:#04x})")
            f = next((f for f in fmt.fields if f.name == p.field), None)
            if f is None:
                raise _refuse(d, f'{q}.field: "{p.field}" is not a field of {fmt.mnemonic} (entry {p.index})')
            for attr in ("word", "lo", "width", "kind"):
                want, got = getattr(f, attr), getattr(p, attr)
                if want != got:
                    shown = (lambda v: f'"{v}"') if attr == "kind" else str
                    raise _refuse(d, f"{q}.{attr}: {fmt.mnemonic}.{p.field} has {attr} {shown(want)}, "
                                     f"got {shown(got)}")


@dataclass(frozen=True)
class VerifiedArtifact:
    """A verified artifact: its typed manifest and the checked bytes of every listed file."""

    directory: str
    manifest: Manifest
    files: dict = field(repr=False)

    def read(self, rel: str) -> bytes:
        """The verified bytes of ``rel`` (a file ``manifest.files`` lists), from memory."""
        if rel not in self.files:
            raise _refuse(self.directory, f'file "{rel}" is not listed in manifest.json')
        return self.files[rel]


def load_artifact(directory: str | os.PathLike) -> VerifiedArtifact:
    """The artifact at ``directory`` after every check of the module docstring, its files in memory."""
    d = os.fspath(directory)
    root = _Root(d)
    try:
        text = root.read(MANIFEST, MAX_MANIFEST_BYTES, missing="manifest.json not found")
        source = f"artifact {d}: {MANIFEST}"
        data = parse_json(text, source)
        check_format_version(data, source)    # another version is named as such before anything else
        _check_manifest_sum(root, text)
        m = read_manifest(data, source=source)
        sizes = _expected_sizes(m)
        limits = _size_limits(m)
        files = {}
        for rel, digest in m.files.items():
            want = sizes.get(rel)
            most = limits.get(rel)
            fd, size = _open_inside(d, rel, root.fd)
            try:
                if want is not None and size != want[0]:
                    raise _refuse(d, f"{MANIFEST}: {want[1]}: holds {size} bytes, {want[2]} {want[0]}")
                if most is not None and size > most[0]:
                    raise _refuse(d, f"{MANIFEST}: {most[1]}: holds {size} bytes, more than the {most[0]} it may")
                raw = _read_fd(d, rel, fd, size, want[0] if want is not None else most[0] if most else None)
            finally:
                os.close(fd)
            files[rel] = _sha256_checked(d, rel, raw, digest)
            if want is not None and len(raw) != want[0]:
                raise _refuse(d, f"{MANIFEST}: {want[1]}: holds {len(raw)} bytes, {want[2]} {want[0]}")
        _check_patch_fields(d, m, files)
        return VerifiedArtifact(d, m, files)
    finally:
        root.close()


def read_inside(directory: str | os.PathLike, rel: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``rel`` under ``directory``, opened as :func:`load_artifact` opens an
    artifact's files (no component a symbolic link; at most ``limit`` bytes), for folders that hold
    artifacts and files of their own (a DevProc pipeline)."""
    root = _Root(os.fspath(directory))
    try:
        return root.read(rel, limit)
    finally:
        root.close()


def open_artifact(directory: str | os.PathLike) -> Manifest:
    """The manifest of the artifact at ``directory`` after every check (:func:`load_artifact`)."""
    return load_artifact(directory).manifest


def read_artifact_file(directory: str | os.PathLike, manifest: Manifest, rel: str) -> bytes:
    """The bytes of a file listed in ``manifest``, read now (as :func:`load_artifact` reads: no link, regular
    file) and checked against its sha256; the bytes returned are the bytes checked."""
    d = os.fspath(directory)
    if rel not in manifest.files:
        raise _refuse(d, f'file "{rel}" is not listed in manifest.json')
    root = _Root(d)
    try:
        return _sha256_checked(d, rel, root.read(rel), manifest.files[rel])
    finally:
        root.close()


__all__ = ["load_artifact", "open_artifact", "read_artifact_file", "VerifiedArtifact", "manifest_sum_text",
           "MANIFEST", "MANIFEST_SUM"]
