"""The result store of a sweep: ``DIR/dse.sqlite`` (doc/dse.md "The store and resuming").

Written by the driving process only (workers send their records to it), one transaction per point,
so a killed sweep loses at most the points that were running. The store keeps the sweep's definition
and the fingerprint of the compiler that computed it; :meth:`ResultStore.open` refuses a folder that
holds another sweep or another compiler's results, and a lock file keeps two sweeps out of one folder.
Everything read back is checked: a store is a file from outside like any other.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import time
from pathlib import Path

from .evaluate import STATUSES

#: the store's file name inside the results folder
STORE_FILE = "dse.sqlite"
#: the lock a running sweep holds on its folder
LOCK_FILE = "dse.lock"
#: identifies a sweep store, and the version of its layout this code reads
FORMAT, VERSION = "dlavm-dse", 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    point_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, metrics TEXT NOT NULL, compile_s REAL NOT NULL, sim_s REAL NOT NULL, worker TEXT NOT NULL,
    finished REAL NOT NULL);
"""


class StoreError(ValueError):
    """The results folder cannot be used: names the file, the field or the difference, and the rule."""


def _diff(stored: dict, given: dict) -> str:
    keys = sorted(set(stored) | set(given))
    parts = [f"{k}: stored {json.dumps(stored.get(k))}, given {json.dumps(given.get(k))}"
             for k in keys if stored.get(k) != given.get(k)]
    return "; ".join(parts)


class ResultStore:
    """One results folder. Use :meth:`open` to run a sweep into it, :meth:`read` to report on it."""

    def __init__(self, directory, conn: sqlite3.Connection, lock_fd: int | None = None):
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        self._conn = conn
        self._lock_fd = lock_fd

    # ---- opening
    @classmethod
    def open(cls, directory, spec: dict, fingerprint: str, restart: bool = False) -> "ResultStore":
        """The store of ``directory`` for the sweep ``spec`` (``SweepSpec.to_json()``) computed by the compiler
        ``fingerprint``: created if new, resumed if it holds this sweep, refused otherwise (``restart``:
        its points are discarded first). Holds the folder's lock until :meth:`close`."""
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise StoreError(f"{d}: not a folder (the results folder of a sweep)")
        d.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreError(f"{d}: another sweep is running into this folder (it holds {d / LOCK_FILE})") from None
        try:
            store = cls(d, cls._connect(d / STORE_FILE), lock_fd)
            store._begin(spec, fingerprint, restart)
        except BaseException:
            os.close(lock_fd)
            raise
        return store

    @classmethod
    def read(cls, directory) -> "ResultStore":
        """The store of ``directory`` for reading (a report): refuses a folder without one."""
        d = Path(directory)
        if not (d / STORE_FILE).is_file():
            raise StoreError(f"{d}: no sweep results here (no {STORE_FILE}; run 'dlavm dse MODEL ... -o {d}' first)")
        store = cls(d, cls._connect(d / STORE_FILE, readonly=True))
        store._check_format()
        return store

    @staticmethod
    def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            else:
                conn = sqlite3.connect(path, timeout=10)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path}: not a sweep store ({e})") from None
        return conn

    def _meta(self) -> dict:
        try:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a sweep store ({e})") from None

    def _check_format(self) -> dict:
        meta = self._meta()
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a sweep store (meta 'format' is {meta.get('format')!r}, "
                             f"not {FORMAT!r})")
        if meta.get("version") != str(VERSION):
            raise StoreError(f"{self.path}: store version {meta.get('version')!r}; this dlavm reads version {VERSION}")
        return meta

    def _begin(self, spec: dict, fingerprint: str, restart: bool) -> None:
        c = self._conn
        has_meta = c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            meta = self._check_format()
            if restart:
                with c:
                    c.execute("DELETE FROM points")
                    c.execute("DELETE FROM meta")
            else:
                stored = self.spec()
                if stored != spec:
                    raise StoreError(f"{self.directory} holds another sweep ({_diff(stored, spec)}): use another "
                                     f"folder, or --restart to discard its points")
                if meta.get("fingerprint") != fingerprint:
                    raise StoreError(f"{self.directory} holds results of another compiler version (fingerprint "
                                     f"{meta.get('fingerprint', '?')[:12]}, this one {fingerprint[:12]}): they would "
                                     f"not be comparable; use another folder, or --restart to discard them")
                return
        with c:
            c.executescript(_SCHEMA)
            c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                          [("format", FORMAT), ("version", str(VERSION)), ("spec", json.dumps(spec, sort_keys=True)),
                           ("fingerprint", fingerprint), ("created", str(time.time()))])

    # ---- reading
    def spec(self) -> dict:
        """The sweep's definition (``SweepSpec.to_json()``)."""
        raw = self._meta().get("spec")
        try:
            spec = json.loads(raw) if raw is not None else None
        except ValueError as e:
            raise StoreError(f"{self.path}: meta 'spec' is not JSON ({e})") from None
        if not isinstance(spec, dict):
            raise StoreError(f"{self.path}: meta 'spec' must be a JSON object")
        return spec

    def done_ids(self) -> set:
        """The ``point_id`` of every point stored as a result (``ok`` or ``refused``). A ``failed`` point (a
        worker that died, an unexpected error: perhaps a lost node or memory) is not done: the next run of
        the sweep tries it again."""
        return {r[0] for r in self._conn.execute("SELECT point_id FROM points WHERE status != 'failed'")}

    def rows(self) -> list[dict]:
        """Every stored record, in the sweep's point order, each checked (:func:`check_record`)."""
        try:
            raw = self._conn.execute("SELECT point_id, idx, params, status, reason, metrics, compile_s, sim_s, "
                                     "worker FROM points ORDER BY idx, point_id").fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot read its points ({e})") from None
        out = []
        for pid, idx, params, status, reason, metrics, compile_s, sim_s, worker in raw:
            where = f"{self.path}: point {str(pid)[:16]!r}"
            try:
                rec = {"point_id": pid, "index": idx, "params": json.loads(params), "status": status,
                       "reason": reason, "metrics": json.loads(metrics), "compile_s": compile_s, "sim_s": sim_s,
                       "worker": worker}
            except (TypeError, ValueError) as e:
                raise StoreError(f"{where}: params/metrics are not JSON ({e})") from None
            out.append(check_record(rec, where))
        return out

    # ---- writing
    def add(self, record: dict) -> None:
        """Store one finished point (its own transaction: a kill after this loses nothing of it)."""
        r = check_record(record, f"record of point {str(record.get('point_id'))[:16]!r}")
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (r["point_id"], r["index"], json.dumps(r["params"], sort_keys=True), r["status"],
                                r["reason"], json.dumps(r["metrics"], sort_keys=True), r["compile_s"], r["sim_s"],
                                r["worker"], time.time()))

    def close(self) -> None:
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_record(r: dict, where: str) -> dict:
    """``r`` if it is a well-formed record (doc/dse.md), else a :class:`StoreError` naming ``where`` and the
    field."""
    def bad(field, rule):
        raise StoreError(f"{where}: {field} {rule}")
    if not isinstance(r.get("point_id"), str) or not r["point_id"]:
        bad("point_id", "must be a non-empty string")
    if not isinstance(r.get("index"), int) or isinstance(r["index"], bool) or r["index"] < 0:
        bad("index", "must be an integer >= 0")
    if not isinstance(r.get("params"), dict) or not all(isinstance(k, str) for k in r["params"]):
        bad("params", "must be an object keyed by axis names")
    if r.get("status") not in STATUSES:
        bad("status", f"{r.get('status')!r} must be one of {list(STATUSES)}")
    if r["status"] != "ok" and not isinstance(r.get("reason"), str):
        bad("reason", f"must say why a point is {r['status']}")
    if r.get("reason") is not None and not isinstance(r["reason"], str):
        bad("reason", "must be a string or null")
    m = r.get("metrics")
    if not isinstance(m, dict) or not all(isinstance(k, str) and _number(v) for k, v in m.items()):
        bad("metrics", "must be an object of finite numbers")
    for f in ("compile_s", "sim_s"):
        if not _number(r.get(f)) or r[f] < 0:
            bad(f, "must be a finite number >= 0")
    if not isinstance(r.get("worker"), str):
        bad("worker", "must be a string")
    return r


__all__ = ["ResultStore", "StoreError", "check_record", "STORE_FILE", "LOCK_FILE"]
