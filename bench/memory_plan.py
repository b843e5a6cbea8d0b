#!/usr/bin/env python
"""Device memory: our memory plan vs ExecuTorch's greedy planner, same program, same bound.

For each model, one ``torch.export`` program with its dynamic dim bounded by
``--max-seq`` is planned twice, and two comparisons are printed:

**Activations only** (the arena of intermediates):

* ours: imported to graph IR (ATen level, the import pipeline), then
  ``dlavm.passes.memory_plan.plan_function`` on the vcu128 target: the
  ``activations`` pool (inputs, outputs and every intermediate, at upper-bound
  sizes, 32-byte aligned);
* ExecuTorch: ``to_edge(ep).to_executorch`` with ``MemoryPlanningPass`` (its
  default ``greedy`` algorithm, 32-byte alignment, inputs and outputs
  planned) and ``ConstraintBasedSymShapeEvalPass`` so dynamic dims take their
  upper bound; the arena is the sum of the execution plan's
  ``non_const_buffer_sizes``.

**Everything the device allocates**: the same imported module compiled
(``dlavm.compile``, vcu128, ``--weights``) and every pool of the artifact's
manifest ``memory`` section read back: ``weights``, ``kv`` (the attention
scratch, ``scratch.attn.*``, and a KV cache when there is one),
``activations.<entry>`` (entries share one arena base) and ``streams``; the
bytes are the union of the pools' ``[base, base + used)`` ranges. Against
ExecuTorch's non-constant arena goes everything but the ``weights`` pool;
against the arena plus ExecuTorch's constants (the exported program's
parameters, buffers and constants, fp32 as exported) goes the device total,
weights at the compiled format: that ratio mostly says int4 vs fp32.

Also reported: "no reuse" (sum of our buffer sizes) and "live peak" (the
largest total size of buffers live at one step: no planner can go below it
for our lifetimes), and "ET-greedy on ours": ExecuTorch's own greedy heuristic
run on exactly our buffers and lifetimes, which separates the heuristic from
the difference in graphs (our IR keeps ``attention`` as one op; ExecuTorch's
edge dialect decomposes it into matmul/softmax with ``[heads, L, L]``
intermediates, while the device runs it through scratch buffers of the same
order). Also timed: planning a residual chain of ``--chain-layers``
linear layers (~4 IR nodes per layer; 2,500 layers is the size of a 32-layer
LLM's graph) against a budget of ``CHAIN_BUDGET_S``. Prints the tables and
writes bench/results/memory_plan.json.
The ExecuTorch columns are skipped, with the reason, when ``executorch`` is not
installed or fails on a model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

MODELS = ("tiny-llama", "tiny-gpt2", "mlp")
#: planning a 10,000-node graph must stay interactive
CHAIN_BUDGET_S = 3.0


def live_peak(buffers) -> int:
    """Largest sum of sizes of buffers live at a common step (a lower bound for any arena)."""
    events = []
    for b in buffers:
        events.append((b.start, 1, b.size))
        events.append((b.end + 1, 0, b.size))
    events.sort()
    cur = peak = 0
    for _, kind, size in events:
        cur += size if kind else -size
        peak = max(peak, cur)
    return peak


def plan_ours(ep, spec, target):
    from dlavm.frontend.torch import from_exported_program
    from dlavm.ir import PassContext, PassManager
    from dlavm.passes import IMPORT_PIPELINE
    from dlavm.passes.memory_arena import align_up
    from dlavm.passes.memory_plan import plan_function

    mod = from_exported_program(ep, spec.dynamic_shapes, keep_weights=False)
    mod = PassManager(IMPORT_PIPELINE).run(mod, PassContext())
    fn = mod["forward"]
    t0 = time.perf_counter()
    plan = plan_function(fn, target)
    seconds = time.perf_counter() - t0
    acts = [b for k, b in plan.buffers.items() if plan.pool_of[k] == "activations" and k not in plan.aliases]
    align = target.mem_align_bytes
    return mod, {"arena": plan.pool_bytes("activations"), "plan_s": seconds, "buffers": len(acts), "acts": acts,
            "views": len(plan.aliases), "no_reuse": sum(align_up(b.size, align) for b in acts),
            "live_peak": live_peak([type(b)(b.name, align_up(b.size, align), b.start, b.end) for b in acts]),
            "weights": plan.pool_bytes("weights")}


def covered_bytes(pools) -> int:
    """Bytes of the union of the pools' ``[base, base + used)`` ranges (regions have disjoint
    addresses; pools that share a base, as the entries' activation arenas do, count once)."""
    spans = sorted((p.base, p.base + p.used) for p in pools if p.used)
    total, end = 0, -1
    for lo, hi in spans:
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def device_memory(mod, target, weights: str) -> dict:
    """Every pool of the manifest ``memory`` section of ``mod`` compiled for ``target``: per pool its
    region and bytes, and the bytes the device allocates in all (``total``) and but the weights."""
    from dlavm import compile as dlavm_compile

    memory = dlavm_compile(mod, target=target.name, weights=weights).manifest.memory
    pools = {name: {"region": p.region, "bytes": p.used, "buffers": len(p.buffers),
                    "attention_scratch": sum(b.size for n, b in p.buffers.items() if n.startswith("scratch.attn."))}
             for name, p in memory.items()}

    def covered(keep):
        return covered_bytes(p for n, p in memory.items() if keep(n))
    return {"weights_format": weights, "pools": pools, "total": covered(lambda n: True),
            "non_weight": covered(lambda n: n != "weights"), "weights": covered(lambda n: n == "weights"),
            "kv": covered(lambda n: n == "kv"), "activations": covered(lambda n: n.startswith("activations.")),
            "streams": covered(lambda n: n == "streams")}


def exported_constant_bytes(ep) -> int:
    """Bytes of the exported program's parameters, buffers and constants (what ExecuTorch stores as
    constants, at their exported dtype)."""
    tensors = list(ep.state_dict.values()) + [c for c in ep.constants.values() if hasattr(c, "element_size")]
    return sum(t.numel() * t.element_size() for t in tensors)


def plan_7b(target, max_seq: int):
    """Planning time on Llama-2-7B shapes (ours only), weights at their int4-packed sizes."""
    from dlavm import sym
    from dlavm.models import import_model
    from dlavm.ir import Constant, post_order
    from dlavm.passes.memory_plan import plan_function
    from dlavm.target.layout import weight_bytes

    mod = import_model("llama2-7b-shape", max_seq=max_seq, keep_weights=False).module
    fn = mod["forward"]
    nodes = post_order(fn.body)
    packed = {}
    for n in nodes:
        if isinstance(n, Constant):
            shape = [int(d) for d in n.type.shape]
            packed[n.name] = (sum(weight_bytes("int4", *shape, target.int4_group)) if len(shape) == 2
                              else sym.upper_bound(n.type.nbytes()) // 2)  # fp16 norms, tables
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        plan = plan_function(fn, target, weights=packed)
        best = min(best, time.perf_counter() - t0)
    try:
        device = device_memory(mod, target, "int4")
    except Exception as e:  # the compiler refuses (a pool past its region): report it, keep the plan figures
        device = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    return {"max_seq": max_seq, "nodes": len(nodes), "plan_s": best,
            "activations": plan.pool_bytes("activations"), "weights_int4": plan.pool_bytes("weights"),
            "device": device}


def plan_chain(target, layers: int):
    """Planning time (best of 3) of ``h = h + relu(linear(h, W_i))`` repeated ``layers`` times."""
    from dlavm import sym
    from dlavm.ir import Constant, Function, TensorType, Var, call, post_order
    from dlavm.passes.memory_plan import plan_function

    x = Var("x", TensorType((sym.Var("seq", 1, 64), 64), "float32"))
    h = x
    for i in range(layers):
        w = Constant(f"layer{i}.weight", TensorType((64, 64), "float32"))
        h = call("add", h, call("relu", call("linear", h, w)))
    fn = Function("f", [x], h)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        plan = plan_function(fn, target)
        best = min(best, time.perf_counter() - t0)
    return {"layers": layers, "nodes": len(post_order(fn.body)), "plan_s": best, "budget_s": CHAIN_BUDGET_S,
            "within_budget": best <= CHAIN_BUDGET_S, "activations": plan.pool_bytes("activations")}


def executorch_greedy_on(buffers, alignment: int) -> int:
    """ExecuTorch's greedy heuristic (its own ``pick_shared_obj``) run on *our* buffers and lifetimes.

    Isolates the heuristic from the graph: same intervals, same sizes, same
    alignment; the arena is the sum of its shared objects, as in its ``greedy``.
    """
    from types import SimpleNamespace

    from executorch.exir.memory_planning import pick_shared_obj

    from dlavm.passes.memory_arena import align_up

    specs = [SimpleNamespace(lifetime=[b.start, b.end], allocated_memory=align_up(b.size, alignment))
             for b in buffers if b.size]
    specs.sort(key=lambda x: -x.allocated_memory)  # its order: largest first
    objects: list = []
    for spec in specs:
        pick_shared_obj(objects, spec)
    return sum(o.size for o in objects)


def plan_executorch(ep, alignment: int):
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    edge = to_edge(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    t0 = time.perf_counter()
    prog = edge.to_executorch(ExecutorchBackendConfig(
        memory_planning_pass=MemoryPlanningPass(alignment=alignment),  # default algorithm: greedy
        sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass()))
    seconds = time.perf_counter() - t0
    sizes = list(prog.executorch_program.execution_plan[0].non_const_buffer_sizes)
    return {"arena": int(sum(sizes)), "buffer_sizes": sizes, "to_executorch_s": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-seq", type=int, default=128, help="bound of the dynamic sequence dim")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--chain-layers", type=int, default=2500, help="layers of the timed residual chain")
    ap.add_argument("--weights", default="int4", help="weight format of the compiled artifact (the weights pool)")
    ap.add_argument("--with-7b", action="store_true",
                    help="also time our planner on Llama-2-7B shapes (seq <= 4096, int4 weights)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.filterwarnings("ignore")

    import torch

    from dlavm.models import load_model
    from dlavm.target import get_target

    target = get_target("vcu128")
    try:
        import executorch  # noqa: F401
        et_missing = None
        et_version = _version("executorch")
    except ImportError as e:
        et_missing, et_version = f"executorch not installed ({e})", None

    rows, results = [], {}
    for name in args.models:
        print(f"[{name}] export + plan (max_seq={args.max_seq}) ...", file=sys.stderr, flush=True)
        spec = load_model(name, max_seq=args.max_seq)
        export = lambda: torch.export.export(spec.module, spec.example_inputs,  # noqa: E731
                                             dynamic_shapes=spec.dynamic_shapes, strict=False)
        ep = export()
        mod, ours = plan_ours(ep, spec, target)
        device = device_memory(mod, target, args.weights)
        et = {"skipped": et_missing} if et_missing else None
        if et is None:
            try:
                et = plan_executorch(export(), target.mem_align_bytes)
                et["constants"] = exported_constant_bytes(ep)
            except Exception as e:  # a model ExecuTorch cannot lower: report why, keep our column
                et = {"skipped": f"executorch failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        acts = ours.pop("acts")
        if not et_missing:
            ours["executorch_greedy_on_our_lifetimes"] = executorch_greedy_on(acts, target.mem_align_bytes)
        results[name] = {"ours": ours, "device": device, "executorch": et}
        rows.append((name, ours, device, et))

    print(f"activations only: arena at max_seq={args.max_seq}, target vcu128 (32-byte alignment), "
          f"torch {torch.__version__}, executorch {et_version or '-'}")
    hdr = f"{'model':<12}{'ours B':>11}{'ExecuTorch B':>14}{'ours/ET':>9}{'no reuse B':>12}{'live peak B':>13}" \
          f"{'ours/peak':>11}{'ET-greedy on ours':>19}{'plan ms':>9}{'buffers':>9}{'views':>7}"
    print(hdr)
    for name, o, _, e in rows:
        ratio = o["arena"] / e["arena"] if "arena" in e and e["arena"] else None
        results[name]["ratio_ours_over_executorch"] = ratio
        print(f"{name:<12}{o['arena']:>11}{e.get('arena', '-'):>14}{(f'{ratio:.3f}' if ratio else '-'):>9}"
              f"{o['no_reuse']:>12}{o['live_peak']:>13}{o['arena'] / max(o['live_peak'], 1):>11.3f}"
              f"{o.get('executorch_greedy_on_our_lifetimes', '-'):>19}"
              f"{o['plan_s'] * 1e3:>9.2f}{o['buffers']:>9}{o['views']:>7}")
    print(f"everything the device allocates: every pool of the compiled artifact's manifest (vcu128, "
          f"{args.weights} weights) vs ExecuTorch's arena (+ its fp32 constants)")
    print(f"{'model':<12}{'kv+scratch B':>13}{'activations B':>15}{'streams B':>11}{'all but wts B':>15}"
          f"{'ExecuTorch B':>14}{'ratio':>7}{'weights B':>11}{'device total B':>16}{'ET + consts B':>15}{'ratio':>7}")
    for name, _, d, e in rows:
        r1 = d["non_weight"] / e["arena"] if e.get("arena") else None
        et_all = e["arena"] + e["constants"] if "arena" in e else None
        r2 = d["total"] / et_all if et_all else None
        results[name]["ratio_device_non_weight_over_executorch"] = r1
        results[name]["ratio_device_total_over_executorch_with_constants"] = r2
        print(f"{name:<12}{d['kv']:>13}{d['activations']:>15}{d['streams']:>11}"
              f"{d['non_weight']:>15}{e.get('arena', '-'):>14}{(f'{r1:.3f}' if r1 else '-'):>7}"
              f"{d['weights']:>11}{d['total']:>16}{et_all if et_all else '-':>15}"
              f"{(f'{r2:.3f}' if r2 else '-'):>7}")
    for name, _, _, e in rows:
        if "skipped" in e:
            print(f"{name}: ExecuTorch column missing: {e['skipped']}")
    chain = plan_chain(target, args.chain_layers)
    print(f"residual chain of {chain['layers']} layers: {chain['nodes']} IR nodes planned in "
          f"{chain['plan_s'] * 1e3:.1f} ms (best of 3; budget {CHAIN_BUDGET_S * 1e3:.0f} ms: "
          f"{'within' if chain['within_budget'] else 'OVER'}), activations {chain['activations']} B")
    big = None
    if args.with_7b:
        print("[llama2-7b-shape] import + plan ...", file=sys.stderr, flush=True)
        big = plan_7b(target, 4096)
        print(f"llama2-7b-shape (seq <= 4096): {big['nodes']} IR nodes planned in {big['plan_s'] * 1e3:.1f} ms "
              f"(best of 3, checker included); activations {big['activations'] / 2**20:.1f} MiB, "
              f"int4 weights {big['weights_int4'] / 2**30:.2f} GiB")
        d = big["device"]
        if "error" in d:
            print(f"  compiled (int4, vcu128): refused: {d['error']}")
        else:
            print(f"  compiled (int4, vcu128), every pool of the manifest: kv+scratch {d['kv'] / 2**20:.1f} MiB, "
                  f"activations {d['activations'] / 2**20:.1f} MiB, streams {d['streams'] / 2**20:.2f} MiB, "
                  f"weights {d['weights'] / 2**30:.2f} GiB; all but weights {d['non_weight'] / 2**20:.1f} MiB, "
                  f"device total {d['total'] / 2**30:.2f} GiB")
    out = {"max_seq": args.max_seq, "target": target.name, "alignment": target.mem_align_bytes,
           "torch": torch.__version__, "executorch": et_version, "machine": platform.machine(),
           "models": results, "chain": chain, "llama2_7b": big}
    path = os.path.join(os.path.dirname(__file__), "results", "memory_plan.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {os.path.relpath(path)}")
    return 0


def _version(pkg: str):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
