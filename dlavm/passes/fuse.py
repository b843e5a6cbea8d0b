"""``fuse``: fold device elementwise ops into the ``dev.mvm`` epilogue (doc/isa.md 7.3).

Table ``FUSIONS`` (data, applied to a fixed point like ``legalize``):

* residual add: ``eltwise(add, r, mvm(x))`` -> ``mvm(x, res='add', resid=r)``;
* SwiGLU: ``eltwise(mul, g, mvm(x))`` -> ``mvm(x, res='mul', resid=g)``, so
  ``down(silu(gate(x)) * up(x))`` runs the gate product inside the up projection;
* through views: either operand may be a reshape of the mvm (GPT-2's 2-D
  linears inside a 3-D residual stream); the residual is reshaped to the
  mvm's shape and the result back (both are address arithmetic).

``linear + bias`` and ``relu`` are fused by ``legalize`` already (they exist
at the ATen level); ``argmax`` over an LM head likewise. The mvm must have
no other user (else the unfused value would be recomputed) and no epilogue
yet. Numerically the fusion applies the residual to the fp32 accumulator
before the single fp16 rounding, which is the ISA's definition and at
least as accurate as the unfused pair.

Guarantees afterwards: no ``dev.eltwise`` add/mul has a single-use plain
``dev.mvm`` (up to reshapes) as an operand and a same-shape other operand
(a broadcast row, ``dev.eltwise`` with ``period``, is not a residual).

Not fused (documented in doc/passes.md): norm + linear. The ISA's mvm
epilogue is per *output* channel and has no row-reduction stage, so an
RMSNorm cannot run inside an mvm; folding gamma into the weight's columns
would change the quantisation of every weight and is left to a later pass.
"""
from __future__ import annotations

from ..ir import Call, Module, module_pass
from .patterns_match import MatchContext, Pat, Pattern, is_op, record_rule_stats, reshape, run_table


def _plain_mvm(y) -> bool:
    return is_op(y, "dev.mvm") and y.attrs["res"] == "none" and not y.attrs["argmax"] and not y.attrs["relu"]


def _epilogue(node, ctx, r, m):
    """``node`` = eltwise(r, m) with m a (reshape chain of a) plain single-use mvm -> mvm(res=fn, resid=r)."""
    if tuple(r.type.shape) != tuple(m.type.shape):  # a broadcast row is not an mvm residual
        return None
    y = m
    while is_op(y, "reshape") and ctx.single_use(y):
        y = y.args[0]
    if not (_plain_mvm(y) and ctx.single_use(y)):
        return None
    kind = node.attrs["fn"]
    fused = Call(y.op, y.args + (reshape(r, y.type.shape),), {**y.attrs, "res": kind}, span=y.span)
    return reshape(fused, node.type.shape)


def _eltwise(fn):
    # the mvm side is tried in both operand positions; the other operand is the residual
    return Pat("dev.eltwise", Pat.any("r"), Pat.any("m"), attrs={"fn": fn}, commutative=True)


FUSIONS = [
    Pattern("residual-add->mvm.res_add", _eltwise("add"), _epilogue, "r + mvm(x) -> mvm(x, res=add)"),
    Pattern("swiglu->mvm.res_mul", _eltwise("mul"), _epilogue, "g * mvm(x) -> mvm(x, res=mul)"),
]


@module_pass("fuse")
def fuse(mod: Module) -> Module:
    """Apply the ``FUSIONS`` table (module docstring); ``mod.attrs["fuse_stats"]`` counts firings."""
    ctx = MatchContext(mod.params, dict(mod.attrs))
    out = Module(params=mod.params, attrs=dict(mod.attrs))
    for f in mod.functions.values():
        out.add(run_table(f, FUSIONS, ctx))
    out.attrs["fuse_stats"] = dict(ctx.stats)
    record_rule_stats(ctx)
    return out
