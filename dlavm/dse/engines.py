"""Execution engines of a sweep (doc/dse.md "Engines"): a local process pool and Ray actors.

Both run :class:`~dlavm.dse.evaluate.Evaluator` in long-lived workers, one point at a time per
worker, so a worker imports the model once and the engine always knows which point a worker holds:
a worker that dies fails exactly that point, and a new worker takes its place. Records go back to
the driving process through ``on_record`` in the order the points finish.

``Engine.run(job, points, on_record, on_event)``:

* ``on_record(record)``: one finished point (the store writes it);
* ``on_event(kind, detail)``: ``"worker"`` (a worker is ready: its import time), ``"restart"`` (a worker
  died and was replaced): for the progress display.

A model that cannot be imported is the sweep's failure, not the points': the engine raises
:class:`JobError` and nothing is stored, so the same command resumes once the model is fixed.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from multiprocessing.connection import wait

from dlavm.errors import is_project_error, one_line

from .evaluate import Evaluator, ModelJob
from .space import Point


class JobError(RuntimeError):
    """The sweep cannot run at all (the model does not import, the Ray cluster is unreachable)."""


class EngineError(ValueError):
    """An engine option is refused (names it and the rule)."""


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_options(workers, point_timeout) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EngineError(f"--workers {workers!r}: must be an integer >= 1")
    if point_timeout is not None and (isinstance(point_timeout, bool) or not isinstance(point_timeout, (int, float))
                                      or not 0 < point_timeout < float("inf")):
        raise EngineError(f"--point-timeout {point_timeout!r}: must be a finite number of seconds > 0")


def _timed_out(point: Point, seconds: float) -> dict:
    return _failed(point, f"timed out: still running after {seconds:g} s (--point-timeout); its worker was stopped")


def _failed(point: Point, reason: str) -> dict:
    return {"point_id": point.point_id, "index": point.index, "params": dict(point.params), "status": "failed",
            "reason": reason, "metrics": {}, "compile_s": 0.0, "sim_s": 0.0, "worker": ""}


def _prepare(job: ModelJob) -> tuple[Evaluator, float]:
    """A worker's start: one torch thread (the engine runs one worker per core), the model imported
    once. Raises :class:`JobError` when the model does not import."""
    t0 = time.perf_counter()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    ev = (job.evaluator or Evaluator)(job)
    try:
        ev.prepare()
    except Exception as exc:  # noqa: BLE001 -- reported to the driver as the job's failure
        kind = "" if is_project_error(exc) else f"{type(exc).__name__}: "
        raise JobError(one_line(f"cannot import {job.model}: {kind}{exc}")) from None
    return ev, time.perf_counter() - t0


# ---------------------------------------------------------------- local process pool
def _local_worker(conn, job: ModelJob) -> None:
    """A local worker process: prepare, then evaluate each point the driver sends until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's to handle
    try:
        ev, seconds = _prepare(job)
    except JobError as e:
        conn.send(("job_error", str(e)))
        return
    conn.send(("ready", seconds))
    while True:
        try:
            point = conn.recv()
        except EOFError:
            return
        if point is None:
            return
        conn.send(("record", ev(point)))


class _Worker:
    def __init__(self, ctx, job):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_local_worker, args=(child, job), daemon=True, name="dlavm-dse-worker")
        self.proc.start()
        child.close()
        self.point: Point | None = None
        self.started = 0.0
        self.ready = False

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _death(proc) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class LocalEngine:
    """``workers`` processes on this machine (default: every usable core). ``point_timeout``: seconds a point
    may run before its worker is killed and the point fails (default: no limit)."""

    def __init__(self, workers: int | None = None, point_timeout: float | None = None):
        _check_options(workers, point_timeout)
        self.workers = workers or usable_cores()
        self.point_timeout = point_timeout

    def describe(self) -> str:
        return f"local pool of {self.workers} worker process(es)"

    def run(self, job: ModelJob, points: list, on_record, on_event=None) -> None:
        on_event = on_event or (lambda kind, detail: None)
        ctx = mp.get_context("spawn")   # torch and fork do not mix; each worker imports what it needs
        todo = list(reversed(points))
        pool = [_Worker(ctx, job) for _ in range(min(self.workers, len(points)))]
        try:
            while todo or any(w.point is not None for w in pool):
                for w in pool:
                    if w.ready and w.point is None and todo:
                        w.point, w.started = todo.pop(), time.monotonic()
                        w.conn.send(w.point)
                ready = wait([w.conn for w in pool] + [w.proc.sentinel for w in pool], self._wait_timeout(pool))
                self._stop_overdue(pool, ctx, job, todo, on_record, on_event)
                for w in list(pool):
                    eof = False
                    if w.conn in ready:
                        try:
                            kind, payload = w.conn.recv()
                        except (EOFError, OSError):
                            eof = True
                        else:
                            if kind == "job_error":
                                raise JobError(payload)
                            if kind == "ready":
                                w.ready = True
                                on_event("worker", f"worker {w.proc.pid} ready (model imported in {payload:.1f} s)")
                            elif kind == "record":
                                w.point = None
                                on_record(payload)
                            continue   # a death right after a message is seen on the next turn
                    if eof or w.proc.sentinel in ready:
                        self._replace_dead(w, pool, ctx, job, todo, on_record, on_event)
        finally:
            for w in pool:
                if w.proc.is_alive() and (w.point is not None or not w.ready):
                    w.proc.kill()   # interrupted mid-point or mid-import: nothing of it is kept
                w.stop()

    def _wait_timeout(self, pool) -> float | None:
        """Seconds until the first running point is overdue (None: no limit)."""
        running = [w.started for w in pool if w.point is not None]
        if self.point_timeout is None or not running:
            return None
        return max(0.0, min(running) + self.point_timeout - time.monotonic())

    def _stop_overdue(self, pool, ctx, job, todo, on_record, on_event) -> None:
        if self.point_timeout is None:
            return
        now = time.monotonic()
        for w in list(pool):
            if w.point is not None and now - w.started >= self.point_timeout:
                w.proc.kill()
                w.proc.join()
                on_record(_timed_out(w.point, self.point_timeout))
                w.point = None
                self._replace_dead(w, pool, ctx, job, todo, on_record, on_event)

    @staticmethod
    def _replace_dead(w, pool, ctx, job, todo, on_record, on_event) -> None:
        """``w`` has exited: fail the point it held, start another worker if work remains."""
        w.proc.join(5)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join()
        why = _death(w.proc)
        if not w.ready:
            raise JobError(f"a worker process died while importing {job.model} ({why})")
        if w.point is not None:
            on_record(_failed(w.point, f"worker process died ({why}) while evaluating this point"))
        w.conn.close()
        pool.remove(w)
        if todo:
            on_event("restart", f"worker {w.proc.pid} died ({why}); starting another")
            pool.append(_Worker(ctx, job))


# ---------------------------------------------------------------- Ray
class _RayWorker:
    """A Ray actor around one :class:`Evaluator` (wrapped by ``ray.remote`` in :class:`RayEngine`)."""

    def __init__(self, job: ModelJob):
        self.job = job
        self.ev = None

    def prepare(self):
        try:
            self.ev, seconds = _prepare(self.job)
        except JobError as e:
            return ("job_error", str(e))
        return ("ready", seconds)

    def evaluate(self, point):
        return self.ev(point)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an unreachable ``HOST:PORT`` at once (Ray itself retries for a minute)."""
    if address in ("auto",) or address.startswith("ray://") and ":" not in address[6:]:
        return
    hostport = address[6:] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise EngineError(f"--ray {address!r}: give HOST:PORT of the cluster's head (or 'local' for a private "
                          f"local cluster)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise JobError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


class RayEngine:
    """Ray actors on the cluster at ``address`` (``local``: a private cluster of ``workers`` CPUs started for
    the run). ``workers``: actors to start (default: the cluster's CPUs)."""

    def __init__(self, address: str, workers: int | None = None, point_timeout: float | None = None):
        _check_options(workers, point_timeout)
        if not isinstance(address, str) or not address:
            raise EngineError("--ray: give HOST:PORT of the cluster's head, or 'local'")
        self.address, self.workers, self.point_timeout = address, workers, point_timeout

    def describe(self) -> str:
        where = "a private local Ray cluster" if self.address == "local" else f"the Ray cluster at {self.address}"
        return f"{self.workers or 'one per CPU of'} Ray actor(s) on {where}"

    def _init(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray's progress bars otherwise replace builtins.print of the whole process, for good (a user's
        # print then runs Ray's lock: torch.compile breaks its graph inside Ray, not at the user's line)
        os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
        import ray
        if self.address != "local":
            _check_reachable(self.address)
        kw = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                  configure_logging=False)
        try:
            if self.address == "local":   # a new private cluster, even where another runs on this machine
                ray.init(address="local", num_cpus=self.workers or usable_cores(), **kw)
            else:
                ray.init(address=self.address, **kw)
        except (ConnectionError, RuntimeError) as e:
            chain, c = [], e
            while c is not None and len(chain) < 8:
                chain.append(str(c))
                c = c.__cause__ or c.__context__
            hint = (" (the cluster wants token authentication: set RAY_AUTH_MODE=token and give its token in "
                    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
                    if any("InvalidAuthToken" in m for m in chain) else "")
            raise JobError(one_line(f"cannot connect to the Ray cluster at {self.address}: {e}{hint}")) from None
        return ray

    def run(self, job: ModelJob, points: list, on_record, on_event=None) -> None:
        on_event = on_event or (lambda kind, detail: None)
        ray = self._init()
        try:
            from ray.exceptions import RayActorError
            n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            n = min(n, len(points))
            actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)

            def start():
                a = actor_cls.remote(job)
                return a, a.prepare.remote()

            todo = list(reversed(points))
            refs: dict = {}   # object ref -> ("prepare" | "point", actor, point, start time)
            for _ in range(n):
                a, ref = start()
                refs[ref] = ("prepare", a, None, 0.0)
            idle: list = []
            while refs:
                for a in list(idle):
                    if todo:
                        idle.remove(a)
                        p = todo.pop()
                        refs[a.evaluate.remote(p)] = ("point", a, p, time.monotonic())
                running = [t for k, _, _, t in refs.values() if k == "point"]
                limit = (None if self.point_timeout is None or not running
                         else max(0.0, min(running) + self.point_timeout - time.monotonic()))
                done, _ = ray.wait(list(refs), num_returns=1, timeout=limit)
                if not done:   # a point ran past --point-timeout: stop its actor, fail it, start another
                    now = time.monotonic()
                    for ref, (kind, actor, point, t) in list(refs.items()):
                        if kind == "point" and now - t >= self.point_timeout:
                            del refs[ref]
                            ray.kill(actor)
                            on_record(_timed_out(point, self.point_timeout))
                            if todo:
                                a, new = start()
                                refs[new] = ("prepare", a, None, 0.0)
                    continue
                kind, actor, point, _ = refs.pop(done[0])
                try:
                    result = ray.get(done[0])
                except RayActorError as e:
                    if kind == "prepare":
                        raise JobError(one_line(f"a Ray worker died while importing {job.model}: {e}")) from None
                    on_record(_failed(point, one_line(f"Ray worker died while evaluating this point: "
                                                      f"{type(e).__name__}")))
                    on_event("restart", "a Ray worker died; starting another")
                    if todo:
                        a, ref = start()
                        refs[ref] = ("prepare", a, None, 0.0)
                    continue
                if kind == "prepare":
                    status, payload = result
                    if status == "job_error":
                        raise JobError(payload)
                    on_event("worker", f"Ray worker ready (model imported in {payload:.1f} s)")
                else:
                    on_record(result)
                idle.append(actor)
                if not todo and not any(v[0] == "point" for v in refs.values()):
                    break
        finally:
            ray.shutdown()


__all__ = ["LocalEngine", "RayEngine", "JobError", "EngineError", "usable_cores"]
