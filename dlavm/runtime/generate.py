"""Token generation on a KV-cached LLM artifact (doc/llm.md): numpy only, like the runtime.

An LLM artifact (``manifest.llm``, made by ``dlavm.llm.compile_llm``) has
entries ``greedy`` (``input_ids [1, seq] -> int32 [1, seq]``, argmax on the
device) and ``logits`` (``-> f32 [1, seq, vocab]``), both with the state dim
``ctx`` = tokens in the device KV cache after the call. :class:`Generator`
keeps ``past`` (tokens cached so far) between calls:

* prefill: ``seq = len(prompt)``, ``ctx = seq`` (the cache is overwritten
  from position 0, so a new prompt needs no reset);
* decode: ``seq = 1``, ``ctx = past + 1``, one call per new token.

Greedy (``temperature == 0``) reads back one int32 per call (the last row's
index); sampling reads the last row's logits and samples on the host with
``temperature``, ``top_k``, ``top_p`` and a seed: the specified sampler of
:mod:`.sampling` (doc/serve.md), so a seed gives the same tokens as the
generated C++ driver and the C++ model server. Without a seed one is drawn
and kept in :attr:`Generator.seed`, so the run can be repeated.

Guarantees: tokens are yielded as soon as each is produced; generation
stops at ``eos_id`` (one id or several), after ``max_new_tokens``, or when the cache is full
(``stop_reason`` says which, ``stop_message`` in words); a prompt longer
than the context raises :class:`ContextOverflowError` before anything runs.
:func:`performance` turns the device's cycle counts of each call into
simulated prefill time, decode tokens/s and fractions of the roofline.
"""
from __future__ import annotations

import math
import secrets
from typing import Iterator

import numpy as np

from .runtime import RunError, Runtime
from .sampling import SplitMix64, sample

#: The state dim of a batched-decode artifact's ``logits`` / ``greedy`` entries: the sequence's KV-cache slot
#: (dlavm.passes.kv_cache.SLOT_DIM; the runtime does not import the compiler).
SLOT_DIM = "slot"


class ContextOverflowError(RunError, ValueError):
    """Prompt (plus generated tokens) does not fit the model's maximum context."""


class GenerateArgumentError(RunError, ValueError):
    """An argument of :meth:`Generator.generate` is outside its range; names the argument, value and rule."""


def _check_arg(name: str, value, kind: type, lo, hi, rule: str) -> None:
    """Refuse ``value`` unless it is a ``kind`` (an int for int; an int or float for float, finite; never a
    bool) in ``[lo, hi]`` (``None``: unbounded)."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer) if kind is int
                                                               else (int, float, np.integer, np.floating))
    ok = ok and (kind is int or math.isfinite(value)) and lo <= value and (hi is None or value <= hi)
    if not ok:
        raise GenerateArgumentError(f"{name}={value!r}: must be {rule}")


class Generator:
    """Generation loop over a :class:`Runtime` of an LLM artifact (module docstring)."""

    def __init__(self, runtime: Runtime):
        llm = runtime.manifest.llm
        if llm is None:
            raise RunError("this artifact has no generation entries (compile it with dlavm.llm.compile_llm "
                           "or `dlavm compile --llm`)")
        self.rt, self.llm = runtime, llm
        self.max_ctx = llm.max_ctx
        self.past = 0
        self.stop_reason: str | None = None
        self.stop_message = ""
        #: per call: the last row's logits (float32 [vocab]) when ``keep_logits`` or sampling
        self.logits: list = []
        #: per call: {"tokens", "cycles", "hbm_bytes", "macs"} measured on the device (prefill first)
        self.steps: list = []
        #: the seed of the last :meth:`generate` (the one given, or the one drawn when none was)
        self.seed: int | None = None
        #: the KV-cache slot of an artifact compiled with batched decode (doc/llm.md); 0 by default
        self.slot = 0

    def step(self, ids, logits: bool = False) -> np.ndarray:
        """Run ``ids`` (the next tokens) after the ``past`` cached ones; the last row's argmax
        (int) or logits (float32 [vocab]). Advances ``past``."""
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        ctx = self.past + ids.shape[1]
        if ctx > self.max_ctx:
            raise ContextOverflowError(f"{self.past} cached + {ids.shape[1]} new tokens = {ctx} exceed the "
                                       f"model's maximum context of {self.max_ctx} tokens")
        entry = self.llm.entries["logits" if logits else "greedy"]
        dims = {self.llm.ctx_dim: ctx}
        if SLOT_DIM in self.rt.manifest.entries[entry].state_dims:   # an artifact with batched decode
            dims[SLOT_DIM] = self.slot
        (out,) = self.rt.run(entry, ids, dims=dims)
        self.steps.append({"tokens": int(ids.shape[1]), "cycles": self.rt.last_cycles,
                           "hbm_bytes": self.rt.last_hbm_bytes, "macs": getattr(self.rt, "last_macs", 0)})
        self.past = ctx
        return np.asarray(out[0, -1], dtype=np.float32) if logits else int(out[0, -1])

    def generate(self, prompt_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, eos_id=None,
                 keep_logits: bool = False) -> Iterator[int]:
        """Yield up to ``max_new_tokens`` new token ids after ``prompt_ids`` (module docstring); ``eos_id``:
        a token id or a list of them (generation stops at any); ``keep_logits``: run the ``logits`` entry
        and keep each step's last row in :attr:`logits` (greedy then takes the argmax on the host)."""
        prompt = [int(t) for t in np.asarray(prompt_ids).reshape(-1)]
        if not prompt:
            raise GenerateArgumentError("the prompt is empty: give at least one token")
        vocab = self.llm.vocab
        outside = [t for t in prompt if not 0 <= t < vocab]
        if outside:
            raise GenerateArgumentError(f"prompt token ids {outside[:5]} are outside the model's vocabulary "
                                        f"[0, {vocab})")
        if len(prompt) > self.max_ctx:
            raise ContextOverflowError(f"the prompt has {len(prompt)} tokens but the model's maximum context "
                                       f"is {self.max_ctx}")
        _check_arg("max_new_tokens", max_new_tokens, int, 1, None, "an integer >= 1")
        _check_arg("temperature", temperature, float, 0.0, None, "a finite number >= 0 (0: greedy)")
        _check_arg("top_k", top_k, int, 0, vocab, f"an integer in [0, {vocab}] (0: all tokens)")
        _check_arg("top_p", top_p, float, 0.0, 1.0, "a number in (0, 1]")
        if top_p == 0:
            raise GenerateArgumentError(f"top_p={top_p!r}: must be a number in (0, 1]")
        if seed is not None:
            _check_arg("seed", seed, int, 0, 2**64 - 1, "an integer >= 0 and < 2**64")
        eos = () if eos_id is None else tuple(eos_id) if isinstance(eos_id, (list, tuple)) else (eos_id,)
        for e in eos:
            _check_arg("eos_id", e, int, 0, vocab - 1, f"a token id in [0, {vocab})")
        # A drawn seed is below 2**63, the serving protocol's range (doc/serve.md), so it can be replayed there.
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        return self._loop(prompt, int(max_new_tokens), float(temperature), int(top_k), float(top_p), self.seed,
                          frozenset(int(e) for e in eos), keep_logits)

    def _loop(self, prompt, max_new, temperature, top_k, top_p, seed: int, eos_id: frozenset, keep_logits):
        rng = SplitMix64(seed)
        self.past, self.logits, self.steps, self.stop_reason, self.stop_message = 0, [], [], None, ""
        sampling = temperature > 0
        ids = prompt
        produced = 0
        while True:
            if produced >= max_new:
                self._stop("max_new_tokens", f"generated {produced} tokens (max_new_tokens)")
                return
            if self.past + len(ids) > self.max_ctx:
                self._stop("context", f"stopped at the context bound: the KV cache holds its maximum of "
                                      f"{self.max_ctx} tokens ({len(prompt)} prompt + {produced - 1} generated; "
                                      f"{produced} new tokens in all)")
                return
            if sampling or keep_logits:
                row = self.step(ids, logits=True)
                self.logits.append(row)
                tok = sample(row, temperature, top_k, top_p, rng) if sampling else int(np.argmax(row))
            else:
                tok = self.step(ids)
            produced += 1
            yield tok
            if tok in eos_id:
                self._stop("eos", f"stopped at the end-of-sequence token {tok} after {produced} tokens")
                return
            ids = [tok]

    def _stop(self, reason: str, message: str) -> None:
        self.stop_reason, self.stop_message = reason, message

    def performance(self) -> dict | None:
        """Simulated figures of the last :meth:`generate` (:func:`performance` of ``steps``)."""
        from .loader import artifact_target
        return performance(self.steps, artifact_target(self.rt.manifest))


def performance(steps: list, target) -> dict | None:
    """What the device's cycle counts say about a generation (``steps`` as :attr:`Generator.steps`: the
    prefill call first, then one decode call per token), at ``target``'s clock; None when the device
    reported no cycles (a device without counters).

    ``prefill_ms``: the first call; ``decode_tokens_per_s``: decode calls per second of their summed
    time (None without a decode call); ``*_roofline``: the fewest cycles the same work could take through
    the HBM ports (``Figures.roofline_cycles`` of its MACs and HBM bytes, the port peak) over the cycles it
    took, prefill and decode each summed over their calls; ``*_device_roofline``: the same against the
    device peak (the board's HBM bandwidth, ``Figures.device_roofline_cycles``). ``port_peak_gb_s`` and
    ``device_peak_gb_s`` name the two peaks."""
    if not steps or not all(s["cycles"] for s in steps):
        return None
    fig = target.figures

    def part(calls):
        cycles = sum(s["cycles"] for s in calls)
        macs, hbm = sum(s.get("macs", 0) for s in calls), sum(s["hbm_bytes"] for s in calls)
        return cycles, fig.roofline_cycles(macs, hbm) / cycles, fig.device_roofline_cycles(macs, hbm) / cycles

    pre_cycles, pre_roof, pre_dev = part(steps[:1])
    out = {"clock_mhz": target.clock_mhz, "prefill_tokens": steps[0]["tokens"],
           "prefill_ms": fig.cycles_to_us(pre_cycles) / 1e3, "prefill_roofline": pre_roof,
           "prefill_device_roofline": pre_dev,
           "decode_tokens": len(steps) - 1, "decode_tokens_per_s": None, "decode_roofline": None,
           "decode_device_roofline": None,
           "port_peak_gb_s": fig.hbm_gbytes_per_s, "device_peak_gb_s": fig.device_hbm_gbytes_per_s}
    if len(steps) > 1:
        dec_cycles, dec_roof, dec_dev = part(steps[1:])
        out["decode_tokens_per_s"] = (len(steps) - 1) / (fig.cycles_to_us(dec_cycles) / 1e6)
        out["decode_roofline"] = dec_roof
        out["decode_device_roofline"] = dec_dev
    return out


def format_performance(p: dict | None) -> str:
    """One line of :func:`performance`'s figures."""
    if p is None:
        return "simulated: the device reported no cycle counts"
    line = (f"simulated at {p['clock_mhz']:g} MHz: prefill {p['prefill_tokens']} tokens {p['prefill_ms']:.3f} ms "
            f"({100 * p['prefill_roofline']:.1f}% of port peak, {100 * p['prefill_device_roofline']:.1f}% of "
            f"device peak)")
    if p["decode_tokens_per_s"] is not None:
        line += (f", decode {p['decode_tokens_per_s']:,.1f} tokens/s ({100 * p['decode_roofline']:.1f}% of port "
                 f"peak, {100 * p['decode_device_roofline']:.1f}% of device peak, {p['decode_tokens']} tokens)")
    line += f"; peaks: port {p['port_peak_gb_s']:.1f} GB/s, device {p['device_peak_gb_s']:.1f} GB/s"
    return line


__all__ = ["Generator", "ContextOverflowError", "GenerateArgumentError", "sample", "SplitMix64", "performance",
           "format_performance"]
