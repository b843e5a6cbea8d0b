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

from .ops_report import format_host_table


def _ub(v) -> int:
    if isinstance(v, sym.Expr):
        return max(sym.bounds(v)[1] or 0, 0)
    return int(v)


def estimate_cycles(e: Emit, target) -> int:
    """Estimated cycles of one instruction at the upper bound of its sizes.

    ``max(compute, memory, memory of the tail's operand + tail)``: compute cycles from
    :func:`dlavm.target.insn_model.cycles`, memory time from the bytes of
    :func:`~dlavm.target.insn_model.accesses` at the bandwidth of the region each operand lives in (all
    HBM channels together, the DDR port; SRAM costs none). An instruction without a model raises
    :class:`~dlavm.target.insn_model.InsnModelError`.
    """
    f = {k: v if isinstance(v, (str, float, bool)) else _ub(v) for k, v in e.fields.items()}
    compute = insn_model.cycles(e.op, f, target)
    fig = target.figures
    hbm, ddr = fig.region("hbm"), fig.region("ddr")

    def mem_cycles(accs) -> int:
        hbm_b = ddr_b = 0
        for a in accs:
            if hbm.base <= a.addr < hbm.end:
                hbm_b += a.nbytes
            elif ddr.base <= a.addr < ddr.end:
                ddr_b += a.nbytes
        return max(-(-hbm_b // fig.hbm_bytes_per_cycle), -(-ddr_b // fig.ddr_bytes_per_cycle))

    accs = insn_model.accesses(e.op, f, target)
    after = insn_model.tail_after(e.op)
    tail_mem = mem_cycles(accs if after is None else [a for a in accs if a.name == after])
    return max(compute, mem_cycles(accs), tail_mem + insn_model.tail(e.op, f, target) if tail_mem else 0)


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


def _at_bound(v, env: dict):
    """``v`` evaluated with ``env`` (loop variables) and every other size at its upper bound."""
    if not isinstance(v, sym.Expr):
        return v
    full = dict(env)
    for fv in v.free_vars():
        full.setdefault(fv, _ub(fv))
    return sym.evaluate(v, full, check_bounds=False)


def stmt_macs(stmts, env: dict | None = None) -> int:
    """Multiply-accumulates of task-IR statements at the upper bound of every dynamic size
    (:func:`dlavm.target.insn_model.macs` of each instruction). Unlike the cycle estimate, loops
    run their real trip count with their real tile sizes, so a remainder tile counts what it does."""
    env = dict(env or {})
    total = 0
    for s in stmts:
        if isinstance(s, Emit):
            total += insn_model.macs(s.op, {k: _at_bound(v, env) for k, v in s.fields.items()})
        elif isinstance(s, For):
            for i in range(_at_bound(s.extent, env)):
                total += stmt_macs(s.body, {**env, s.var: i})
        elif isinstance(s, If):
            total += stmt_macs(s.then if _at_bound(s.cond, env) else s.orelse, env)
    return total


def op_rows(manifest: Manifest, build) -> list:
    """``[(entry, op, where, instructions, est cycles, bytes, MACs)]`` for every op of every entry.

    MACs at the upper bound of every dynamic size: a device op's from the instruction models of what
    it emits, a host op's as lowering recorded it (:func:`dlavm.task.lower.host_macs`)."""
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
            macs = o.get("macs", 0) + stmt_macs(o.get("stmts", ()))
            rows.append((entry, o.get("tag", o["op"]), o["where"], insns, cyc, o.get("bytes", 0), macs))
    return rows


def device_mac_fraction(rows) -> dict:
    """``{entry: (device MACs, all MACs)}`` over :func:`op_rows`, and ``None: (...)`` for all entries."""
    out: dict = {}
    for entry, _, where, *_, macs in rows:
        for key in (entry, None):
            dev, tot = out.get(key, (0, 0))
            out[key] = (dev + (macs if where == "device" else 0), tot + macs)
    return out


def _fraction_line(rows) -> str:
    def one(dev, tot):
        return f"{dev:,} of {tot:,} ({100 * dev / tot:.1f}%)" if tot else "no MACs"
    fr = device_mac_fraction(rows)
    per = [f"{k} {one(*v)}" for k, v in fr.items() if k is not None]
    return "device MACs (bound): " + one(*fr[None]) + (f"; per entry: {', '.join(per)}" if len(per) > 1 else "")


def format_report(manifest: Manifest, build=None, timings: dict | None = None, host_ops: list | None = None) -> str:
    """Text report (see module docstring). ``host_ops``: the device graph's host-fallback list
    (``dlavm.passes.device_pipeline.host_ops``, with module paths and roots); default: the manifest's."""
    m = manifest
    lines = [f"model {m.model}  target {m.target.name}  weights {m.weights_format}  ISA {m.isa_version}",
             "dims: " + (", ".join(f"{k} in [{b.lo}, {b.hi}]" for k, b in m.dims.items()) or "none")]
    rows = op_rows(manifest, build)
    if rows:
        lines.append(f"{'entry':<10} {'op (tag as in profile)':<22} {'where':<13} {'insns':>6} "
                     f"{'est cycles (bound)':>19} {'out bytes':>10} {'MACs (bound)':>14}")
        for entry, op, where, insns, cyc, nb, macs in rows:
            lines.append(f"{entry:<10} {op:<22} {where:<13} {insns:>6} {cyc:>19,} {nb:>10,} {macs:>14,}")
        tot = sum(r[4] for r in rows)
        lines.append(f"{'total':<10} {'':<22} {'':<13} {sum(r[3] for r in rows):>6} {tot:>19,} {'':>10} "
                     f"{sum(r[6] for r in rows):>14,}")
        lines.append(_fraction_line(rows))
    lines.append("memory:")
    for pool, p in m.memory.items():
        lines.append(f"  {pool:<20} {p.region:<4} at {p.base:#014x} {p.used:>15,} bytes"
                     f"  ({len(p.buffers)} buffers)")
    for name, s in m.streams.items():
        lines.append(f"stream {name}: {s.count} instructions, {len(s.patches)} patched fields, "
                     f"{len(s.guards)} guarded entries, {len(s.loops)} loops")
    if host_ops or m.host_ops:
        lines += format_host_table(host_ops if host_ops else m.host_ops)
    if timings:
        lines.append("compile time: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in timings.items()))
    return "\n".join(lines)


__all__ = ["device_mac_fraction", "estimate_cycles", "format_report", "op_rows", "stmt_macs"]
