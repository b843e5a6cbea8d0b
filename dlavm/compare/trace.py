"""The trace-level check: two host-access logs (hw_models.server.RecordingHAL format) compared entry by entry.

A log entry is ``["write_reg", addr, value]``, ``["read_reg", addr]``,
``["write_mem", addr, nbytes, sha256]``, ``["read_mem", addr, nbytes]``,
``["wait", timeout]`` or ``["reset"]`` (doc/socket.md). The Python runtime on
an in-process simulator and the generated C++ driver against the socket
server must produce the same log for the same artifact and inputs.

Normalisation (:func:`normalize`): entries become tuples; ``reset`` entries
are dropped (the server logs a client's RESET, an in-process run starts
from a fresh simulator). Memory writes are *not* merged: a write larger
than the transport's message limit is split into chunks and its content
hashed per chunk, so two logs only compare when both sides chunk alike
(the default 64 MiB limit; the test models are far below it).
"""
from __future__ import annotations

from dlavm.target.isa import REGS_BY_ADDR


def normalize(log) -> list:
    """The log as tuples, without ``reset`` entries (see the module docstring)."""
    return [tuple(e) for e in log if e and e[0] != "reset"]


def describe(entry) -> str:
    """One log entry in words, with register names."""
    kind = entry[0]
    if kind in ("write_reg", "read_reg"):
        r = REGS_BY_ADDR.get(entry[1])
        name = f"{r.name} ({entry[1]:#x})" if r else f"{entry[1]:#x}"
        return f"{kind} {name}" + (f" = {entry[2]:#x}" if kind == "write_reg" else "")
    if kind == "write_mem":
        return f"write_mem {entry[1]:#x} {entry[2]} bytes sha256 {entry[3][:12]}"
    if kind == "read_mem":
        return f"read_mem {entry[1]:#x} {entry[2]} bytes"
    return " ".join(str(x) for x in entry)


def compare_traces(a, b, limit: int = 10) -> list:
    """Lines naming each differing entry (index, both sides), at most ``limit``; empty when identical."""
    x, y = normalize(a), normalize(b)
    out = []
    for i in range(max(len(x), len(y))):
        ea = x[i] if i < len(x) else None
        eb = y[i] if i < len(y) else None
        if ea != eb:
            out.append(f"entry {i}: A {describe(ea) if ea else '(end of log)'} | "
                       f"B {describe(eb) if eb else '(end of log)'}")
            if len(out) >= limit:
                out.append("...")
                break
    if out and len(x) != len(y):
        out.append(f"A has {len(x)} entries, B has {len(y)}")
    return out


__all__ = ["normalize", "describe", "compare_traces"]
