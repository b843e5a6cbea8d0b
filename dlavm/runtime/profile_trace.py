"""The Perfetto / Chrome trace of a profiled run (``dlavm profile --trace``), made readable.

The simulator's trace (:mod:`hw_models.trace`) has one event per instruction,
named by its mnemonic, on one track per unit. :func:`annotate_trace` makes
it say what a reader asks:

* each instruction event is named by its op tag (``dev.mvm#3``) and carries
  ``args`` ``tag``, ``layer``, ``weights`` (the buffers it reads), ``insn``
  (the mnemonic), ``entry`` and ``phase`` (from the artifact's instruction
  records, :class:`dlavm.artifact.InsnRecord`);
* a ``phases`` track holds one span per run: ``prefill`` and ``decode`` of an
  LLM artifact are separate, marked spans (``args``: tokens, KV length, cycles);
* host-fallback kernels (numpy, in the Python runtime) are a separate
  process, ``host fallback (wall time)``: one span per host step with its
  measured wall time, laid out from the start of the run it belongs to (wall
  time, not device cycles: the two clocks are not the same);
* tracks without events are removed.

Pure data: numpy-free and torch-free, like the rest of the runtime.
"""
from __future__ import annotations

#: Track (thread id) of the phase spans, and process id of the host-fallback kernels.
PHASE_TID = 99
HOST_PID = 1


def annotate_trace(trace: dict, insn_info: dict, phases: list, host_spans: list) -> dict:
    """A new trace dict: ``trace`` (the simulator's) with op tags, phases and host spans (module docstring).

    ``insn_info``: device record index -> dict (``tag``, ``layer``, ``weights``, ``insn``, ``entry``,
    ``phase``). ``phases``: dicts with ``name``, ``start_us``, ``end_us`` and ``args``. ``host_spans``:
    dicts with ``name``, ``start_us``, ``dur_us`` and ``args``.
    """
    events = []
    for ev in trace.get("traceEvents", []):
        ev = dict(ev)
        info = insn_info.get(ev.get("args", {}).get("index")) if ev.get("ph") == "X" and ev.get("pid", 0) == 0 \
            else None
        if info is not None:
            ev["args"] = {**ev["args"], **{k: v for k, v in info.items() if v is not None}}
            ev["name"] = info.get("tag") or ev["name"]
        events.append(ev)
    if phases:
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": PHASE_TID, "args": {"name": "phases"}})
        for p in phases:
            events.append({"name": p["name"], "ph": "X", "pid": 0, "tid": PHASE_TID, "ts": p["start_us"],
                           "dur": max(p["end_us"] - p["start_us"], 0.0), "args": dict(p.get("args", {}))})
    if host_spans:
        events.append({"name": "process_name", "ph": "M", "pid": HOST_PID, "tid": 0,
                       "args": {"name": "host fallback (wall time)"}})
        events.append({"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": 0, "args": {"name": "host kernels"}})
        for h in host_spans:
            events.append({"name": h["name"], "ph": "X", "pid": HOST_PID, "tid": 0, "ts": h["start_us"],
                           "dur": h["dur_us"], "args": dict(h.get("args", {}))})
    return {**trace, "traceEvents": drop_empty_tracks(events)}


def drop_empty_tracks(events: list) -> list:
    """``events`` without the name metadata of tracks (pid, tid) that have no other event."""
    used = {(e.get("pid", 0), e.get("tid", 0)) for e in events if e.get("ph") != "M"}
    used_pids = {pid for pid, _ in used}
    out = []
    for e in events:
        if e.get("ph") == "M":
            if e["name"] == "thread_name" and (e.get("pid", 0), e.get("tid", 0)) not in used:
                continue
            if e["name"] == "process_name" and e.get("pid", 0) not in used_pids:
                continue
        out.append(e)
    return out


__all__ = ["annotate_trace", "drop_empty_tracks", "PHASE_TID", "HOST_PID"]
