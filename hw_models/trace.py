"""Chrome / Perfetto trace JSON of the unit timelines.

Format: ``{"traceEvents": [...], "displayTimeUnit": "ns"}`` with one complete
event (``"ph": "X"``) per instruction, host register/memory access and AUX
stream; ``ts`` and ``dur`` are microseconds (the format's unit) converted
from cycles at the target clock, and ``args.cycles`` keeps the exact cycles.
One thread (``tid``) per unit, named by metadata events; optionally one per
memory channel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlavm.target.isa import WAIT_UNITS

#: Thread ids of the timelines in the trace.
TIDS = {"host": 0, "aux": 1, **{u: 2 + i for i, u in enumerate(WAIT_UNITS)}, "seq": 2 + len(WAIT_UNITS)}
CHANNEL_TID0 = 16


def build_trace(clock_mhz: float, records, host_events, aux_events, channel_events=(),
                n_hbm: int = 0) -> dict[str, Any]:
    """The trace object: events from timing records and host/AUX/channel spans (all in cycles)."""
    def us(c: int) -> float:
        return c / clock_mhz

    events: list[dict[str, Any]] = []
    for name, tid in TIDS.items():
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid, "args": {"name": name}})
    for r in records:
        if r.unit == "seq":
            continue
        events.append({"name": r.op, "ph": "X", "pid": 0, "tid": TIDS[r.unit], "ts": us(r.start),
                       "dur": us(r.busy_end - r.start),
                       "args": {"index": r.index, "issue": r.issue, "start": r.start,
                                "cycles": r.busy_end - r.start, "done": r.done,
                                "compute_cycles": r.compute_cycles, "mem_end": r.mem_end}})
    for tid_name, evs in (("host", host_events), ("aux", aux_events)):
        for name, start, end in evs:
            events.append({"name": name, "ph": "X", "pid": 0, "tid": TIDS[tid_name], "ts": us(start),
                           "dur": us(end - start), "args": {"cycles": end - start}})
    if channel_events:
        for c in range(n_hbm + 1):
            label = f"hbm{c}" if c < n_hbm else "ddr"
            events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": CHANNEL_TID0 + c,
                           "args": {"name": label}})
        for c, start, end in channel_events:
            events.append({"name": "xfer", "ph": "X", "pid": 0, "tid": CHANNEL_TID0 + c, "ts": us(start),
                           "dur": us(end - start), "args": {"cycles": end - start}})
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_trace(trace: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(trace))
    return path
