"""Simulator speed on the compiled artifact: simulated cycles and MACs per wall second, functional
and timing-only, against the same decode step in torch eager on this CPU.

Everything the simulator runs here is what ``dlavm.llm.compile_llm`` produced: its instruction
streams (patched by the runtime for the dims), its memory plan (weights and KV cache in HBM,
activations in DDR), its host steps (embedding lookup, transfers). Target ``vcu128``, int4 group-128
weights, Llama-2-7B configuration (hidden 4096, 32 heads of 128, MLP 11008, vocab 32000), KV cache of
``--max-ctx`` positions, one decode step (one new token) at KV length ``--ctx`` (``ctx - 1`` cached):

* functional: the 7B configuration cut to ``--layers`` decoder layers (default 1; the final norm and
  the LM head stay), random weights (seed 0) fake-quantised to int4 before compiling, so that the
  device and torch multiply by the same numbers. The ``ctx - 1`` cached K/V rows (random fp16) are
  written by the host straight into the artifact's ``kv.layer<i>.k/v`` buffers (doc/llm.md layout)
  instead of running a functional prefill, which takes minutes. Then the ``logits`` entry runs one
  decode step with real numerics, and torch eager runs the same step on the same model (HF
  ``LlamaForCausalLM``, fp32, the weights and host embedding table the device uses, a
  ``DynamicCache`` holding the same K/V). The logits are compared (tolerance below). The same
  artifact also runs timing-only, for the cycles/s of the two modes on the same work.
* timing-only, whole step: the ``llama2-7b-shape`` recipe (32 layers, meta device: no weights)
  compiled the same way; after an untimed prefill of ``ctx - 1`` tokens, the ``greedy`` entry (LM
  head argmax on the device) runs one decode step.

Wall times are the best of ``--repeats`` runs each, after one untimed warm-up run (torch's too); the
functional / torch eager ratio is from this run. The functional warm-up also lays every integer
weight out for the MVM's numerics (the simulator keeps that until the weight's bytes are written):
its wall is printed apart. Usage:
``python bench/sim_speed.py [--ctx 512] [--max-ctx 512] [--layers 1] [--repeats 3]``.
Prints a table and writes bench/results/sim_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: max |device logits - torch logits| / max |torch logits| allowed (doc/passes.md: about 10 fp16 ulps
#: at the output's scale, the tolerance the device pipeline's tests use against torch)
REL_TOL = 5e-3


def cut_llama(layers: int, max_ctx: int, seed: int = 0):
    """The Llama-2-7B configuration with ``layers`` decoder layers and random weights, every linear
    weight fake-quantised to int4 (group of the vcu128 target) so that quantising it again on the
    device gives the same values."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from dlavm.passes.quantize import fake_quant
    from dlavm.target import get_target

    group = get_target("vcu128").int4_group
    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=layers, max_position_embeddings=max_ctx)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.from_numpy(fake_quant(m.weight.numpy(), "int4", group)))
    return model


def write_kv_cache(rt, cfg, past: int, rng) -> list:
    """Random fp16 K and V for positions ``[0, past)`` of every layer, written into the artifact's KV
    buffers (``[HKV, max_ctx, D]`` fp16, doc/llm.md); returns ``[(k, v)]`` per layer, ``[HKV, past, D]``."""
    hkv, d = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    kv_pool = rt.manifest.memory["kv"].buffers
    cap = rt.manifest.llm.max_ctx
    out = []
    for i in range(cfg.num_hidden_layers):
        pair = []
        for which in ("k", "v"):
            x = rng.standard_normal((hkv, past, d)).astype(np.float16)
            base = kv_pool[f"kv.layer{i}.{which}"].addr
            for h in range(hkv):
                rt.hal.write_mem(base + h * cap * d * 2, x[h].tobytes())
            pair.append(x)
        out.append(tuple(pair))
    return out


def torch_decode(model, kv: list, token: int, repeats: int):
    """One decode step of ``model`` (torch eager, fp32) with a cache holding ``kv``; returns
    ``(best wall s, float32 logits [vocab])``."""
    import inspect

    import torch
    from transformers import DynamicCache

    # transformers renamed the KV-cache argument from ``past_key_values`` to ``cache``
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    tensors = [(torch.from_numpy(k.astype(np.float32))[None], torch.from_numpy(v.astype(np.float32))[None])
               for k, v in kv]
    ids = torch.tensor([[token]])
    best, logits = float("inf"), None
    with torch.no_grad():
        for _ in range(1 + repeats):
            cache = DynamicCache()  # a fresh cache of the past tokens each time (the step appends to it)
            for i, (k, v) in enumerate(tensors):
                cache.update(k.clone(), v.clone(), i)
            w0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True, **{key: cache})
            wall = time.perf_counter() - w0
            if logits is None:  # the first call warms torch up: not timed
                logits = out.logits[0, -1].float().numpy()
            else:
                best = min(best, wall)
    return best, logits


def entry_instructions(manifest, entry: str) -> int:
    """Stream entries (instructions, guarded ones included) of ``entry``'s streams."""
    return sum(s.count for name, s in manifest.streams.items() if name.split(".")[0] == entry)


def timed_run(rt, entry: str, ids, ctx: int, repeats: int):
    """Best wall seconds of ``repeats`` runs of ``entry`` after an untimed warm-up run; the device
    figures of the last run, with the warm-up's wall (``first_wall_s``)."""
    walls, out = [], None
    for _ in range(1 + repeats):
        w0 = time.perf_counter()
        out = rt.run(entry, ids, dims={"ctx": ctx})
        walls.append(time.perf_counter() - w0)
    return min(walls[1:]), {"cycles": rt.last_cycles, "macs": rt.last_macs, "hbm_bytes": rt.last_hbm_bytes,
                            "first_wall_s": walls[0]}, out


def functional_step(layers: int, ctx: int, max_ctx: int, repeats: int) -> dict:
    from dlavm.llm import compile_llm
    from dlavm.llm.bundle import embedding_tables

    import torch

    model = cut_llama(layers, max_ctx)
    t0 = time.perf_counter()
    cm = compile_llm(model, target="vcu128", weights="int4", max_seq=max_ctx)
    compile_s = time.perf_counter() - t0
    rt = cm.runtime(functional=True, trace=False)
    rng = np.random.default_rng(0)
    kv = write_kv_cache(rt, model.config, ctx - 1, rng)
    token = int(rng.integers(0, model.config.vocab_size))
    ids = np.array([[token]], dtype=np.int64)
    f_wall, f_dev, (logits,) = timed_run(rt, "logits", ids, ctx, repeats)
    # the same artifact, timing-only: the same streams without numerics
    t_rt = cm.runtime(functional=False)
    t_wall, t_dev, _ = timed_run(t_rt, "logits", ids, ctx, repeats)

    (table,) = embedding_tables(cm.manifest)  # torch looks up the table the host reads (stored int4)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.from_numpy(np.asarray(rt.host_consts[table], np.float32)))
    tt_wall, ref = torch_decode(model, kv, token, repeats)
    dev = np.asarray(logits, np.float32).reshape(-1)
    err = float(np.abs(dev - ref).max())
    scale = float(np.abs(ref).max())
    return {"layers": layers, "compile_s": compile_s, "instructions": entry_instructions(cm.manifest, "logits"),
            "functional": {"wall_s": f_wall, **f_dev}, "timing_only": {"wall_s": t_wall, **t_dev},
            "torch_eager_s": tt_wall, "functional_over_torch": f_wall / tt_wall,
            "max_abs_err": err, "torch_logits_max_abs": scale, "rel_err": err / scale, "rel_tol": REL_TOL,
            "argmax_device": int(dev.argmax()), "argmax_torch": int(ref.argmax()),
            "activation_region": cm.manifest.memory["activations.logits"].region}


def timing_step(ctx: int, max_ctx: int, repeats: int) -> dict:
    from dlavm.llm import compile_llm

    t0 = time.perf_counter()
    cm = compile_llm("llama2-7b-shape", target="vcu128", weights="int4", max_seq=max_ctx)
    compile_s = time.perf_counter() - t0
    rt = cm.runtime(functional=False)
    past = ctx - 1
    if past:  # timing-only: the cache's contents do not matter, the decode runs after a real prefill
        rt.run("greedy", np.zeros((1, past), np.int64), dims={"ctx": past})
    wall, dev, _ = timed_run(rt, "greedy", np.zeros((1, 1), np.int64), ctx, repeats)
    fig = cm.target.figures
    return {"layers": len(cm.manifest.llm.caches), "compile_s": compile_s, "wall_s": wall, **dev,
            "instructions": entry_instructions(cm.manifest, "greedy"),
            "step_us": fig.cycles_to_us(dev["cycles"]),
            "hbm_port_peak_gb_s": fig.hbm_bytes_per_cycle * fig.clock_hz / 1e9,
            "hbm_port_roofline_us": fig.cycles_to_us(dev["hbm_bytes"] / fig.hbm_bytes_per_cycle),
            "hbm_device_peak_gb_s": fig.device_hbm_gbytes_per_s,
            "hbm_device_roofline_us": fig.cycles_to_us(dev["hbm_bytes"] / fig.device_hbm_bytes_per_cycle)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctx", type=int, default=512, help="KV length after the decode step (ctx - 1 cached)")
    ap.add_argument("--max-ctx", type=int, default=512, help="KV cache capacity the artifacts are compiled for")
    ap.add_argument("--layers", type=int, default=1, help="decoder layers of the functional model")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts")
    ap.add_argument("--skip-timing-7b", action="store_true", help="skip the 32-layer timing-only step")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim_speed.json"))
    args = ap.parse_args()
    if not 2 <= args.ctx <= args.max_ctx:
        ap.error(f"--ctx must be in [2, --max-ctx={args.max_ctx}]")

    print(f"[functional] compile the 7B configuration cut to {args.layers} layer(s), run ...",
          file=sys.stderr, flush=True)
    fn = functional_step(args.layers, args.ctx, args.max_ctx, args.repeats)
    big = None
    if not args.skip_timing_7b:
        print("[timing-only] compile llama2-7b-shape (32 layers), run ...", file=sys.stderr, flush=True)
        big = timing_step(args.ctx, args.max_ctx, args.repeats)

    import torch
    rows = [(f"functional, {fn['layers']} layer + head", fn["functional"]),
            (f"timing-only, {fn['layers']} layer + head", fn["timing_only"])]
    if big:
        rows.append((f"timing-only, {big['layers']} layers + head", big))
    print(f"target vcu128, Llama-2-7B configuration, int4 g128, compiled by compile_llm (max_ctx "
          f"{args.max_ctx}, activations in {fn['activation_region'].upper()}); one decode step at ctx {args.ctx}; "
          f"wall: best of {args.repeats} after a warm-up run; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<34}{'sim cycles':>13}{'MACs':>16}{'wall s':>9}{'cycles/s':>12}{'MACs/s':>12}")
    for name, r in rows:
        print(f"{name:<34}{r['cycles']:>13,}{r['macs']:>16,}{r['wall_s']:>9.3f}{r['cycles'] / r['wall_s']:>12.3e}"
              f"{r['macs'] / r['wall_s']:>12.3e}")
    tt = fn["torch_eager_s"]
    macs = fn["functional"]["macs"]
    print(f"{'torch eager, same step (fp32 CPU)':<34}{'':>13}{macs:>16,}{tt:>9.3f}{'':>12}{macs / tt:>12.3e}")
    streams = f"stream entries per step: {fn['instructions']} ({fn['layers']} layer)"
    print(streams + (f", {big['instructions']} ({big['layers']} layers)" if big else ""))
    print(f"functional / torch eager wall ratio: {fn['functional_over_torch']:.1f}x "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads); the functional warm-up run "
          f"{fn['functional']['first_wall_s']:.3f} s (it lays the weights out for the MVM)")
    ok = fn["rel_err"] <= REL_TOL and fn["argmax_device"] == fn["argmax_torch"]
    print(f"functional vs torch logits: max |diff| {fn['max_abs_err']:.3g} = {fn['rel_err']:.2e} of max |logit| "
          f"{fn['torch_logits_max_abs']:.3g} (tolerance {REL_TOL:g}); argmax {fn['argmax_device']} vs "
          f"{fn['argmax_torch']}: {'ok' if ok else 'FAILED'}")
    if big:
        step = big["step_us"]
        print(f"simulated {big['layers']}-layer decode step: {step:,.0f} us = {1e6 / step:.1f} tok/s; HBM bytes at the port peak "
              f"({big['hbm_port_peak_gb_s']:.1f} GB/s) {big['hbm_port_roofline_us']:,.0f} us -> "
              f"{100 * big['hbm_port_roofline_us'] / step:.1f}% of port peak; at the device peak "
              f"({big['hbm_device_peak_gb_s']:.1f} GB/s) {big['hbm_device_roofline_us']:,.0f} us -> "
              f"{100 * big['hbm_device_roofline_us'] / step:.1f}% of device peak")
    result = {"target": "vcu128", "model": "llama-2-7b configuration, int4 g128", "ctx": args.ctx,
              "max_ctx": args.max_ctx, "repeats": args.repeats, "host": platform.processor() or platform.machine(),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
              "functional_cut": fn, "timing_only_7b": big, "numerics_ok": ok}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {Path(args.out).relative_to(ROOT) if Path(args.out).is_relative_to(ROOT) else args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
