#!/usr/bin/env python
"""Seven models as users bring them: import, check, compile, run on the simulator, compare with torch.

The models are the ones in ``examples/models/`` (a CNN with BatchNorm, ``nn.TransformerEncoderLayer``,
a nanoGPT with hand-written causal attention, a classifier ending in ``log_softmax``) and small
Hugging Face Llama, GPT-2 and BERT checkpoints written by ``examples/models/hf_tiny.py`` (random
weights, real architectures). For each model:

* ``check``: how many dim bindings the graph IR was compared with torch at, and the worst error;
* ``device MACs``: the fraction of the model's multiply-accumulates that run on the device (compile
  report, every dynamic size at its bound);
* ``err fq`` / ``err fp32``: the simulator's output at a middle size against torch with the same
  (fake-)quantised weights and against fp32 torch, as max |diff| / max |torch|;
* ``C++``: whether the generated C++ driver runs every host op of the model.

Prints a table and writes ``bench/results/own_models.json``.

    python bench/own_models.py [--weights int8] [--target vcu128] [--only cnn,bert]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"
FACTORIES = {"cnn": "cnn.py:build", "encoder": "encoder.py:build", "nanogpt": "nanogpt.py:build",
             "classifier": "classifier.py:build"}
HF = ("llama", "gpt2", "bert")


def measure(name: str, spec: str, target: str, weights: str) -> dict:
    import numpy as np
    import torch

    import dlavm
    from dlavm.backend.report import device_mac_fraction, op_rows
    from dlavm.compiler import _cpp_driver_problems
    from dlavm.models import import_model
    from dlavm.passes.quantize import fake_quantized_module
    from dlavm.reference import compare_with_torch, run_function

    t0 = time.perf_counter()
    res = import_model(spec)
    bindings = [{}] if not res.spec.dims else [
        {k: v} for k, (lo, hi) in res.spec.dims.items() for v in sorted({lo, (lo + hi) // 2 + 1, hi})]
    checks = [compare_with_torch(res.module, "forward", res.spec.module, res.spec.inputs_at(**b), b)
              for b in bindings]
    cm = dlavm.compile(res.module, target=target, weights=weights, name=name)
    dev, tot = device_mac_fraction(op_rows(cm.manifest, cm.build))[None]
    mid = {k: (lo + hi) // 2 + 1 for k, (lo, hi) in res.spec.dims.items()}
    inputs = res.spec.inputs_at(**mid)
    got = cm.run(*[x.numpy() for x in inputs])[0]
    with torch.no_grad():
        fq = run_function(fake_quantized_module(res.module, cm.device_module), "forward", inputs).numpy()
        f32 = res.spec.module(*inputs)
    f32 = f32 if isinstance(f32, torch.Tensor) else (f32[0] if isinstance(f32, (tuple, list)) else
                                                       f32.last_hidden_state if hasattr(f32, "last_hidden_state")
                                                       else f32.logits)
    f32 = f32.numpy()

    def rel(a, b):
        return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))

    problems = _cpp_driver_problems(cm.manifest)
    return {"model": name, "checks": len(checks), "check_ok": all(c.ok for c in checks),
            "check_max_abs": max(c.max_abs for c in checks), "device_macs": dev, "macs": tot,
            "device_mac_fraction": dev / tot if tot else None, "at": mid, "err_fq": rel(got, fq),
            "err_fp32": rel(got, f32), "host_ops": sorted({h.op for h in cm.manifest.host_ops}),
            "cpp_driver": problems is None, "cpp_problems": problems, "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="vcu128")
    ap.add_argument("--weights", default="int8", choices=["int4", "int8", "fp16"])
    ap.add_argument("--only", default=None, help="comma-separated model names")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(EXAMPLES))
    import hf_tiny

    names = list(FACTORIES) + list(HF)
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        hf_dirs = hf_tiny.write(Path(tmp), [n for n in names if n in HF])
        for i, name in enumerate(names, 1):
            spec = f"{EXAMPLES / FACTORIES[name]}" if name in FACTORIES else f"hf:{hf_dirs[name]}"
            print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, spec, args.target, args.weights))
    head = f"{'model':<11} {'checks':>6} {'IR max abs':>10} {'device MACs':>24} {'at':<10} " \
           f"{'err fq':>8} {'err fp32':>8} {'C++':>4}  host ops"
    print(f"target {args.target}, weights {args.weights}")
    print(head)
    for r in rows:
        frac = (f"{100 * r['device_mac_fraction']:.1f}% of {r['macs']:,}" if r["macs"] else "no MACs")
        at = ",".join(f"{k}={v}" for k, v in r["at"].items()) or "-"
        print(f"{r['model']:<11} {r['checks']:>6} {r['check_max_abs']:>10.1e} {frac:>24} {at:<10} "
              f"{r['err_fq']:>8.1e} {r['err_fp32']:>8.1e} {'yes' if r['cpp_driver'] else 'no':>4}  "
              f"{', '.join(r['host_ops']) or '-'}")
    out = ROOT / "bench" / "results" / "own_models.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": args.target, "weights": args.weights, "rows": rows}, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
