"""The compile report: every op, where it runs, its instructions, estimated cycles and memory.

Cycle estimates use the target description only (doc/simulator.md's
compute-cycle table and the memory bandwidth of the region an operand lives
in), evaluated at the upper bound of every dynamic size; they are estimates
for planning, the simulator measures.
"""
from __future__ import annotations

import math

from dlavm import sym
from dlavm.task.ir import Emit, For, If


def _ub(v) -> int:
    if isinstance(v, sym.Expr):
        return max(sym.bounds(v)[1] or 0, 0)
    return int(v)


def _c(a, b):
    return -(-a // b)


def estimate_cycles(e: Emit, target) -> int:
    """Estimated cycles of one instruction at the upper bound of its sizes."""
    f = {k: _ub(v) if not isinstance(v, (str, float, bool)) else v for k, v in e.fields.items()}
    t = target
    lanes = t.sfu_lanes
    compute = {
        "mvm": lambda: f.get("m", 0) * _c(f.get("k", 0), t.tin) * _c(f.get("n", 0), t.tout * t.mvm_groups),
        "mat_qk": lambda: f["heads"] * f["m"] * _c(f["d"], t.mat_tin) * _c(f["l"], t.mat_tout),
        "mat_pv": lambda: f["heads"] * f["m"] * _c(f["l"], t.mat_tin) * _c(f["d"], t.mat_tout),
        "rmsnorm": lambda: 2 * _c(f["rows"] * f["cols"], lanes),
        "layernorm": lambda: 3 * _c(f["rows"] * f["cols"], lanes),
        "softmax": lambda: 3 * _c(f["rows"] * f["cols"], lanes),
        "eltwise": lambda: _c(f["count"], lanes), "act": lambda: _c(f["count"], lanes),
        "rope": lambda: _c(f["m"] * f["heads"] * f["d"], lanes),
        "kv_append": lambda: _c(f["m"] * f["kv_heads"] * f["d"], lanes),
    }.get(e.op, lambda: 0)()
    regions = t.figures.regions
    hbm = next(r for r in regions if r.name == "hbm")
    hbm_b = ddr_b = 0
    for a, n in e.reads + e.writes:
        a, n = _ub(a), _ub(n)
        if hbm.base <= a < hbm.base + hbm.size:
            hbm_b += n
        else:
            ddr_b += n
    hbm_bytes = t.figures.hbm_bytes_per_cycle
    mem = max(math.ceil(hbm_b / hbm_bytes), math.ceil(ddr_b / (t.ddr_bits_per_cycle / 8)))
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


def op_rows(manifest: dict, build) -> list:
    """``[(entry, op, where, instructions, est cycles, bytes)]`` for every op of every entry."""
    if build is None:
        return []
    target = _target(manifest)
    rows = []
    for entry, ops in build.ops.items():
        for o in ops:
            insns = cyc = 0
            for e, n in _emits(o.get("stmts", ())):
                insns += n
                cyc += n * estimate_cycles(e, target)
            rows.append((entry, o.get("tag", o["op"]), o["where"], insns, cyc, o.get("bytes", 0)))
    return rows


def _target(manifest):
    from dlavm.target.schema import target_from_dict
    return target_from_dict(dict(manifest["target"]["description"]))


def format_report(manifest: dict, build=None, timings: dict | None = None) -> str:
    """Text report (see module docstring)."""
    lines = [f"model {manifest['model']}  target {manifest['target']['name']}  weights {manifest['weights_format']}"
             f"  ISA {manifest['isa_version']}",
             "dims: " + (", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in manifest["dims"].items()) or "none")]
    rows = op_rows(manifest, build)
    if rows:
        lines.append(f"{'entry':<10} {'op (tag as in profile)':<22} {'where':<13} {'insns':>6} "
                     f"{'est cycles (bound)':>19} {'out bytes':>10}")
        for entry, op, where, insns, cyc, nb in rows:
            lines.append(f"{entry:<10} {op:<22} {where:<13} {insns:>6} {cyc:>19,} {nb:>10,}")
        tot = sum(r[4] for r in rows)
        lines.append(f"{'total':<10} {'':<22} {'':<13} {sum(r[3] for r in rows):>6} {tot:>19,}")
    lines.append("memory:")
    for pool, p in manifest["memory"].items():
        lines.append(f"  {pool:<20} {p['region']:<4} at {p['base']:#014x} {p['used']:>15,} bytes"
                     f"  ({len(p['buffers'])} buffers)")
    for name, s in manifest["streams"].items():
        lines.append(f"stream {name}: {s['count']} instructions, {len(s['patches'])} patched fields, "
                     f"{len(s['guards'])} guarded entries")
    if manifest.get("host_ops"):
        lines.append(f"host-fallback ops: {manifest['host_ops']}")
    if timings:
        lines.append("compile time: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in timings.items()))
    return "\n".join(lines)


__all__ = ["format_report", "estimate_cycles", "op_rows"]
