"""The compile report: every op, where it runs, its instructions, estimated cycles and memory.

Cycle estimates use the target description and the shared instruction
models only (:mod:`dlavm.target.insn_model`: compute cycles, and the bytes
each operand moves at the bandwidth of the region it lives in), evaluated
at the upper bound of every dynamic size; they are estimates for planning,
the simulator measures.
"""
from __future__ import annotations

from dlavm import sym
from dlavm.artifact import Manifest
from dlavm.target import insn_model
from dlavm.task.ir import Emit, For, If


def _ub(v) -> int:
    if isinstance(v, sym.Expr):
        return max(sym.bounds(v)[1] or 0, 0)
    return int(v)


def estimate_cycles(e: Emit, target) -> int:
    """Estimated cycles of one instruction at the upper bound of its sizes.

    ``max(compute, memory)``: compute cycles from :func:`dlavm.target.insn_model.cycles`, memory
    time from the bytes of :func:`~dlavm.target.insn_model.accesses` at the bandwidth of the region
    each operand lives in (all HBM channels together, the DDR port; SRAM costs none). An
    instruction without a model raises :class:`~dlavm.target.insn_model.InsnModelError`.
    """
    f = {k: v if isinstance(v, (str, float, bool)) else _ub(v) for k, v in e.fields.items()}
    compute = insn_model.cycles(e.op, f, target)
    fig = target.figures
    hbm, ddr = fig.region("hbm"), fig.region("ddr")
    hbm_b = ddr_b = 0
    for a in insn_model.accesses(e.op, f, target):
        if hbm.base <= a.addr < hbm.end:
            hbm_b += a.nbytes
        elif ddr.base <= a.addr < ddr.end:
            ddr_b += a.nbytes
    mem = max(-(-hbm_b // fig.hbm_bytes_per_cycle), -(-ddr_b // fig.ddr_bytes_per_cycle))
    return max(compute, mem)


def _emits(stmts):
    stack = list(stmts)
    while stack:
        s = stack.pop()
        if isinstance(s, Emit):
            yield s, 1
        elif isinstance(s, For):
            k = _ub(s.extent)
            for e, n in _emits(s.body):
                yield e, n * k
        elif isinstance(s, If):
            stack.extend(s.then)
            stack.extend(s.orelse)


def op_rows(manifest: Manifest, build) -> list:
    """``[(entry, op, where, instructions, est cycles, bytes)]`` for every op of every entry."""
    if build is None:
        return []
    target = manifest.target.load()
    rows = []
    for entry, ops in build.ops.items():
        for o in ops:
            insns = cyc = 0
            for e, n in _emits(o.get("stmts", ())):
                insns += n
                cyc += n * estimate_cycles(e, target)
            rows.append((entry, o.get("tag", o["op"]), o["where"], insns, cyc, o.get("bytes", 0)))
    return rows


def format_report(manifest: Manifest, build=None, timings: dict | None = None) -> str:
    """Text report (see module docstring)."""
    m = manifest
    lines = [f"model {m.model}  target {m.target.name}  weights {m.weights_format}  ISA {m.isa_version}",
             "dims: " + (", ".join(f"{k} in [{b.lo}, {b.hi}]" for k, b in m.dims.items()) or "none")]
    rows = op_rows(manifest, build)
    if rows:
        lines.append(f"{'entry':<10} {'op (tag as in profile)':<22} {'where':<13} {'insns':>6} "
                     f"{'est cycles (bound)':>19} {'out bytes':>10}")
        for entry, op, where, insns, cyc, nb in rows:
            lines.append(f"{entry:<10} {op:<22} {where:<13} {insns:>6} {cyc:>19,} {nb:>10,}")
        tot = sum(r[4] for r in rows)
        lines.append(f"{'total':<10} {'':<22} {'':<13} {sum(r[3] for r in rows):>6} {tot:>19,}")
    lines.append("memory:")
    for pool, p in m.memory.items():
        lines.append(f"  {pool:<20} {p.region:<4} at {p.base:#014x} {p.used:>15,} bytes"
                     f"  ({len(p.buffers)} buffers)")
    for name, s in m.streams.items():
        lines.append(f"stream {name}: {s.count} instructions, {len(s.patches)} patched fields, "
                     f"{len(s.guards)} guarded entries")
    if m.host_ops:
        lines.append("host-fallback ops: " + "; ".join(f"{h.op} at {h.node} ({h.reason})" for h in m.host_ops))
    if timings:
        lines.append("compile time: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in timings.items()))
    return "\n".join(lines)


__all__ = ["format_report", "estimate_cycles", "op_rows"]
