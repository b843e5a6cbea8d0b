"""What each instruction touches and how long its unit computes: one definition.

For every opcode of :mod:`dlavm.target.isa` an :class:`InsnModel` gives

* ``accesses``: the memory ranges it reads and writes (:class:`Access`),
  as formulas over its fields. The formulas use only ``+``, ``-``, ``*``,
  :func:`cdiv` and branches on flag/enum fields (which are never dynamic),
  so they work on ints (the simulator) and on ``dlavm.sym`` expressions
  (the compiler evaluates them with bounds: wait bits, cost estimates);
* ``cycles``: compute cycles of its unit (doc/simulator.md, "Compute
  cycles"), evaluated on ints;
* ``latency``: the pipeline drain after the unit is done, a target field;
* ``macs``: multiply-accumulates it performs (statistics);
* ``tail``: cycles its unit still works after the transfer of one operand
  (``tail_after``, an access name: ``mvm``'s weights, the KV heads of
  ``mat_qk``/``mat_pv``) has ended, on the last of its data to arrive (0 for
  most ops: ``mvm``'s last weight tile, the last KV head's rows), evaluated
  on ints.

The simulator's timing model and bounds checks, the wait-bit analysis
(``dlavm.task.deps``), the compile report's estimate and the listing tool
all call the functions below; none keeps its own copy. What the device
*refuses* (field legality) and what it *computes* (numerics) are not here:
they are implemented by the simulator (``hw_models/units``) independently
of the compiler. A test (tests/hw_models/test_insn_conformance.py) checks
the declared accesses against the bytes the simulator's memory model
actually touched while executing each instruction.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dlavm.target.hbm_model import channel_cycles
from dlavm.target.isa import ARGMAX_RECORD_BYTES, OPS, op_format
from dlavm.target.layout import weight_bytes
from dlavm.target.schema import Target


class InsnModelError(ValueError):
    """An instruction has no model, or its model cannot be evaluated; names the op."""


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral)   # Python and numpy ints


@dataclass(frozen=True)
class Access:
    """A 2-D memory range an instruction reads or writes: ``rows`` rows of
    ``row_bytes`` bytes, ``stride`` bytes apart, starting at ``addr``.

    ``name`` is the instruction field holding the base address (so a field
    without an access is an operand the instruction does not use). Values
    are ints or ``dlavm.sym`` expressions.
    """

    name: str
    addr: Any
    row_bytes: Any
    rows: Any = 1
    stride: Any = 0
    write: bool = False

    @property
    def nbytes(self):
        return self.row_bytes * self.rows

    @property
    def span(self):
        """Bytes from the first to one past the last byte touched (0 when nothing is)."""
        if _is_int(self.row_bytes) and _is_int(self.rows) and self.row_bytes * self.rows == 0:
            return 0
        return (self.rows - 1) * self.stride + self.row_bytes

    def row_ranges(self) -> list[tuple[int, int]]:
        """``[(start, end)]`` of every row, ints only (for checks that compare bytes)."""
        if self.row_bytes * self.rows == 0:
            return []
        return [(self.addr + r * self.stride, self.addr + r * self.stride + self.row_bytes)
                for r in range(self.rows)]


@dataclass(frozen=True)
class InsnModel:
    """The model of one mnemonic; each callable takes the instruction's fields (all present)."""

    op: str
    accesses: Callable[[Mapping[str, Any], Target], list[Access]]
    cycles: Callable[[Mapping[str, Any], Target], int]
    latency: Callable[[Target], int]
    macs: Callable[[Mapping[str, Any]], int]
    tail: Callable[[Mapping[str, Any], Target], int]
    tail_after: str | None = None   # the access whose transfer ``tail`` follows (None: all of them)


def cdiv(a, b):
    """ceil(a / b) for ints and for ``dlavm.sym`` expressions (b > 0)."""
    if _is_int(a) and _is_int(b):
        return -(-a // b)
    from dlavm import sym  # only symbolic callers pay for the import
    return sym.ceildiv(a, b)


def _max(a, b):
    """max(a, b) for ints and for ``dlavm.sym`` expressions."""
    if _is_int(a) and _is_int(b):
        return max(a, b)
    from dlavm import sym
    return sym.smax(a, b)


def _zero(f, t=None) -> int:
    return 0


def _none(f, t) -> list[Access]:
    return []


# ---------------------------------------------------------------- dma
def _dma_accesses(f, t):
    return [Access("src", f["src"], f["row_bytes"], f["rows"], f["src_stride"]),
            Access("dst", f["dst"], f["row_bytes"], f["rows"], f["dst_stride"], write=True)]


def _dma_cycles(f, t):
    # The engine's datapath is as wide as all HBM channels together; for
    # off-chip transfers the per-channel time (the timing model) dominates.
    return cdiv(f["row_bytes"] * f["rows"], t.figures.hbm_bytes_per_cycle)


# ---------------------------------------------------------------- mvm
def _mvm_accesses(f, t):
    m, n = f["m"], f["n"]
    wbytes, sbytes = weight_bytes(f["wfmt"], n, f["k"], t.int4_group)   # the packing layout's sizes
    acc = [Access("x", f["x"], m * f["k"] * 2), Access("w", f["w"], wbytes)]
    if f["wfmt"] != "fp16":
        acc.append(Access("wscale", f["wscale"], sbytes))
    if f["affine"]:
        acc.append(Access("aff", f["aff"], 2 * n * 2))
    if f["res"] != "none":
        acc.append(Access("resid", f["resid"], m * n * 2))
    out_row = ARGMAX_RECORD_BYTES if f["argmax"] else n * (4 if f["out_fp32"] else 2)
    acc.append(Access("out", f["out"], m * out_row, write=True))
    return acc


def _min(a, b):
    """min(a, b) for ints and for ``dlavm.sym`` expressions."""
    if _is_int(a) and _is_int(b):
        return min(a, b)
    from dlavm import sym
    return sym.smin(a, b)


def _mvm_fill(f, t):
    # The products of the first tile start once its weights are on chip: the first tile's rows (two tiles'
    # when M > 1: the engine computes tiles in pairs, row by row) and their int4 scales, loaded at the
    # memory phase's rate alone; then the pipeline in (response to operand buffer to lanes: mvm_latency)
    # and, for the last tile, out (accumulate, epilogue, write-out: mvm_latency). Measured on the RTL
    # (doc/rtl.md); it shows where the compute bounds the instruction (prefill).
    rows = _min(f["n"], _min(f["m"], 2) * t.tout * t.mvm_groups)
    wb, sb = weight_bytes(f["wfmt"], rows, f["k"], t.int4_group)
    return _load_cycles(t, f["w"], wb + (sb if f["wfmt"] == "int4" else 0)) + 2 * t.mvm_latency


def _mvm_cycles(f, t):
    # One token row per pass; each cycle consumes Tin inputs for Tout outputs
    # in each of mvm_groups channel groups; after the first tile's fill.
    return f["m"] * cdiv(f["k"], t.tin) * cdiv(f["n"], t.tout * t.mvm_groups) + _mvm_fill(f, t)


def _mvm_tail(f, t):
    # A weight tile's rows are stored one after another and each of the tout lanes reads its own row, so the
    # last tile's products start only once its last row is on chip: after the memory phase the unit still
    # computes that tile for all m rows (m * ceil(k/tin) cycles), and its result passes the unit's pipeline
    # in and out (response to operand buffer to lanes; accumulate, epilogue, write-out: 2 * mvm_latency).
    # It shows only when the stream, not the compute, bounds the instruction (decode, m = 1).
    return f["m"] * cdiv(f["k"], t.tin) + 2 * t.mvm_latency


# ---------------------------------------------------------------- mat
def _kv_heads(f, name: str, stride: str) -> Access:
    """The key/value operand: one row of ``l*d`` fp16 values per KV head, ``stride`` apart."""
    return Access(name, f[name], f["l"] * f["d"] * 2, f["kv_heads"], f[stride])


def _qk_accesses(f, t):
    m, h, l, d = f["m"], f["heads"], f["l"], f["d"]
    return [Access("q", f["q"], m * h * d * 2), _kv_heads(f, "kc", "k_stride"),
            Access("out", f["out"], h * m * l * (4 if f["out_fp32"] else 2), write=True)]


def _pv_accesses(f, t):
    m, h, l, d = f["m"], f["heads"], f["l"], f["d"]
    return [Access("p", f["p"], h * m * l * 2), _kv_heads(f, "vc", "v_stride"),
            Access("out", f["out"], m * h * d * 2, write=True)]


def _mat_pipe(t) -> int:
    # Cycles of a mat instruction besides its steps and its first KV head's load, measured on the RTL
    # (doc/rtl.md): the check cycle, the head's request behind the first row's operand, and the last step's
    # way through the pipeline (buffer read, lane select, multiply, the tree, scale/convert) and the packer
    # to the last write: 13 cycles at mat_latency 5.
    return 2 * t.mat_latency + 3


def _qk_rows_after(f, t):
    """mat_qk's steps after a KV head has arrived: its group's rows (heads/kv_heads * m), the first of them
    only its last key chunk, then the pipeline."""
    row = cdiv(f["d"], t.mat_tin) * cdiv(f["l"], t.mat_tout)
    return (cdiv(f["heads"], f["kv_heads"]) * f["m"] - 1) * row + cdiv(f["d"], t.mat_tin) + _mat_pipe(t)


def _pv_rows_after(f, t):
    """mat_pv's steps after a KV head has arrived: its group's rows, less the first row's steps before its
    last L chunk, then the pipeline."""
    row = cdiv(f["l"], t.mat_tin) * cdiv(f["d"], t.mat_tout)
    return cdiv(f["heads"], f["kv_heads"]) * f["m"] * row - (cdiv(f["l"], t.mat_tin) - 1) + _mat_pipe(t)


def _qk_cycles(f, t):
    # Rows (h, m) one at a time, ceil(D/mat_tin) * ceil(L/mat_tout) steps each (key chunks outer). The first
    # row computes each key chunk as its keys arrive, so of it only the last chunk (ceil(D/mat_tin) steps)
    # waits for the whole first KV head (L*D*2 bytes at field kc: the memory phase's time for it alone, a
    # channel's set-up, its share of the bytes, the burst overheads); later heads are prefetched behind the
    # compute.
    row = cdiv(f["d"], t.mat_tin) * cdiv(f["l"], t.mat_tout)
    return (_load_cycles(t, f["kc"], f["l"] * f["d"] * 2) + (f["heads"] * f["m"] - 1) * row
            + cdiv(f["d"], t.mat_tin) + _mat_pipe(t))


def _pv_cycles(f, t):
    # Rows one at a time, ceil(L/mat_tin) * ceil(D/mat_tout) steps each (output chunks outer, the reduction
    # over L inner): the first output chunk needs every value row, so of the first row only the steps before
    # the last L chunk (ceil(L/mat_tin) - 1) run while the first KV head streams in.
    row = cdiv(f["l"], t.mat_tin) * cdiv(f["d"], t.mat_tout)
    return (_load_cycles(t, f["vc"], f["l"] * f["d"] * 2) + f["heads"] * f["m"] * row
            - (cdiv(f["l"], t.mat_tin) - 1) + _mat_pipe(t))


def _mat_macs(f):
    return f["heads"] * f["m"] * f["l"] * f["d"]


# ---------------------------------------------------------------- sfu
# The SFU streams an instruction's operands through ``sfu_lanes`` lanes. No lane can start before the first
# operand beat has arrived, ``dma_setup_cycles`` after the start (the channel's set-up), and the unit's own
# pipeline takes ``2 * sfu_latency`` more (request out and beat in; lanes and result beat out): that fill is
# paid once per instruction, whatever its size. Row-wise ops (the norms, softmax, rope's head rows) work on one
# row at a time: a pass over a row takes ceil(cols / sfu_lanes) cycles (a row does not share a lane cycle
# with the next one); rows are pipelined, so only the first row's arrival and the last row's reduction are
# not overlapped with other rows' passes.
def _sfu_fill(t) -> int:
    return t.dma_setup_cycles + 2 * t.sfu_latency


def _sfu_cycles(passes: int, elems: Callable) -> Callable:
    """Cycles of an op that streams ``elems(f)`` values through the lanes ``passes`` times, after the fill."""
    return lambda f, t: _sfu_fill(t) + passes * cdiv(elems(f), t.sfu_lanes)


def _tree_cycles(t) -> int:
    """Latency of the 7.1 tree over a stream of lane beats: log2(tree_lanes / sfu_lanes) + 2."""
    return (t.tree_lanes // t.sfu_lanes).bit_length() + 1


def _last_wait(rows, nw, rt):
    """Lane cycles lost waiting for the last rows' reductions in a two-pass row pipeline (doc/simulator.md).

    Pass 1 of a row ends in a reduction that takes ``rt`` cycles to come back (tree, scalar steps,
    pipeline); pass 2 (the output) needs it. The lanes always take the oldest row ready for a pass, output
    first, so rows go in groups of ``g = 1 + ceil(rt / nw)`` first passes then their outputs, without a gap;
    only the last group, of ``s`` rows, waits ``rt - (s - 1) * nw`` cycles (when positive) before its first
    output. ``s = rows - g * (ceil(rows / g) - 1)``.
    """
    g = 1 + cdiv(rt, nw)
    s = rows - g * (cdiv(rows, g) - 1)
    return _max(rt - (s - 1) * nw, 0)


def _norm_cycles(passes: int) -> Callable:
    # rmsnorm 2 passes per row (x⊗x reduction, output), layernorm 3 (x, d⊗d, output). A reduction comes back
    # after the lanes' pipeline (2), the tree and the scalar chain (rmsnorm 4 steps: ⊘ c, ⊕ eps, sqrt, 1 ⊘;
    # layernorm's first reduction 1, ⊘ c, its second 4), then the last output pass leaves through the lanes
    # and the writer (rmsnorm sfu_latency + 1; layernorm's longer lane chain, ⊖ μ ⊗ r ⊗ γ ⊕ β,
    # 2 * sfu_latency). layernorm's two reductions act as one of their summed round trips over its two
    # reduction passes (2 * nw lane cycles per row). Measured on the RTL (doc/rtl.md).
    def cycles(f, t):
        nw = cdiv(f["cols"], t.sfu_lanes)
        rt = 2 + _tree_cycles(t) + 4
        if passes == 3:
            rt, out = rt + 2 + _tree_cycles(t) + 1, 2 * t.sfu_latency
        else:
            out = t.sfu_latency + 1
        return (_sfu_fill(t) + f["rows"] * passes * nw + _last_wait(f["rows"], (passes - 1) * nw, rt) + out)
    return cycles


def _softmax_cycles(f, t):
    # The row maximum is taken on the read path as the row streams in (comparators on the unpacked lanes, no
    # lane pass), so the lanes make 2 passes per row (exp + sum, output), after the first row has arrived
    # whole (one lane group per cycle). The sum comes back after the tree and the reciprocal (tree + 5) for
    # the output pass, which leaves through the lane pipeline and the writer (2 * sfu_latency). Measured on
    # the RTL (doc/rtl.md).
    nw = cdiv(f["cols"], t.sfu_lanes)
    return (_sfu_fill(t) + nw + 2 * f["rows"] * nw + _last_wait(f["rows"], nw, _tree_cycles(t) + 5)
            + 2 * t.sfu_latency)


def _load_cycles(t, addr, nbytes) -> int:
    """Channel time of ``nbytes`` read alone from ``addr``: the memory phase's formula for one operand
    (:func:`dlavm.target.hbm_model.channel_cycles`, one stream, no turnaround), on its busiest channel."""
    fig = t.figures
    if _is_int(addr) and fig.region("sram").contains(addr):
        return 0
    if _is_int(addr) and fig.region("ddr").contains(addr):
        return channel_cycles(t, nbytes, fig.ddr_bytes_per_cycle, hbm=False)
    return channel_cycles(t, cdiv(nbytes, t.hbm_channels), fig.hbm_bytes_per_cycle_per_channel)


def _act_cycles(f, t):
    # A value may need any of the table's nseg + 2 entries: the lanes start once the whole table is on chip
    # (its load is not overlapped with them; src streams in meanwhile), then the pipeline as in the fill.
    return (_load_cycles(t, f["table"], (f["nseg"] + 2) * 8) + 2 * t.sfu_latency
            + cdiv(f["count"], t.sfu_lanes))


def _rope_cycles(f, t):
    # One head row (d values) at a time. The first head row's lanes need the token's whole table row (cos and
    # sin of every dimension pair, d*4 bytes) and the row's d*2 source bytes, so they start once both are
    # loaded (each the memory phase's time for it alone), then the unit's pipeline as in the fill.
    d = f["d"]
    first = _max(_load_cycles(t, f["table"] + f["pos0"] * d * 4, d * 4), _load_cycles(t, f["src"], d * 2))
    return first + 2 * t.sfu_latency + f["m"] * f["heads"] * cdiv(d, t.sfu_lanes)


def _kv_append_cycles(f, t):
    # An exact copy: no lane arithmetic; a row (d fp16 values) moves through the unit's port a beat
    # (hbm_bytes_per_cycle, all HBM channels' width) per cycle, one row at a time.
    return _sfu_fill(t) + f["m"] * f["kv_heads"] * cdiv(f["d"] * 2, t.figures.hbm_bytes_per_cycle)


def _norm_accesses(f, t, beta: bool):
    n = f["rows"] * f["cols"] * 2
    acc = [Access("src", f["src"], n), Access("gamma", f["gamma"], f["cols"] * 2)]
    if beta:
        acc.append(Access("beta", f["beta"], f["cols"] * 2))
    return acc + [Access("dst", f["dst"], n, write=True)]


def _softmax_accesses(f, t):
    n = f["rows"] * f["cols"]
    return [Access("src", f["src"], n * (4 if f["in_fp32"] else 2)), Access("dst", f["dst"], n * 2, write=True)]


def _eltwise_accesses(f, t):
    n = f["count"] * 2
    p = f["period"]  # a symbolic period is a row size, never 0
    nb = f["count"] * 2 if _is_int(p) and p == 0 else p * 2
    return [Access("a", f["a"], n), Access("b", f["b"], nb), Access("dst", f["dst"], n, write=True)]


def _act_accesses(f, t):
    n = f["count"] * 2
    return [Access("src", f["src"], n), Access("table", f["table"], (f["nseg"] + 2) * 8),
            Access("dst", f["dst"], n, write=True)]


def _rope_accesses(f, t):
    n = f["m"] * f["heads"] * f["d"] * 2
    # Only the rows of positions pos0 .. pos0+m-1 of the fp32 [positions, D] table.
    return [Access("src", f["src"], n), Access("table", f["table"] + f["pos0"] * f["d"] * 4, f["m"] * f["d"] * 4),
            Access("dst", f["dst"], n, write=True)]


def _kv_append_accesses(f, t):
    m, d = f["m"], f["d"]
    return [Access("src", f["src"], m * f["kv_heads"] * d * 2),
            Access("dst", f["dst"] + f["pos"] * d * 2, m * d * 2, f["kv_heads"], f["head_stride"], write=True)]


_LATENCY_FIELD = {"dma": "dma_latency", "mvm": "mvm_latency", "mat": "mat_latency", "sfu": "sfu_latency"}


def _unit_latency(op: str) -> Callable[[Target], int]:
    unit = op_format(op).unit
    if unit == "seq":
        return _zero
    name = _LATENCY_FIELD[unit]
    return lambda t: getattr(t, name)


def _model(op: str, accesses, cycles, macs=_zero, tail=_zero, tail_after=None) -> InsnModel:
    return InsnModel(op, accesses, cycles, _unit_latency(op), macs, tail, tail_after)


INSN_MODELS: dict[str, InsnModel] = {m.op: m for m in (
    # nop and fence run in the issue stage: no memory, no cycles (fence's
    # effect on later instructions is a rule of the execution model).
    _model("nop", _none, _zero),
    _model("fence", _none, _zero),
    _model("dma", _dma_accesses, _dma_cycles),
    _model("mvm", _mvm_accesses, _mvm_cycles, lambda f: f["m"] * f["k"] * f["n"], _mvm_tail, "w"),
    _model("mat_qk", _qk_accesses, _qk_cycles, _mat_macs, _qk_rows_after, "kc"),
    _model("mat_pv", _pv_accesses, _pv_cycles, _mat_macs, _pv_rows_after, "vc"),
    _model("rmsnorm", lambda f, t: _norm_accesses(f, t, beta=False), _norm_cycles(2)),
    _model("layernorm", lambda f, t: _norm_accesses(f, t, beta=True), _norm_cycles(3)),
    _model("softmax", _softmax_accesses, _softmax_cycles),
    _model("eltwise", _eltwise_accesses, _sfu_cycles(1, lambda f: f["count"])),
    _model("act", _act_accesses, _act_cycles),
    _model("rope", _rope_accesses, _rope_cycles),
    _model("kv_append", _kv_append_accesses, _kv_append_cycles),
)}

_missing = sorted({o.mnemonic for o in OPS} - set(INSN_MODELS))
if _missing:  # an opcode without a model would be priced and analysed as nothing
    raise AssertionError(f"opcodes without an instruction model: {_missing}")


def insn_model(op: str) -> InsnModel:
    """The :class:`InsnModel` of mnemonic ``op``; :class:`InsnModelError` naming it if none."""
    try:
        return INSN_MODELS[op]
    except KeyError:
        raise InsnModelError(f"no instruction model for {op!r}; modelled instructions: "
                             f"{sorted(INSN_MODELS)}") from None


def _full(op: str, fields: Mapping[str, Any]) -> dict:
    """``fields`` with every field of ``op`` present (defaults as :func:`dlavm.target.isa.make` fills them)."""
    fmt = op_format(op)
    out = {f.name: f.default() for f in fmt.fields}
    out.update(fields)
    return out


def accesses(op: str, fields: Mapping[str, Any], target: Target) -> list[Access]:
    """The memory ranges instruction ``op`` with ``fields`` reads and writes.

    Field values may be ints or ``dlavm.sym`` expressions (flag and enum
    fields must be concrete); missing fields take their encoding default.
    Ranges with zero bytes are included (their ``nbytes`` is 0).
    """
    return insn_model(op).accesses(_full(op, fields), target)


def cycles(op: str, fields: Mapping[str, Any], target: Target) -> int:
    """Compute cycles of instruction ``op`` (int fields), without memory time."""
    return int(insn_model(op).cycles(_full(op, fields), target))


def tail(op: str, fields: Mapping[str, Any], target: Target) -> int:
    """Cycles unit work of ``op`` (int fields) continues after its memory phase has ended."""
    return int(insn_model(op).tail(_full(op, fields), target))


def tail_after(op: str) -> str | None:
    """The access of ``op`` whose transfer its :func:`tail` follows (None: the whole memory phase)."""
    return insn_model(op).tail_after


def latency(op: str, target: Target) -> int:
    """Cycles from the unit finishing ``op`` to its results being visible."""
    return int(insn_model(op).latency(target))


def macs(op: str, fields: Mapping[str, Any]) -> int:
    """Multiply-accumulates of instruction ``op`` (int fields); 0 for non-arithmetic ops."""
    return int(insn_model(op).macs(_full(op, fields)))


def unused_operands(op: str, fields: Mapping[str, Any], target: Target) -> tuple[str, ...]:
    """Address fields of ``op`` that these field values leave unused (no access names them),
    e.g. ``mvm.aff`` without ``affine``: listings show such a field as ``-``."""
    used = {a.name for a in accesses(op, fields, target)}
    return tuple(f.name for f in op_format(op).fields if f.kind == "addr" and f.name not in used)


__all__ = ["Access", "InsnModel", "InsnModelError", "INSN_MODELS", "insn_model", "accesses", "cycles",
           "latency", "macs", "tail", "tail_after", "cdiv", "unused_operands"]
