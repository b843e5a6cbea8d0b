"""``dlavm compile | run | disasm | profile | generate``: thin wrappers over dlavm.compiler and dlavm.backend.

``COMMANDS`` is registered on the main group by dlavm/cli/main.py.
"""
from __future__ import annotations

from pathlib import Path

import click


def _progress(stage, done, total, detail):
    """One status line on stderr, rewritten in place: pass i/n, weights packed, streams encoded."""
    count = f"{done}/{total}" if total else str(done)
    click.echo(f"\r\033[K[{stage} {count}] {detail}"[:120], err=True, nl=False)


@click.command("compile")
@click.argument("model")
@click.option("--target", "-t", default="vcu128", show_default=True, help="Target name or file.")
@click.option("--weights", type=click.Choice(["int4", "int8", "fp16"]), default="int4", show_default=True)
@click.option("--max-seq", type=int, default=None, help="Upper bound of the sequence dim.")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True, help="Artifact directory.")
@click.option("--driver/--no-driver", default=True, show_default=True, help="Generate the host C++ driver.")
@click.option("--llm", is_flag=True,
              help="Compile a decoder LM for generation: KV-cached entries 'logits' and 'greedy' (doc/llm.md); "
                   "--max-seq is then the maximum context.")
@click.option("--time-passes", is_flag=True,
              help="Print a table of graph-pass timings, with each pattern rule's hits and time.")
def compile_cmd(model, target, weights, max_seq, out, driver, llm, time_passes):
    """Compile MODEL for a target into an artifact directory and print the compile report."""
    try:
        if llm:
            from dlavm.llm import compile_llm
            cm = compile_llm(model, target=target, weights=weights, max_ctx=max_seq, on_progress=_progress)
        else:
            from dlavm.compiler import compile as dlavm_compile
            cm = dlavm_compile(model, target=target, weights=weights, max_seq=max_seq, on_progress=_progress)
    finally:
        click.echo("", err=True)  # ends the progress line, so an error is a line of its own
    if time_passes:
        from dlavm.ir import format_records
        click.echo(format_records(cm.pass_records), err=True)
    path = cm.save(out, driver=driver)
    click.echo(cm.report())
    click.echo(f"artifact written to {path}")


@click.command("run")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=1, show_default=True, help="Value of every dynamic dim.")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--direct", is_flag=True, help="Push instructions through registers instead of AUX streams.")
def run_cmd(artifact, seq, entry, direct):
    """Run ARTIFACT on the simulator with random inputs; print an output summary and cycles."""
    from dlavm.compiler import random_inputs
    from dlavm.compiler import load
    cm = load(artifact)
    inputs = random_inputs(cm.manifest, entry, seq)  # refuses an unknown entry or a seq past the bounds
    entry = entry or cm.entries[0]
    rt = cm.runtime(mode="direct" if direct else "aux")
    state = {d: seq for d in cm.manifest.entries[entry].state_dims}  # LLM: a prefill of seq tokens
    outs = rt.run(entry, *inputs, dims=state)
    for i, o in enumerate(outs):
        summary = f"min {o.min():.4g} max {o.max():.4g} mean {o.mean():.4g}" if o.size else "empty"
        click.echo(f"output {i}: shape {list(o.shape)} {o.dtype}  {summary}")
    t = cm.target
    click.echo(f"cycles {rt.last_cycles:,} = {t.figures.cycles_to_us(rt.last_cycles):.1f} us at {t.clock_mhz} MHz")


@click.command("disasm")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
def disasm_cmd(artifact):
    """Print every AUX stream of ARTIFACT as assembly (dynamic fields and guards annotated)."""
    from dlavm.runtime.loader import verify_artifact
    m = verify_artifact(artifact)
    for name, s in m.streams.items():
        click.echo(f"# stream {name} at {s.addr:#x}: {s.count} instructions")
        click.echo((Path(artifact) / s.asm).read_text(), nl=False)


@click.command("profile")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=1, show_default=True, help="Value of every dynamic dim.")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--timing-only", is_flag=True, help="Timing-only simulation (no numerics).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="Write a Perfetto/Chrome trace JSON.")
@click.option("--ctx", type=int, default=None,
              help="LLM artifacts: tokens in the KV cache after the call (default --seq: prefill; "
                   "decode at context n is --seq 1 --ctx n).")
def profile_cmd(artifact, seq, entry, timing_only, trace_path, ctx):
    """Cycles, time at the target clock, % of roofline and a per-op table for one run of ARTIFACT."""
    from dlavm.compiler import format_profile, profile
    from dlavm.runtime.loader import load_verified
    art = load_verified(artifact)
    m = art.manifest
    functional = not timing_only and m.weights_complete
    p = profile(m, art.read, seq, entry, functional, trace_path, ctx)
    click.echo(format_profile(p))
    if trace_path:
        click.echo(f"trace written to {trace_path}")


@click.command("generate")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", default=None, help="Prompt text (needs a tokenizer: --tokenizer or --demo-tokenizer).")
@click.option("--prompt-ids", default=None, help="Prompt as token ids, e.g. '1,2,3' (no tokenizer needed).")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy (argmax on the device).")
@click.option("--top-k", type=int, default=0, show_default=True, help="Sample among the k most likely (0 = all).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", type=int, default=None, help="Sampling seed.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="tokenizer.json to encode the prompt and decode the tokens.")
@click.option("--demo-tokenizer", is_flag=True, help="Use the demo BPE trained on the project's text "
                                                    "(vocabulary = the model's).")
@click.option("--eos-id", type=int, default=None, help="Stop at this token (default: the tokenizer's EOS).")
def generate_cmd(artifact, prompt, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, tokenizer_path,
                 demo_tokenizer, eos_id):
    """Generate text with the LLM artifact ARTIFACT on the simulator, streaming tokens as they come."""
    import time

    from dlavm.compiler import load
    if (prompt is None) == (prompt_ids is None):
        raise click.UsageError("give exactly one of --prompt TEXT or --prompt-ids IDS")
    cm = load(artifact)
    llm = cm.manifest.llm
    if llm is None:
        raise click.UsageError(f"artifact '{artifact}' has no generation entries: compile it with "
                               "`dlavm compile --llm`")
    tok = None
    if tokenizer_path or demo_tokenizer:
        from dlavm.tokenizer import Tokenizer, train_demo_tokenizer
        tok = Tokenizer.from_file(tokenizer_path) if tokenizer_path else train_demo_tokenizer(llm.vocab)
    if prompt_ids is not None:
        try:
            ids = [int(t, 10) for t in prompt_ids.replace(",", " ").split()]
        except ValueError:
            raise click.BadParameter(f"must be integers separated by commas or spaces, got {prompt_ids!r}",
                                     param_hint="--prompt-ids") from None
    elif tok is None:
        raise click.UsageError("--prompt TEXT needs a tokenizer (--tokenizer FILE or --demo-tokenizer); "
                               "or give --prompt-ids")
    else:
        ids = tok.encode(prompt)
    if eos_id is None and tok is not None:
        eos_id = tok.eos_id
    tokens = cm.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                         eos_id=eos_id)  # checks every argument before anything runs
    stream = None
    if tok is not None:
        from dlavm.tokenizer import DecodeStream
        stream = DecodeStream(tok)
        click.echo(prompt if prompt is not None else tok.decode(ids), nl=False)
    t0, n = time.perf_counter(), 0
    for t in tokens:
        n += 1
        click.echo(stream.step(t) if stream else f"{t} ", nl=False)
    if stream:
        click.echo(stream.flush(), nl=False)
    click.echo()
    gen = cm.generator
    secs = time.perf_counter() - t0
    click.echo(f"[{gen.stop_message}; {n} tokens in {secs:.2f} s on the simulator]", err=True)


COMMANDS = [compile_cmd, run_cmd, disasm_cmd, profile_cmd, generate_cmd]
