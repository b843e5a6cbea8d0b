"""Where every op of a compiled model runs, and why: the host-fallback table and the supported-ops report.

:func:`format_host_table` prints the compile report's host-fallback table:
one row per root cause (:func:`dlavm.passes.device_pipeline.host_op_table`),
with the module path recorded at import, the op, the reason and how many
followers (reshapes and casts on the host only because their neighbour is)
it drags along.

:func:`ops_report_rows` and :func:`write_ops_report` give the per-model
supported-ops report of ``dlavm compile --ops-report FILE`` (in the spirit
of Arm Vela's ``--supported-ops-report``, but for one model): per op, where
it runs (``device``, ``host``, ``transfer``), why, in which module, how many
times. CSV or Markdown, by the file's extension.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from dlavm.ir import Call, post_order
from dlavm.passes.device_pipeline import host_op_table, host_ops, is_device_call, module_label, node_modules

#: File extensions ``write_ops_report`` writes, and the format of each.
OPS_REPORT_FORMATS = {".csv": "csv", ".md": "markdown"}
OPS_REPORT_COLUMNS = ("op", "where", "count", "module", "reason", "entries")


class OpsReportError(ValueError):
    """The ops-report file cannot be written (an unknown extension); names the path."""


def _as_dict(h) -> dict:
    """A host-op entry as a dict: the device pipeline's already is; a manifest ``HostOp`` record is not."""
    if isinstance(h, dict):
        return h
    return {"op": h.op, "node": h.node, "reason": h.reason, "function": h.function, "root": None, "drags": 0}


def format_host_table(ops) -> list:
    """Lines of the host-fallback table of ``ops`` (the device pipeline's ``host_ops`` list or the
    manifest's records, whose rows carry no module path)."""
    ops = [_as_dict(h) for h in ops]
    rows = host_op_table(ops)
    followers = sum(r["drags"] for r in rows)
    lines = [f"host-fallback ops: {len(ops)} node(s): {len(ops) - followers} root op(s) in {len(rows)} row(s)"
             + (f", {followers} dragged along by them" if followers else "")
             + " (nodes: the row's root ops; drags: reshapes/casts on the host only because of them)"]
    width = max([len("module")] + [len(r["module"] or "?") for r in rows])
    opw = max([len("op")] + [len(", ".join(r["ops"])) for r in rows])
    lines.append(f"  {'module':<{width}}  {'op':<{opw}}  {'nodes':>5}  {'drags':>5}  reason")
    for r in rows:
        lines.append(f"  {r['module'] or '?':<{width}}  {', '.join(r['ops']):<{opw}}  {r['nodes']:>5}  "
                     f"{r['drags']:>5}  {r['reason']}")
    return lines


def _summary(doc: str, limit: int = 80) -> str:
    """The op doc's first clause (up to ``;``), at most ``limit`` characters."""
    text = " ".join((doc or "").split()).split(";")[0].rstrip(".")
    return text if len(text) <= limit else text[:limit - 3].rsplit(" ", 1)[0] + "..."


_WHERE_ORDER = {"device": 0, "transfer": 1, "host": 2}


def ops_report_rows(module) -> list:
    """Rows of the supported-ops report of a device graph (``CompiledModel.device_module``).

    Each row is a dict with :data:`OPS_REPORT_COLUMNS`: ``where`` is ``device`` (a ``dev.*`` op or a
    reshape view of a device tensor), ``transfer`` (``dev.to_device``/``dev.to_host``) or ``host`` (a
    host-fallback op; ``reason`` is the device pipeline's, and a follower's names the op kind of its
    root); ``count`` the calls with the same op, place, module and reason; ``entries`` the functions
    they occur in. Device rows first, then transfers, then host rows, each in graph order.
    """
    ops = host_ops(module)
    listed: dict = {}
    for h in ops:
        listed.setdefault((h["function"], h["op"], h["node"]), []).append(h)
    rows: dict = {}

    def add(op, where, module_path, reason, fn):
        r = rows.setdefault((op, where, module_path, reason),
                            {"op": op, "where": where, "count": 0, "module": module_path, "reason": reason,
                             "entries": []})
        r["count"] += 1
        if fn not in r["entries"]:
            r["entries"].append(fn)

    for fname, f in module.functions.items():
        modules = node_modules(f)
        for i, n in enumerate(post_order(f.body)):
            if not isinstance(n, Call):
                continue
            path, cls = modules[id(n)]
            here = module_label({"module": path, "module_type": cls}) or "?"
            if n.op.name in ("dev.to_device", "dev.to_host"):
                add(n.op.name, "transfer", here, _summary(n.op.doc), fname)
            elif is_device_call(n):
                spec = n.op.get_attr("spec") if n.op.name.startswith("dev.") else None
                why = (f"runs on the device ({', '.join(spec.emits)} instructions)" if spec is not None
                       else "a view of a device tensor (no data moves)")
                add(n.op.name, "device", here, why, fname)
            else:
                key = (fname, n.op.name, str(n.span) if n.span else f"{fname}:{n.op.name}#{i}")
                h = listed[key].pop(0)
                why = h["reason"] if h["root"] is None else \
                    f"{h['reason'].split(', dragged along by ')[0]}, dragged along by a host {ops[h['root']]['op']}"
                add(n.op.name, "host", here, why, fname)
    out = [dict(r, entries=", ".join(r["entries"])) for r in rows.values()]
    return sorted(out, key=lambda r: _WHERE_ORDER[r["where"]])


def check_ops_report_path(path) -> str:
    """The format of ``path`` by its extension (:data:`OPS_REPORT_FORMATS`), or :class:`OpsReportError`."""
    fmt = OPS_REPORT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OpsReportError(f"ops report '{path}': the file name must end in "
                             f"{' or '.join(OPS_REPORT_FORMATS)} (the format is chosen by the extension)")
    return fmt


def format_ops_report(rows: list, fmt: str, title: str = "") -> str:
    """``rows`` (:func:`ops_report_rows`) as CSV or Markdown text."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, OPS_REPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: r[k] for k in OPS_REPORT_COLUMNS} for r in rows)
        return buf.getvalue()
    counts = {w: sum(r["count"] for r in rows if r["where"] == w) for w in ("device", "transfer", "host")}
    out = [f"# Supported ops{': ' + title if title else ''}", "",
           "Generated by `dlavm compile --ops-report`. Where each op of the compiled model runs and why: "
           "`device` ops run on the accelerator, `transfer` ops move a tensor across the boundary, `host` ops "
           "fall back to the host runtime (a reshape or cast that is on the host only because a neighbour is "
           "names that root in its reason).", "",
           f"Calls: {counts['device']} on the device, {counts['transfer']} transfers, {counts['host']} on the host.",
           "", "| " + " | ".join(OPS_REPORT_COLUMNS) + " |", "|" + "---|" * len(OPS_REPORT_COLUMNS)]
    for r in rows:
        cells = [str(r[k]).replace("|", "\\|") for k in OPS_REPORT_COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def write_ops_report(path, compiled) -> Path:
    """Write the supported-ops report of ``compiled`` (a freshly compiled ``CompiledModel``) to ``path``."""
    fmt = check_ops_report_path(path)
    if compiled.device_module is None:
        raise OpsReportError("an ops report needs the device graph: compile the model (a loaded artifact has none)")
    path = Path(path)
    path.write_text(format_ops_report(ops_report_rows(compiled.device_module), fmt,
                                      f"{compiled.manifest.model} on {compiled.manifest.target.name}"))
    return path


__all__ = ["OPS_REPORT_COLUMNS", "OPS_REPORT_FORMATS", "OpsReportError", "check_ops_report_path", "format_host_table",
           "format_ops_report", "ops_report_rows", "write_ops_report"]
