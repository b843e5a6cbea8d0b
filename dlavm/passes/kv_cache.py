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

With ``batch = B > 1`` (batched decode, doc/llm.md "Batched decode") every
cache holds ``B`` *slots* of ``max_ctx`` positions (``[B, HKV, max_ctx, D]``),
``logits`` / ``greedy`` get a second state dim ``slot`` in ``[0, B-1]`` (the
slot their sequence's K/V go to and come from), and two more entries run one
new token of each of up to ``B`` sequences together:

* ``logits_batch`` / ``greedy_batch``: ``input_ids [1, batch]`` (``batch`` in
  ``[1, B]``), row ``r`` the next token of the sequence in slot ``r``, with
  state dims ``ctx0 .. ctx<B-1>``: ``ctx<r>`` tokens in slot ``r`` after the
  call. Row ``r`` is at position ``ctx<r> - 1``; its K/V go to slot ``r`` there
  and it attends to that slot's ``[0, ctx<r>)``. Rows ``r >= batch`` do not run
  (their ``ctx<r>`` is still passed, any value in bounds).

Guarantees afterwards: no op of the entries depends on ``seq`` as a
position any more (every position is ``past + i``, or ``ctx<r> - 1`` for a
row of a batched entry); the module attribute ``llm`` describes the entries
for the runtime and ``state_dims`` lists ``ctx`` (and with ``B > 1``
``slot`` and ``ctx0 ..``; each function's own are its ``state_dims``
attribute). ``B = 1`` gives exactly the module without batching. Refuses
(``KVCacheError``) a graph with no attention, a non-causal attention or an
attention with an explicit position, and with ``B > 1`` a ``B`` outside
``[1, MAX_BATCH]`` or positions that are not RoPE (learned positions).
"""
from __future__ import annotations

from dlavm import sym

from ..ir import Call, Function, Module, Mutator, Pass, TensorType, Var, post_order


class KVCacheError(ValueError):
    """The graph is not a decoder forward this pass can give a KV cache; names the reason."""


CTX_DIM = "ctx"
SLOT_DIM = "slot"
ROWS_DIM = "batch"
#: The most sequences one batched step runs (one state dim ``ctx<r>`` each).
MAX_BATCH = 8
#: The batched-decode entries, by the role of the single-sequence entry they batch.
BATCH_ENTRIES = {"logits": "logits_batch", "greedy": "greedy_batch"}


def row_ctx_dim(r: int) -> str:
    """The state dim of batched row ``r``: tokens in slot ``r`` after the call."""
    return f"{CTX_DIM}{r}"


class _AddCache(Mutator):
    def __init__(self, seq, ctx, max_ctx: int, slot=None, slots: int = 1):
        super().__init__()
        self.seq, self.ctx, self.max_ctx = seq, ctx, max_ctx
        self.past = ctx - seq
        self.layers = 0
        # B > 1: the caches have ``slots`` slots and this entry's sequence is in slot ``slot``
        self.slot_attrs = {} if slot is None else {"slot": slot, "slots": slots}

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
                                            "kv_len": self.ctx, "capacity": self.max_ctx, **self.slot_attrs},
                        span=node.span)
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


def _subst(v, mapping):
    """Attribute value ``v`` with the dims of ``mapping`` substituted (sym expressions, in tuples too)."""
    if isinstance(v, sym.Expr):
        return sym.substitute(v, mapping)
    if isinstance(v, (tuple, list)):
        return type(v)(_subst(x, mapping) for x in v)
    return v


class _BatchRows(Mutator):
    """The no-cache forward with its token dim renamed ``batch`` (row ``r``: one new token of the sequence in
    slot ``r``) and per-row positions: attention over slot ``r`` of the layer's cache with ``row_ctx[r]``
    keys, RoPE at ``row_ctx[r] - 1``."""

    def __init__(self, seq, rows, row_ctx: tuple, max_ctx: int, slots: int):
        super().__init__()
        self.map = {seq: rows}
        self.seq, self.row_ctx, self.max_ctx, self.slots = seq, row_ctx, max_ctx, slots
        self.layers = 0

    def visit_var(self, node):
        t = node.type
        return Var(node.name, TensorType(tuple(_subst(d, self.map) for d in t.shape), t.dtype), node.span)

    def visit_call(self, node: Call):
        args = tuple(self.new(a) for a in node.args)
        attrs = {k: _subst(v, self.map) for k, v in node.attrs.items()}
        name = node.op.name
        if name == "dev.attention":
            layer = self.layers
            self.layers += 1
            attrs.update(cache=f"layer{layer}", kv_len=self.row_ctx[0], capacity=self.max_ctx,
                         slots=self.slots, row_ctx=self.row_ctx)
        elif name == "dev.rope":
            attrs["row_pos"] = tuple(c - 1 for c in self.row_ctx)
        elif name == "arange" and sym.as_expr(node.attrs["end"]) == self.seq:
            raise KVCacheError(f"learned positions (arange at {node.span or '?'}) with batched decode: each "
                               "row needs its own position, which only RoPE models have here; compile with "
                               "batch 1")
        return Call(node.op, args, attrs, span=node.span)


def _batched_entries(fn: Function, seq, max_ctx: int, batch: int) -> tuple:
    """``(logits_batch, greedy_batch, state dims)`` of the module docstring."""
    rows = sym.Var(ROWS_DIM, 1, batch)
    row_ctx = tuple(sym.Var(row_ctx_dim(r), 1, max_ctx) for r in range(batch))
    mut = _BatchRows(seq, rows, row_ctx, max_ctx, batch)
    params = [mut.run(p) for p in fn.params]
    body = mut.run(fn.body)
    attrs = {**fn.attrs, "state_dims": list(row_ctx), "requires": []}
    logits = Function(BATCH_ENTRIES["logits"], params, body, dict(attrs))
    greedy = Function(BATCH_ENTRIES["greedy"], params, _greedy_body(body), dict(attrs))
    return logits, greedy, list(row_ctx)


def _greedy_body(body):
    head = _lm_head(body)
    mvm = head
    while mvm.op.name == "reshape":
        mvm = mvm.args[0]
    return Call("dev.to_host", [Call(mvm.op, mvm.args, {**mvm.attrs, "argmax": True}, span=mvm.span)],
                {"dtype": "int32"})


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


def add_kv_cache(mod: Module, max_ctx: int | None = None, batch: int = 1) -> Module:
    """The module of the docstring; ``max_ctx`` defaults to (and must not exceed) the bound of ``seq``;
    ``batch`` is ``B``, the KV-cache slots and the most sequences a batched step runs."""
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
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise KVCacheError(f"batch {batch!r} must be an integer in [1, {MAX_BATCH}] (sequences decoded together)")
    ctx = sym.Var(CTX_DIM, 1, max_ctx)
    slot = sym.Var(SLOT_DIM, 0, batch - 1) if batch > 1 else None
    mut = _AddCache(seq, ctx, max_ctx, slot, batch)
    body = mut.run(fn.body)
    if mut.layers == 0:
        raise KVCacheError("the graph has no dev.attention: not a decoder (nothing to cache)")
    greedy_body = _greedy_body(body)
    mvm = greedy_body.args[0]
    fattrs = dict(fn.attrs) if slot is None else {**fn.attrs, "state_dims": [ctx, slot]}
    out = Module(params=mod.params, attrs=dict(mod.attrs))
    out.add(Function("logits", list(fn.params), body, dict(fattrs)))
    out.add(Function("greedy", list(fn.params), greedy_body, dict(fattrs)))
    state = [ctx]
    if batch > 1:
        logits_b, greedy_b, row_ctx = _batched_entries(fn, seq, max_ctx, batch)
        out.add(logits_b)
        out.add(greedy_b)
        state += [slot] + row_ctx
    caches = [n.attrs["cache"] for n in post_order(body) if isinstance(n, Call) and n.op.name == "dev.attention"]
    out.attrs["state_dims"] = state
    out.attrs["llm"] = {"seq_dim": seq.name, "ctx_dim": ctx.name, "max_ctx": max_ctx,
                        "vocab": int(mvm.args[1].type.shape[0]), "input": fn.params[0].name,
                        "entries": {"logits": "logits", "greedy": "greedy"}, "caches": caches,
                        "requires": [f"{seq.name} <= {ctx.name}"]}
    return out


def kv_cache_bytes(mod: Module) -> int:
    """Bytes of one sequence's KV cache (one slot: K and V of every layer at the full capacity) of a module
    made by :func:`add_kv_cache`."""
    fn = mod.functions["logits"]
    total = 0
    for n in post_order(fn.body):
        if isinstance(n, Call) and n.op.name == "dev.attention" and n.attrs["cache"] is not None:
            _, hkv, d = n.args[1].type.shape
            total += 2 * int(hkv) * int(n.attrs["capacity"]) * int(d) * 2
    return total


def kv_cache(max_ctx: int | None = None, batch: int = 1) -> Pass:
    """The pass form of :func:`add_kv_cache` (module docstring)."""
    return Pass("kv_cache", lambda mod: add_kv_cache(mod, max_ctx, batch),
                (__doc__ or "").strip().splitlines()[0])


__all__ = ["kv_cache", "add_kv_cache", "kv_cache_bytes", "KVCacheError", "CTX_DIM", "SLOT_DIM", "ROWS_DIM", "MAX_BATCH",
           "BATCH_ENTRIES",
           "row_ctx_dim"]
