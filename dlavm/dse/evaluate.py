"""One point of a sweep: derive the target, compile, profile in timing-only mode, record (doc/dse.md).

:class:`Evaluator` is the worker side of both engines. It imports the model once per context it is
asked for (the sequence bound of the import sizes tables such as RoPE's, so a point compiled from an
import at another bound would not be the artifact ``dlavm compile --max-seq CTX`` makes) and compiles
every point of that context from the imported graph: torch.export of a 7B shape takes seconds, a
compile from the imported graph a fraction of that.
"""
from __future__ import annotations

import gc
import os
import socket
import time
from dataclasses import dataclass

from dlavm.errors import is_project_error, one_line
from dlavm.target import get_target

from .space import Point

#: the statuses a record can have (doc/dse.md "What a point records")
STATUSES = ("ok", "refused", "failed")
#: the metrics every ok record holds (doc/dse.md "What a point records"), in the order reports show them
METRICS = ("tokens_per_s", "step_us", "prefill_tokens", "prefill_us", "prefill_tokens_per_s", "cycles", "macs",
           "hbm_bytes_moved", "roofline_fraction", "device_roofline_fraction", "hbm_fraction", "mac_fraction",
           "weight_bytes", "kv_bytes",
           "scratch_bytes", "stream_bytes", "stream_entries", "lut", "ff", "dsp", "bram36", "uram",
           "clock_mhz", "hbm_gbytes_per_s", "peak_tmacs_per_s")


@dataclass(frozen=True)
class ModelJob:
    """What every worker of one sweep needs to evaluate its points: picklable, sent once per worker."""

    model: str
    target: str            # the base target, as given (a built-in name or a file path)
    llm: bool
    ctxs: tuple = ()       # the contexts of the sweep (each an import bound), smallest first; () without ctx
    #: the worker's evaluator class (pickled by reference): :class:`Evaluator`, or a subclass of it
    evaluator: type | None = None


def derived_target(base, fields: dict):
    """``base`` with ``fields`` changed (validated again by the Target schema), named after the change:
    ``vcu128[hbm_channels=16,tin=64]``; ``base`` itself when nothing changes."""
    if not fields:
        return base
    name = f"{base.name}[{','.join(f'{k}={v}' for k, v in fields.items())}]"
    return base.replace(name=name, **fields)


def artifact_metrics(manifest) -> dict:
    """Device memory and stream size of a compiled artifact (doc/dse.md): the weights pool, the KV cache
    buffers and the rest of the KV pool (attention scratch), every AUX stream."""
    mem = manifest.memory
    weights = mem["weights"].used if "weights" in mem else 0
    kv_pool = mem.get("kv")
    kv = sum(b.size for n, b in kv_pool.buffers.items() if n.startswith("kv.")) if kv_pool else 0
    scratch = (kv_pool.used - kv) if kv_pool else 0
    entries = sum(s.count for s in manifest.streams.values())
    return {"weight_bytes": weights, "kv_bytes": kv, "scratch_bytes": scratch,
            "stream_entries": entries, "stream_bytes": entries * 64}


def profile_metrics(p: dict) -> dict:
    """The time figures of one :func:`dlavm.compiler.profile` result (doc/dse.md): the measured call and
    the prefill before it (the measured call itself when nothing was cached before it)."""
    seq = p["seq"]
    step_us = p["time_us"]
    before = [ph for ph in p["phases"] if not ph["measured"]]
    pre = before[-1] if before else next(ph for ph in p["phases"] if ph["measured"])
    return {
        "step_us": step_us,
        "tokens_per_s": seq * 1e6 / step_us if step_us else 0.0,
        "prefill_tokens": pre["tokens"],
        "prefill_us": pre["time_us"],
        "prefill_tokens_per_s": pre["tokens"] * 1e6 / pre["time_us"] if pre["time_us"] else 0.0,
        "cycles": p["cycles"], "macs": p["macs"], "hbm_bytes_moved": p["hbm_bytes"],
        "roofline_fraction": p["roofline_fraction"], "device_roofline_fraction": p["device_roofline_fraction"],
        "hbm_fraction": p["hbm_fraction"], "mac_fraction": p["mac_fraction"],
    }


def target_metrics(target) -> dict:
    """The derived target's headline figures and its resource estimate (:mod:`dlavm.target.resources`)."""
    from dlavm.target.resources import total
    fig = target.figures
    return {**total(target).as_dict(), "clock_mhz": target.clock_mhz,
            "hbm_gbytes_per_s": fig.hbm_gbytes_per_s, "peak_tmacs_per_s": fig.peak_tmacs_per_s}


class Evaluator:
    """Evaluates points of one :class:`ModelJob`; the model is imported on the first point, then reused."""

    def __init__(self, job: ModelJob):
        self.job = job
        self._imported: dict = {}   # import bound -> (graph-IR module, model name)
        self._base = None

    def prepare(self) -> None:
        """Load the base target and import the model at the first context (what the first point would
        otherwise do)."""
        if self._base is None:
            self._base = get_target(self.job.target)
        self._model(self.job.ctxs[0] if self.job.ctxs else None)

    def _model(self, bound: int | None):
        if bound not in self._imported:
            from dlavm.models import import_model
            res = import_model(self.job.model, max_seq=bound)
            self._imported[bound] = (res.module, res.spec.name)
            gc.collect()
            gc.freeze()   # the imported graph lives as long as the worker: the collection after each point skips it
        return self._imported[bound]

    def _compile(self, target, point: Point):
        module, name = self._model(point.ctx if self.job.llm else None)
        if self.job.llm:
            from dlavm.llm import compile_llm
            return compile_llm(module, target=target, weights=point.weights, max_seq=point.ctx, name=name)
        from dlavm.compiler import compile as dlavm_compile
        return dlavm_compile(module, target=target, weights=point.weights, name=name)

    def __call__(self, point: Point) -> dict:
        """The record of ``point`` (doc/dse.md): never raises for a point's own failure."""
        from dlavm.compiler import profile
        t0 = time.perf_counter()
        record = {"point_id": point.point_id, "index": point.index, "params": dict(point.params),
                  "status": "ok", "reason": None, "metrics": {}, "compile_s": 0.0, "sim_s": 0.0,
                  "worker": f"{socket.gethostname()}:{os.getpid()}"}
        stage = "target"
        gc_was = gc.isenabled()
        gc.disable()   # the compiler builds many short-lived objects; a collection mid-pipeline costs 2-3x
        try:
            if self._base is None:
                self._base = get_target(self.job.target)
            target = derived_target(self._base, point.target_fields)
            stage = "compile"
            cm = self._compile(target, point)
            t1 = time.perf_counter()
            record["compile_s"] = t1 - t0
            stage = "profile"
            p = profile(cm.manifest, cm.build.files.__getitem__, point.seq, None, False, None,
                        point.ctx if self.job.llm else None)
            record["sim_s"] = time.perf_counter() - t1
            record["metrics"] = {**profile_metrics(p), **artifact_metrics(cm.manifest), **target_metrics(target)}
        except Exception as exc:  # noqa: BLE001 -- a point's failure is its result, never the sweep's end
            spent = time.perf_counter() - t0
            record["compile_s" if stage != "profile" else "sim_s"] = spent - record["compile_s"]
            refused = is_project_error(exc)
            record["status"] = "refused" if refused else "failed"
            kind = "" if refused else f"{type(exc).__name__}: "
            record["reason"] = one_line(f"{stage}: {kind}{exc}" if str(exc) else f"{stage}: {type(exc).__name__}")
            record["metrics"] = {}
        finally:
            if gc_was:
                gc.enable()
                gc.collect()
        return record


__all__ = ["Evaluator", "ModelJob", "derived_target", "artifact_metrics", "profile_metrics", "target_metrics",
           "STATUSES", "METRICS"]
