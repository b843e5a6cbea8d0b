"""Batched decode (doc/llm.md "Batched decode"): several sequences generate together, continuously.

An LLM artifact compiled with ``batch = B > 1`` has ``B`` KV-cache slots and
the entries ``greedy_batch`` / ``logits_batch``: ``input_ids [1, batch]``, row
``r`` the next token of the sequence in slot ``r``, state dims ``ctx0 ..
ctx<B-1>`` (tokens in slot ``r`` after the call). :class:`BatchGenerator`
runs a list of requests on it:

* a request waits until a slot is free (the lowest free one), then its
  prompt is prefilled into that slot (``greedy`` / ``logits`` with state dims
  ``ctx``, ``slot``), which gives its first token;
* each step then runs one token of every active sequence in one call
  (``batch`` = 1 + the highest active slot; a free slot below it runs a
  dummy row: token 0 at ``ctx<r> = 1``, which touches only that free slot);
* a sequence stops on its own (its EOS, its ``max_new_tokens``, the context
  bound) and frees its slot, which the next waiting request takes before
  the next step (continuous batching).

Every request is checked like :meth:`Generator.generate` (same messages),
all before anything runs. Each sequence gets exactly the tokens (and, with
``keep_logits``, bit for bit the logits) it gets alone with
:class:`Generator`: rows are independent on the device (doc/llm.md), and a
sampling request draws from its own generator seeded with its own seed.
"""
from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .generate import GenerateArgumentError, Generator
from .runtime import RunError, Runtime
from .sampling import SplitMix64, sample

#: The batched-decode entries and dims as dlavm.passes.kv_cache names them (the runtime cannot import the
#: compiler: doc/architecture.md); tests/llm/test_batch_decode.py checks the two agree.
BATCH_ENTRIES = {"greedy": "greedy_batch", "logits": "logits_batch"}
ROWS_DIM = "batch"


def row_ctx_dim(r: int) -> str:
    return f"ctx{r}"


@dataclass
class Request:
    """One sequence to generate: as :meth:`Generator.generate`'s arguments."""

    prompt_ids: list
    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    eos_id: object = None


@dataclass
class Result:
    """What a request produced: its tokens, why it stopped (as :class:`Generator`), its slot and seed; with
    ``keep_logits`` the logits of every token (float32 [vocab], the prefill's last row first)."""

    tokens: list = field(default_factory=list)
    stop_reason: str | None = None
    stop_message: str = ""
    slot: int | None = None
    seed: int | None = None
    logits: list = field(default_factory=list)


class BatchGenerator:
    """Continuous batched generation over a :class:`Runtime` of a batched-decode artifact (module docstring)."""

    def __init__(self, runtime: Runtime):
        self.gen = Generator(runtime)  # refuses an artifact without generation entries
        self.rt, self.llm = runtime, self.gen.llm
        entries = runtime.manifest.entries
        if any(e not in entries for e in BATCH_ENTRIES.values()):
            raise RunError("this artifact has no batched-decode entries (compile it with batch > 1: "
                           "compile_llm(..., batch=B) or `dlavm compile --llm --batch B`)")
        #: B: the KV-cache slots, the most sequences one step runs
        self.slots = runtime.manifest.dims[ROWS_DIM].hi
        self.max_ctx = self.llm.max_ctx
        #: per request, its :class:`Result` (filled as :meth:`generate` runs)
        self.results: list = []
        #: per device call: {"kind": "prefill" | "decode", "rows", "active", "tokens", "cycles", "hbm_bytes",
        #: "macs"}
        self.steps: list = []

    def generate(self, requests, keep_logits: bool = False) -> Iterator[tuple]:
        """Yield ``(request index, token id)`` as each token is produced, for every request (a
        :class:`Request` or a prompt, token ids, run with the defaults). All requests are checked first
        (:class:`GenerateArgumentError`, :class:`ContextOverflowError` naming the request); ``keep_logits``
        runs the ``logits`` entries and keeps each token's logits in its :class:`Result`."""
        reqs = [r if isinstance(r, Request) else Request(list(r)) for r in requests]
        checked = []
        for i, r in enumerate(reqs):
            try:
                # the single-sequence checks and messages; the loop it returns is not run
                self.gen.generate(r.prompt_ids, r.max_new_tokens, r.temperature, r.top_k, r.top_p, r.seed,
                                  r.eos_id)
            except (GenerateArgumentError, RunError) as e:
                raise type(e)(f"request {i}: {e}") from None
            eos = () if r.eos_id is None else tuple(r.eos_id) if isinstance(r.eos_id, (list, tuple)) \
                else (r.eos_id,)
            seed = secrets.randbits(63) if r.seed is None else int(r.seed)
            checked.append((i, [int(t) for t in np.asarray(r.prompt_ids).reshape(-1)], int(r.max_new_tokens),
                            float(r.temperature), int(r.top_k), float(r.top_p), seed,
                            frozenset(int(e) for e in eos)))
        self.results = [Result(seed=c[6]) for c in checked]
        self.steps = []
        return self._loop(deque(checked), keep_logits)

    # --- the loop ---------------------------------------------------------------------------------
    def _loop(self, queue: deque, keep_logits: bool):
        active: dict = {}   # slot -> {"req", "past", "last", "rng", ...}
        while queue or active:
            for s in range(self.slots):
                if s not in active and queue:
                    seq = self._admit(s, queue.popleft(), keep_logits)
                    yield seq["req"][0], seq["last"]
                    if not self._finished(seq):
                        active[s] = seq
            if active:
                yield from self._step(active, keep_logits)

    def _admit(self, slot: int, req, keep_logits: bool) -> dict:
        """Prefill ``req``'s prompt into ``slot``; its first token."""
        i, prompt, max_new, temperature, top_k, top_p, seed, eos = req
        res = self.results[i]
        res.slot = slot
        seq = {"req": req, "rng": SplitMix64(seed), "past": 0}
        self.gen.slot, self.gen.past, self.gen.steps = slot, 0, []
        logits = temperature > 0 or keep_logits
        out = self.gen.step(prompt, logits=logits)
        self.steps.append({"kind": "prefill", "rows": 1, "active": 1, "tokens": len(prompt), **self._figures()})
        seq["past"] = len(prompt)
        seq["last"] = self._token(seq, out, logits)
        return seq

    def _token(self, seq, out, logits: bool) -> int:
        """The next token from a row's output (an argmax, or logits to keep / sample from)."""
        _, _, _, temperature, top_k, top_p, _, _ = seq["req"]
        res = self.results[seq["req"][0]]
        if not logits:
            tok = int(out)
        else:
            row = np.asarray(out, dtype=np.float32)
            res.logits.append(row)
            tok = sample(row, temperature, top_k, top_p, seq["rng"]) if temperature > 0 else int(np.argmax(row))
        res.tokens.append(tok)
        return tok

    def _finished(self, seq) -> bool:
        """Whether ``seq`` stops after its latest token (EOS, max_new_tokens, the context); sets its stop."""
        i, prompt, max_new, *_, eos = seq["req"]
        res = self.results[i]
        n = len(res.tokens)
        if seq["last"] in eos:
            res.stop_reason, res.stop_message = "eos", f"stopped at the end-of-sequence token {seq['last']} " \
                                                       f"after {n} tokens"
        elif n >= max_new:
            res.stop_reason, res.stop_message = "max_new_tokens", f"generated {n} tokens (max_new_tokens)"
        elif seq["past"] + 1 > self.max_ctx:
            res.stop_reason, res.stop_message = "context", (
                f"stopped at the context bound: the KV cache holds its maximum of {self.max_ctx} tokens "
                f"({len(prompt)} prompt + {n - 1} generated; {n} new tokens in all)")
        return res.stop_reason is not None

    def _step(self, active: dict, keep_logits: bool):
        """One batched call: a token of every active sequence; yields each new token, drops finished ones."""
        rows = max(active) + 1
        ids = np.zeros((1, rows), dtype=np.int64)
        dims = {row_ctx_dim(r): 1 for r in range(self.slots)}   # idle rows: a dummy token at position 0
        for s, seq in active.items():
            ids[0, s] = seq["last"]
            dims[row_ctx_dim(s)] = seq["past"] + 1
        logits = keep_logits or any(seq["req"][3] > 0 for seq in active.values())
        (out,) = self.rt.run(BATCH_ENTRIES["logits" if logits else "greedy"], ids, dims=dims)
        self.steps.append({"kind": "decode", "rows": rows, "active": len(active), "tokens": len(active),
                           **self._figures()})
        for s in sorted(active):
            seq = active[s]
            seq["past"] += 1
            seq["last"] = self._token(seq, out[0, s], logits)
            yield seq["req"][0], seq["last"]
            if self._finished(seq):
                del active[s]

    def _figures(self) -> dict:
        return {"cycles": self.rt.last_cycles, "hbm_bytes": self.rt.last_hbm_bytes,
                "macs": getattr(self.rt, "last_macs", 0)}


__all__ = ["BatchGenerator", "Request", "Result", "BATCH_ENTRIES"]
