#!/usr/bin/env python
"""Train the demo's small Llama-style model (recipe ``trained-tiny``) on the text that ships in data/.

The corpus is ``data/corpus.txt`` and ``data/workshop.txt`` (original prose, public domain:
data/README.md). A byte-level BPE tokenizer is trained on it with HF ``tokenizers`` (the demo
tokenizer's recipe, ``dlavm.tokenizer.build_demo_tokenizer_json``), then a ``LlamaForCausalLM``
(RMSNorm, RoPE, GQA, SwiGLU) learns to predict the next token of random windows of the text.
The result is a Hugging Face checkpoint folder (``config.json``, ``generation_config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json`` with the special tokens, and
``train_info.json`` with the losses) that ``hf:DIR`` loads.

Training is reproducible: fixed seeds, ``torch.use_deterministic_algorithms``, a fixed number of
threads; the same seed, corpus, config and library versions give bit-identical weights. The
checkpoint is cached under ``$DLAVM_CACHE_DIR/trained-tiny`` (else ``build/trained-tiny``,
git-ignored) in a folder named by a hash of this script, the corpus, the config, the seed and the
versions of torch, transformers and tokenizers, so any change trains again and an unchanged
setup trains once. The ``demo`` size (1.0M parameters, 300 steps) takes two to three minutes of
two CPU cores.

The checkpoint folder's path is the one line printed on stdout; everything else (progress,
loss) goes to stderr.

    python script/train_tiny.py              # train (or reuse) the demo model, print its folder
    python script/train_tiny.py --print-dir  # only print where it is or would be
    python script/train_tiny.py --size test --out DIR   # a seconds-long run into DIR
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_FILES = (REPO_ROOT / "data" / "corpus.txt", REPO_ROOT / "data" / "workshop.txt")

# Model and training sizes. "demo" is what `make demo` runs (about 1M parameters: small enough for
# minutes of CPU, large enough to learn the corpus); "test" is a seconds-long run for the test suite.
SIZES = {
    "demo": dict(vocab=1024, hidden=128, intermediate=352, layers=4, heads=4, kv_heads=2, max_positions=256,
                 block=128, batch=16, steps=300, lr=3e-3, warmup=30, weight_decay=0.01),
    "test": dict(vocab=320, hidden=64, intermediate=128, layers=1, heads=4, kv_heads=2, max_positions=64,
                 block=32, batch=4, steps=6, lr=3e-3, warmup=2, weight_decay=0.01),
}
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}  # ids 0, 1, 2 (dlavm.tokenizer)


def cache_root() -> Path:
    """Where trained checkpoints are cached: ``$DLAVM_CACHE_DIR/trained-tiny``, else ``build/trained-tiny``
    (dlavm.cache)."""
    sys.path.insert(0, str(REPO_ROOT))
    from dlavm.cache import cache_dir
    return cache_dir("trained-tiny")


def corpus_text() -> str:
    for f in CORPUS_FILES:
        if not f.is_file():
            raise FileNotFoundError(f"training text '{f}' does not exist")
    return "\n\n".join(f.read_text(encoding="utf-8") for f in CORPUS_FILES)


def checkpoint_key(size: str, seed: int, threads: int) -> str:
    """A hash of everything the weights depend on."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(corpus_text().encode("utf-8"))
    h.update(json.dumps({"size": SIZES[size], "seed": seed, "threads": threads}, sort_keys=True).encode())
    for pkg in ("torch", "transformers", "tokenizers"):
        h.update(f"{pkg}={metadata.version(pkg)}".encode())
    return h.hexdigest()[:16]


def default_dir(size: str = "demo", seed: int = 0, threads: int = 2) -> Path:
    return cache_root() / f"{size}-{checkpoint_key(size, seed, threads)}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """tqdm on a terminal; without one, a plain line every tenth of the run (no ``\\r``)."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n = total, desc, 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.t0 = time.perf_counter()

    def update(self, loss: float) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            self.bar.update(1)
        elif self.n == 1 or self.n == self.total or self.n % max(1, self.total // 10) == 0:
            log(f"{self.desc}: step {self.n}/{self.total}, loss {loss:.3f}, "
                f"{time.perf_counter() - self.t0:.0f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(out: Path, size: str = "demo", seed: int = 0, threads: int = 2, steps: int | None = None) -> dict:
    """Train the model of ``SIZES[size]`` and write the checkpoint folder ``out`` (replaced whole, by
    a rename, so a reader never sees half a folder). Returns what ``train_info.json`` records."""
    cfg = dict(SIZES[size])
    if steps is not None:
        cfg["steps"] = steps
    text = corpus_text()
    log(f"training trained-tiny ({size}): {cfg['layers']} layers, hidden {cfg['hidden']}, vocab {cfg['vocab']}, "
        f"{cfg['steps']} steps of {cfg['batch']}x{cfg['block']} tokens on {len(text) // 1024} KB of text "
        f"({', '.join(f.name for f in CORPUS_FILES)}), {threads} threads, seed {seed}")
    t_start = time.perf_counter()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    sys.path.insert(0, str(REPO_ROOT))
    from dlavm.tokenizer import SPECIAL_TOKENS, Tokenizer, build_demo_tokenizer_json

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        corpus_file = tmp / "corpus.txt"
        corpus_file.write_text(text, encoding="utf-8")
        (tmp / "tokenizer.json").write_text(build_demo_tokenizer_json(cfg["vocab"], corpus_file), encoding="utf-8")
        corpus_file.unlink()
        tok = Tokenizer.from_file(tmp / "tokenizer.json")
        assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
        ids = []
        for f in CORPUS_FILES:  # each text ends with EOS, so the model learns where a text stops
            ids += tok.encode(f.read_text(encoding="utf-8")) + [tok.eos_id]
        data = torch.tensor(ids, dtype=torch.long)
        log(f"  tokenizer: byte-level BPE, vocab {tok.vocab_size}; the text is {len(ids)} tokens")

        config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=cfg["hidden"],
                             intermediate_size=cfg["intermediate"], num_hidden_layers=cfg["layers"],
                             num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
                             max_position_embeddings=cfg["max_positions"], rms_norm_eps=1e-5,
                             bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95),
                                foreach=False)
        gen = torch.Generator().manual_seed(seed)
        block, n = cfg["block"], cfg["steps"]

        def lr_at(step):  # linear warm-up, then cosine decay to a tenth
            if step < cfg["warmup"]:
                return cfg["lr"] * (step + 1) / cfg["warmup"]
            t = (step - cfg["warmup"]) / max(1, n - cfg["warmup"])
            return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

        progress = Progress(n, "  training")
        losses = []
        for step in range(n):
            starts = torch.randint(0, len(data) - block + 1, (cfg["batch"],), generator=gen)
            batch = torch.stack([data[s:s + block] for s in starts.tolist()])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = model(input_ids=batch, labels=batch).loss  # HF shifts the labels by one
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            progress.update(losses[-1])
        progress.close()

        model.eval()
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # its "Writing model shards" bar would follow ours
        model.save_pretrained(tmp, safe_serialization=True)
        hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(tmp / "tokenizer.json"), **SPECIAL,
                                         model_max_length=cfg["max_positions"], clean_up_tokenization_spaces=False)
        hf_tok.save_pretrained(tmp)
        # tokenizer_config.json: prompts start without BOS, as the training windows do
        tc_path = tmp / "tokenizer_config.json"
        tc = json.loads(tc_path.read_text(encoding="utf-8"))
        tc.update(add_bos_token=False, add_eos_token=False)
        tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tail = losses[-max(1, n // 20):]
        info = {"size": size, "seed": seed, "threads": threads, "steps": n, "config": cfg,
                "first_loss": losses[0], "final_loss": sum(tail) / len(tail), "tokens": len(ids),
                "corpus": [f.name for f in CORPUS_FILES], "seconds": round(time.perf_counter() - t_start, 1),
                "versions": {p: metadata.version(p) for p in ("torch", "transformers", "tokenizers")}}
        (tmp / "train_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the cache private
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"  done in {info['seconds']:.0f}s: loss {info['first_loss']:.2f} -> {info['final_loss']:.3f} "
        f"(mean of the last {len(tail)} steps); checkpoint {out}")
    return info


def ensure_trained(size: str = "demo", seed: int = 0, threads: int = 2, force: bool = False) -> Path:
    """The cached checkpoint folder of ``size``, trained first if it is not there (or ``force``)."""
    out = default_dir(size, seed, threads)
    if force or not (out / "model.safetensors").is_file():
        train(out, size, seed, threads)
    else:
        log(f"trained-tiny ({size}): using the cached checkpoint {out}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (part of the cache key)")
    parser.add_argument("--steps", type=int, default=None, help="override the size's step count (needs --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the checkpoint here instead of the cache (always trains)")
    parser.add_argument("--force", action="store_true", help="train again even if the cache has it")
    parser.add_argument("--print-dir", action="store_true", help="print the cache folder and exit")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    if args.steps is not None and (args.steps < 1 or args.out is None):
        parser.error(f"--steps {args.steps}: must be at least 1, and given with --out (the cache holds the "
                     "sizes' own step counts)")
    try:
        if args.print_dir:
            out = default_dir(args.size, args.seed, args.threads)
        elif args.out is not None:
            out = args.out
            train(out, args.size, args.seed, args.threads, args.steps)
        else:
            out = ensure_trained(args.size, args.seed, args.threads, args.force)
    except (OSError, ValueError, ImportError) as e:  # a missing text, an unwritable cache, no torch
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
