"""``dlavm generate``: text generation with an LLM artifact on the simulator."""
from __future__ import annotations

import click


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


COMMANDS = [generate_cmd]
