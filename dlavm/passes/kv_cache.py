"""``kv_cache``: a decoder's no-cache device graph -> generation entries with a device KV cache.

Input: a device graph (after ``device_pipeline``) with one function whose
only dynamic dim is the token count ``seq`` (a causal LM forward:
``input_ids [1, seq] -> logits [1, seq, vocab]``). Output: a module with two
entries sharing weights and the KV caches (doc/llm.md):

* ``logits``: ``input_ids [1, seq] -> logits f32 [1, seq, vocab]`` (sampling);
* ``greedy``: ``input_ids [1, seq] -> int32 [1, seq]``, the LM head's row
  argmax computed on the device (only the indices are read back).

Both have a second dynamic dim ``ctx`` in ``[1, max_ctx]``: the number of
tokens in the cache *after* the call, so ``past = ctx - seq`` tokens were
cached by earlier calls. ``ctx`` is a *state dim*: no input shape carries
it; the caller (``dlavm.runtime.generate``) passes it, and the manifest
requires ``seq <= ctx``. Prefill is ``past = 0, seq = prompt``; decode is
``seq = 1``. What changes in the graph:

* every causal ``dev.attention`` gets a persistent cache ``layer<i>``
  (``capacity = max_ctx`` positions, fp16 ``[HKV, capacity, D]`` for K and
  V): its new K/V are appended at ``past`` and it attends to ``[0, ctx)``;
* ``dev.rope`` starts at ``pos0 = past``;
* a host ``arange(0, seq)`` (learned positions) becomes ``arange(past, ctx)``.

Guarantees afterwards: no op of the entries depends on ``seq`` as a
position any more (every position is ``past + i``); the module attribute
``llm`` describes the entries for the runtime and ``state_dims`` lists
``ctx``. Refuses (``KVCacheError``) a graph with no attention, a
non-causal attention or an attention with an explicit position.
"""
from __future__ import annotations

from dlavm import sym

from ..ir import Call, Function, Module, Mutator, Pass, post_order


class KVCacheError(ValueError):
    """The graph is not a decoder forward this pass can give a KV cache; names the reason."""


CTX_DIM = "ctx"


class _AddCache(Mutator):
    def __init__(self, seq, ctx, max_ctx: int):
        super().__init__()
        self.seq, self.ctx, self.max_ctx = seq, ctx, max_ctx
        self.past = ctx - seq
        self.layers = 0

    def visit_call(self, node: Call):
        new = super().visit_call(node)
        name = node.op.name
        if name == "dev.attention":
            a = node.attrs
            if not a["causal"] or a["pos0"] is not None or a["cache"] is not None:
                raise KVCacheError(f"attention at {node.span or '?'} is not a plain causal self-attention "
                                   f"(causal={a['causal']}, pos0={a['pos0']}); cannot give it a KV cache")
            layer = self.layers
            self.layers += 1
            return Call(node.op, new.args, {**a, "pos0": self.past, "cache": f"layer{layer}",
                                            "kv_len": self.ctx, "capacity": self.max_ctx}, span=node.span)
        if name == "dev.rope":
            if not sym.as_expr(node.attrs["pos0"]).is_const or sym.as_expr(node.attrs["pos0"]).value != 0:
                raise KVCacheError(f"rope at {node.span or '?'} already starts at {node.attrs['pos0']}")
            return Call(node.op, new.args, {**node.attrs, "pos0": self.past}, span=node.span)
        if name == "arange" and sym.as_expr(node.attrs["start"]) == sym.const(0) and \
                sym.as_expr(node.attrs["end"]) == self.seq:
            return Call(node.op, new.args, {**node.attrs, "start": self.past, "end": self.ctx}, span=node.span)
        if name == "dev.softmax" and node.attrs["causal"]:
            raise KVCacheError(f"a causal softmax outside dev.attention at {node.span or '?'}: its keys would "
                               "not come from the cache")
        return new


def _lm_head(body):
    """The final ``dev.mvm`` (LM head) under the output's ``dev.to_host`` and views."""
    if not (isinstance(body, Call) and body.op.name == "dev.to_host"):
        raise KVCacheError("the forward must return one device tensor (logits) through dev.to_host")
    n = body.args[0]
    while isinstance(n, Call) and n.op.name == "reshape":
        n = n.args[0]
    if not (isinstance(n, Call) and n.op.name == "dev.mvm" and n.attrs["res"] == "none"):
        raise KVCacheError("the logits are not computed by a plain dev.mvm (LM head) on the device")
    return body.args[0]


def add_kv_cache(mod: Module, max_ctx: int | None = None) -> Module:
    """The module of the docstring; ``max_ctx`` defaults to (and must not exceed) the bound of ``seq``."""
    if len(mod.functions) != 1:
        raise KVCacheError(f"expected one forward function, got {list(mod.functions)}")
    fn = next(iter(mod.functions.values()))
    dims = fn.sym_vars()
    if len(dims) != 1 or len(fn.params) != 1:
        raise KVCacheError(f"expected one input (token ids) with one dynamic dim (the token count), got "
                           f"inputs {[p.name for p in fn.params]} with dims {[str(d) for d in dims]}")
    seq = dims[0]
    max_ctx = seq.hi if max_ctx is None else int(max_ctx)
    if not 1 <= max_ctx <= seq.hi:
        raise KVCacheError(f"max context {max_ctx} must be in [1, {seq.hi}] (the bound of '{seq.name}' the "
                           "model was imported with)")
    ctx = sym.Var(CTX_DIM, 1, max_ctx)
    mut = _AddCache(seq, ctx, max_ctx)
    body = mut.run(fn.body)
    if mut.layers == 0:
        raise KVCacheError("the graph has no dev.attention: not a decoder (nothing to cache)")
    head = _lm_head(body)
    mvm = head
    while mvm.op.name == "reshape":
        mvm = mvm.args[0]
    greedy_body = Call("dev.to_host", [Call(mvm.op, mvm.args, {**mvm.attrs, "argmax": True}, span=mvm.span)],
                       {"dtype": "int32"})
    out = Module(params=mod.params, attrs=dict(mod.attrs))
    out.add(Function("logits", list(fn.params), body, dict(fn.attrs)))
    out.add(Function("greedy", list(fn.params), greedy_body, dict(fn.attrs)))
    caches = [n.attrs["cache"] for n in post_order(body) if isinstance(n, Call) and n.op.name == "dev.attention"]
    out.attrs["state_dims"] = [ctx]
    out.attrs["llm"] = {"seq_dim": seq.name, "ctx_dim": ctx.name, "max_ctx": max_ctx,
                        "vocab": int(mvm.args[1].type.shape[0]), "input": fn.params[0].name,
                        "entries": {"logits": "logits", "greedy": "greedy"}, "caches": caches,
                        "requires": [f"{seq.name} <= {ctx.name}"]}
    return out


def kv_cache(max_ctx: int | None = None) -> Pass:
    """The pass form of :func:`add_kv_cache` (module docstring)."""
    return Pass("kv_cache", lambda mod: add_kv_cache(mod, max_ctx), (__doc__ or "").strip().splitlines()[0])


__all__ = ["kv_cache", "add_kv_cache", "KVCacheError", "CTX_DIM"]
