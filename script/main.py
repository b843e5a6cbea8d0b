#!/usr/bin/env python
"""DLAVM end to end: import a built-in model, check it against torch, compile it
for the accelerator and run it on the cycle-level simulator.

1. export with a dynamic sequence length and print the graph-IR summary;
2. run the IR on the reference executor at 1, a middle length and the bound:
   it must match torch eager;
3. compile once for the target (int8 weights by default) and run the same
   artifact on the simulator at those lengths: compare with torch using the
   same fake-quantised weights, report the error against fp32 torch and the
   simulated device time;
4. for a causal LM (input_ids -> logits): compile it for generation with a
   device KV cache (doc/llm.md), generate ``--generate`` tokens greedily on the
   simulator (streamed) and compare them token for token, and their logits,
   with HF greedy decoding using the same fake-quantised weights.

The default model, ``trained-tiny``, is a small Llama trained on the text in
data/ by script/train_tiny.py (on first use, a few minutes; then cached), so
its reply is readable text (doc/llm.md, "The demo").
"""
from __future__ import annotations

import argparse
import sys
import time


DEMO_PROMPT = "The compiler reads a model,"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported like every other failure: one ``error:`` line."""

    def error(self, message: str):
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def main(argv=None) -> int:
    """The demo; every failure is one ``error:`` line and a non-zero exit (doc/cli.md, "Contract")."""
    from dlavm.cli.errors import fail
    try:
        return demo(argv)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 -- the one place failures are reported
        fail(exc)


def demo(argv=None) -> int:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="trained-tiny", help="recipe name, hf:DIR or file.py:factory")
    parser.add_argument("--max-seq", type=int, default=None,
                        help="bound of the sequence dim (default: 128 for a recipe that takes one, else the model's "
                             "own bound)")
    parser.add_argument("--target", default="vcu128")
    parser.add_argument("--weights", default="int8", choices=["int4", "int8", "fp16"],
                        help="weight format on the device (int4: trained-tiny's 1M parameters lose their words)")
    parser.add_argument("--generate", type=int, default=32, metavar="N",
                        help="tokens to generate in the LLM section (0: skip it)")
    parser.add_argument("--prompt", default=DEMO_PROMPT, help="the prompt of the LLM section")
    args = parser.parse_args(argv)
    if args.generate < 0:
        parser.error(f"argument --generate: {args.generate} is negative; give N >= 0 (0: skip generation)")
    if not args.prompt:
        parser.error("argument --prompt: the prompt is empty; give some text")

    # refuse a bad bound or target before the minutes of work (and the torch import) start
    from dlavm.models import check_max_seq
    from dlavm.models.registry import recipe_takes_max_seq
    from dlavm.target import get_target
    if args.max_seq is not None:
        check_max_seq(args.max_seq)
    elif recipe_takes_max_seq(args.model) and not args.model.startswith("hf:"):
        args.max_seq = 128
    get_target(args.target)

    from dlavm.ir import summarize_module
    from dlavm.models import import_model

    print(f"== importing {args.model} (torch.export" + (f", dynamic seq <= {args.max_seq})" if args.max_seq else ")"),
          flush=True)
    t0 = time.perf_counter()
    res = import_model(args.model, max_seq=args.max_seq)
    args.max_seq = res.spec.dims.get("seq", (None, args.max_seq))[1]  # the bound the model has
    print("   dims: " + (", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in res.spec.dims.items())
                         or "none (checked once, at the example inputs)"))
    t = res.timings
    print(f"   export {t['export_s']:.2f}s, decompose {t['decompose_s']:.2f}s, "
          f"convert to graph IR {t['convert_s']:.3f}s (total {time.perf_counter() - t0:.2f}s)")
    from dlavm.reference import compare_with_torch
    print("== graph IR summary")
    print(summarize_module(res.module))
    print("== reference executor vs torch eager (fp32, rtol 1e-4, atol 1e-5)")
    ok, points = True, res.spec.check_points()
    for b in points:  # a comparison of no values raises NothingCompared: never a pass
        agreement = compare_with_torch(res.module, "forward", res.spec.module, res.spec.inputs_at(**b), b)
        print("  ", agreement)
        ok &= agreement.ok
    print(f"RESULT: graph IR {'matches' if ok else 'does NOT match'} torch at {len(points)} binding(s)")
    if not ok:
        return 1
    rc = compile_and_simulate(res, args)
    if rc == 0 and args.generate and "input_ids" in {p.name for p in res.module["forward"].params}:
        rc = generate_demo(res, args)
    return rc


def generate_demo(res, args) -> int:
    """Section 4 of the module docstring."""
    import numpy as np

    from dlavm.llm import compile_llm
    from dlavm.llm.reference import host_tables, quantized_torch_model, torch_greedy
    from dlavm.tokenizer import DecodeStream, Tokenizer, TokenizerError, train_demo_tokenizer

    print(f"== generation: KV-cached entries, context {args.max_seq}, {args.weights} weights", flush=True)
    t0 = time.perf_counter()
    cm = compile_llm(res.module, target=args.target, weights=args.weights, max_seq=args.max_seq, name=args.model)
    llm = cm.manifest.llm
    print(f"   compiled in {time.perf_counter() - t0:.1f}s: entries {cm.entries}, KV caches "
          f"{len(llm.caches)} layers x K/V")
    own = res.spec.extras.get("tokenizer")  # hf:DIR checkpoints (trained-tiny) bring theirs
    tok = Tokenizer.from_file(own) if own else train_demo_tokenizer(vocab_size=llm.vocab)
    trained = bool(res.spec.extras.get("checkpoint"))
    prompt_text = args.prompt
    prompt = tok.encode(prompt_text)
    if not prompt:
        raise TokenizerError(f"--prompt {prompt_text!r} encodes to no token: give some text")
    n = min(args.generate, args.max_seq - len(prompt) + 1)
    source = "the checkpoint's tokenizer.json" if own else "demo BPE tokenizer"
    print(f"   prompt: {prompt_text!r} -> {len(prompt)} tokens ({source}, vocab {tok.vocab_size})")
    print("   reply (simulator, streamed):", end=" ", flush=True)
    t0 = time.perf_counter()
    got = []
    stream = DecodeStream(tok)
    for t in cm.generate(prompt, n, eos_id=tok.eos_id, keep_logits=True):
        got.append(t)
        print(stream.step(t), end="", flush=True)
    print(stream.flush())
    secs = time.perf_counter() - t0
    gen = cm.generator
    print(f"   ({gen.stop_message}; {secs:.2f}s wall; "
          + (f"trained weights, stored as {args.weights} on the device)" if trained else
             f"random weights stored as {args.weights}, so the text is noise)"))
    fig = cm.target.figures
    prefill, decode = gen.steps[0], gen.steps[1:]
    print(f"   prefill {prefill['tokens']} tokens: {prefill['cycles']:,} cycles = "
          f"{fig.cycles_to_us(prefill['cycles']) / 1e3:.3f} ms simulated")
    if decode:
        cyc = sum(d["cycles"] for d in decode)
        hbm = sum(d["hbm_bytes"] for d in decode)
        per_tok_us = fig.cycles_to_us(cyc) / len(decode)
        roof = (hbm / fig.hbm_bytes_per_cycle) / cyc if cyc else 0.0
        print(f"   decode {len(decode)} tokens: {per_tok_us:.1f} us/token = {1e6 / per_tok_us:,.0f} tokens/s "
              f"simulated; {100 * roof:.1f}% of the HBM bandwidth roofline (a 2 MB model is dominated by "
              "fixed per-layer costs; bench/compile_time.py reports the 7B shape)")
    want, want_logits = torch_greedy(quantized_torch_model(res.spec.module, cm.device_module, res.module.params,
                                                           host_tables(cm)), prompt, len(got))
    agree = sum(a == b for a, b in zip(got, want))
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    # logits of the same context: every step up to the first divergence (included)
    same = len(got) if first is None else first + 1
    err = max((float(np.abs(d - t).max() / np.abs(t).max()) for d, t in zip(gen.logits[:same], want_logits)),
              default=0.0)
    print(f"   torch greedy, same quantised weights: {tok.decode(want)!r}")
    print(f"   logits error vs torch (max |diff| / max |torch|, {same} steps with the same context): {err:.2e}")
    margin = ""
    if first is not None:
        top2 = np.sort(want_logits[first])[-2:]
        margin = f" (first divergence at step {first}, where torch's top-2 margin is {top2[1] - top2[0]:.3g})"
    print(f"RESULT: {agree}/{len(got)} tokens equal torch greedy with the same {args.weights} weights" + margin)
    return 0 if first is None or args.weights == "int4" else 1


def compile_and_simulate(res, args) -> int:
    import dlavm
    from dlavm.passes.quantize import fake_quantized_module
    from dlavm.reference import DEVICE_TOLERANCE, compare_device_with_torch

    print(f"== compiling for {args.target} ({args.weights} weights)", flush=True)
    cm = dlavm.compile(res.module, target=args.target, weights=args.weights, name=args.model)
    t = cm.timings
    print("   " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items() if isinstance(v, float)))
    streams = cm.manifest.streams
    print(f"   {sum(s.count for s in streams.values())} instructions in {len(streams)} AUX stream(s); "
          f"host ops: {', '.join(h.op for h in cm.manifest.host_ops) or 'none'}")
    reference = fake_quantized_module(res.module, cm.device_module)
    target = cm.target
    print(f"== running on the cycle-level simulator ({target.name}, {target.clock_mhz:g} MHz); error is "
          f"max |diff| / max |torch|; tolerance {DEVICE_TOLERANCE:g} vs torch with the same quantised weights")
    ok, points = True, res.spec.check_points()
    for b in points:
        inputs = res.spec.inputs_at(**b)
        got = cm.run(*[x.numpy() for x in inputs])
        cycles = cm.runtime().last_cycles
        agreement = compare_device_with_torch(got, reference, res.spec.module, inputs, b)
        ok &= agreement.ok
        print(f"   {cycles:,} cycles = {target.figures.cycles_to_us(cycles):.1f} us; {agreement}")
    print(f"RESULT: simulator {'matches' if ok else 'does NOT match'} torch at {len(points)} binding(s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
