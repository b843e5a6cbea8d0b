"""``dlavm generate``: text generation with an LLM artifact on the simulator."""
from __future__ import annotations

import click
from click.core import ParameterSource

from dlavm.serve.protocol import TOKEN_ENV

from .device_option import device_hal, device_option


def _bundled_tokenizer(cm):
    """``(Tokenizer, TokenizerInfo)`` of the tokenizer bundled in the artifact, or ``(None, None)``."""
    info = cm.manifest.tokenizer
    if info is None:
        return None, None
    from dlavm.tokenizer.bundled import tokenizer_from_text
    text = cm._read(info.file).decode("utf-8", errors="replace")
    return tokenizer_from_text(text, f"artifact '{cm.manifest.model}': {info.file}"), info


def parse_prompt_ids(text: str) -> list[int]:
    """The token ids of ``--prompt-ids`` (integers separated by commas or spaces); a usage error otherwise."""
    try:
        return [int(t, 10) for t in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"must be integers separated by commas or spaces, got {text!r}",
                                 param_hint="--prompt-ids") from None


def _chat_prompt(cm, info, tok, prompt: str) -> str:
    """``prompt`` as one user message in the artifact's chat template."""
    if info is None or info.chat_template is None:
        raise click.UsageError(f"--chat: artifact '{cm.manifest.model}' has no chat template "
                               "(a hf:DIR checkpoint's tokenizer_config.json or chat_template.jinja brings one)")
    from dlavm.tokenizer.bundled import render_chat
    text = cm._read(info.chat_template).decode("utf-8", errors="replace")
    names = {k: (tok.id_to_token(i) or "") if i is not None else "" for k, i in
             (("bos_token", info.bos_id), ("eos_token", info.eos_ids[0] if info.eos_ids else None))}
    return render_chat(text, [{"role": "user", "content": prompt}], **names)


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


@click.command("generate")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--prompt", multiple=True, help="Prompt text (the artifact's bundled tokenizer, or --tokenizer / "
                                              "--demo-tokenizer). Several: batched decode (an artifact compiled "
                                              "with --batch).")
@click.option("--prompt-ids", multiple=True, help="Prompt as token ids, e.g. '1,2,3' (no tokenizer needed). "
                                                 "Several: batched decode.")
@click.option("--chat", is_flag=True, help="Put the prompt into the bundled chat template as a user message.")
@click.option("--bos/--no-bos", default=None, help="Start the prompt with the BOS token (default: as the "
                                                   "bundled tokenizer config says; no for --tokenizer).")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy (argmax on the device).")
@click.option("--top-k", type=int, default=None, help="Sample among the k most likely (0 = all; default 0).")
@click.option("--top-p", type=float, default=None, help="Nucleus sampling mass (default 1).")
@click.option("--seed", type=int, default=None, help="Sampling seed.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="tokenizer.json to encode the prompt and decode the tokens (instead of the bundled one).")
@click.option("--demo-tokenizer", is_flag=True, help="Use the demo BPE trained on the project's text "
                                                    "(vocabulary = the model's).")
@click.option("--eos-id", type=int, default=None, help="Stop at this token (default: the tokenizer's EOS).")
@click.option("--verify", is_flag=True, help="Compare the device's logits at every step with torch "
                                             "(teacher-forced; needs torch, and --model unless the artifact "
                                             "records a recipe or hf:DIR).")
@click.option("--model", "model_spec", default=None,
              help="With --verify: the MODEL the artifact was compiled from (recipe, hf:DIR, file.py:factory).")
@device_option
@click.option("--connect", default=None, metavar="HOST:PORT",
              help="Send the request to a model server (dlavm serve, doc/serve.md) instead of running ARTIFACT.")
@click.option("--token", default=None, metavar="SECRET", envvar=TOKEN_ENV, show_envvar=True,
              help="With --connect: the server's shared secret (prefer the environment variable: other users of "
                   "the host can read a command line; without --connect the variable is ignored).")
def generate_cmd(artifact, prompt, prompt_ids, chat, bos, max_new_tokens, temperature, top_k, top_p, seed,
                 tokenizer_path, demo_tokenizer, eos_id, verify, model_spec, device, connect, token):
    """Generate text with the LLM artifact ARTIFACT on the simulator, streaming tokens as they come
    (or, with --connect HOST:PORT and no ARTIFACT, with the model a server serves).

    Prints the tokens, then on stderr why it stopped, the host wall time and the simulated figures
    (prefill ms, decode tokens/s, % of roofline at the target clock).

    Several --prompt (or --prompt-ids) run together with batched decode (an artifact compiled with
    `--llm --batch B`, doc/llm.md): each reply is printed when all are done, one line `[i] ...` each."""
    import time

    if bool(prompt) == bool(prompt_ids):
        raise click.UsageError("give exactly one of --prompt TEXT or --prompt-ids IDS (either one or more times)")
    if any(p == "" for p in prompt):
        raise click.BadParameter("the prompt is empty: give some text", param_hint="--prompt")
    several = len(prompt) + len(prompt_ids) > 1
    if several and (connect is not None or verify):
        raise click.UsageError(f"{'--connect' if connect is not None else '--verify'} takes one prompt; several "
                               "prompts run batched decode on ARTIFACT")
    texts, id_texts = prompt, prompt_ids
    prompt = prompt[0] if prompt else None
    prompt_ids = prompt_ids[0] if prompt_ids else None
    if connect is not None or artifact is None:
        given = [o for o, v in (("ARTIFACT", artifact), ("--tokenizer", tokenizer_path),
                                ("--demo-tokenizer", demo_tokenizer), ("--verify", verify), ("--model", model_spec),
                                ("--device", device)) if v]
        if connect is None or given:
            raise click.UsageError("give ARTIFACT, or --connect HOST:PORT without it" if connect is None else
                                   f"--connect sends the request to a model server: {', '.join(given)} "
                                   "cannot be given with it")
        from .serve_cmds import generate_remote
        return generate_remote(connect, token, prompt, prompt_ids, chat, bos, max_new_tokens, temperature, top_k,
                               top_p, seed, eos_id)
    from_env = click.get_current_context().get_parameter_source("token") == ParameterSource.ENVIRONMENT
    if token is not None and not from_env:   # $DLAVM_SERVE_TOKEN set for other commands is no error here
        raise click.UsageError("--token is the secret of --connect: give --connect HOST:PORT too")
    from dlavm.compiler import load
    if model_spec is not None and not verify:
        raise click.UsageError("--model is the reference of --verify: give --verify too")
    if temperature == 0:
        given = [f for f, v in (("--top-k", top_k), ("--top-p", top_p), ("--seed", seed)) if v is not None]
        if given:
            _warn(f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect at --temperature 0 "
                  "(greedy); give --temperature > 0 to sample")
    cm = load(artifact)
    llm = cm.manifest.llm
    if llm is None:
        raise click.UsageError(f"artifact '{artifact}' has no generation entries: compile it with "
                               "`dlavm compile --llm`")
    if verify and model_spec is None:   # the recipe or hf:DIR the artifact records (a factory: refused)
        from .run_cmds import recorded_model
        model_spec = recorded_model(cm.manifest, "--verify")
    if verify and model_spec is None:
        from dlavm.models import RECIPES
        if cm.manifest.model not in RECIPES:
            raise click.UsageError(f"--verify needs --model MODEL: the artifact records the name "
                                   f"'{cm.manifest.model}', not where its weights came from (give the recipe, "
                                   "hf:DIR or file.py:factory it was compiled from)")
        model_spec = cm.manifest.model
    tok, info = None, None
    if tokenizer_path or demo_tokenizer:
        from dlavm.tokenizer import Tokenizer, train_demo_tokenizer
        if tokenizer_path:
            tok = Tokenizer.from_file(tokenizer_path)
        else:
            try:
                tok = train_demo_tokenizer(llm.vocab)
            except ValueError as e:   # a vocabulary the demo BPE cannot have
                raise click.UsageError(f"--demo-tokenizer: the model's vocabulary does not fit it: {e}") from None
    else:
        tok, info = _bundled_tokenizer(cm)
    all_ids = [_prompt_tokens(cm, info, tok, None, p, chat, bos) for p in id_texts] + \
        [_prompt_tokens(cm, info, tok, p, None, chat, bos) for p in texts]
    ids = all_ids[0]
    if device is not None:
        cm.runtime(device_hal(device, cm.manifest))   # cm.generate runs on it
    if eos_id is None:
        eos_id = list(info.eos_ids) if info is not None and info.eos_ids else tok.eos_id if tok else None
    if several:
        return _generate_batch(cm, tok, all_ids, max_new_tokens, temperature, top_k, top_p, seed, eos_id)
    tokens = cm.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k or 0,
                         top_p=1.0 if top_p is None else top_p, seed=seed, eos_id=eos_id,
                         keep_logits=verify)  # checks every argument before anything runs
    stream = None
    if tok is not None:
        from dlavm.tokenizer import DecodeStream
        stream = DecodeStream(tok)
        click.echo(prompt if prompt is not None else tok.decode(ids), nl=False)
    t0, got = time.perf_counter(), []
    for t in tokens:
        got.append(t)
        click.echo(stream.step(t) if stream else f"{t} ", nl=False)
    if stream:
        click.echo(stream.flush(), nl=False)
    click.echo()
    gen = cm.generator
    secs = time.perf_counter() - t0
    from dlavm.runtime.generate import format_performance
    drawn = f"; seed {gen.seed}" if temperature > 0 and seed is None else ""   # to repeat the run with --seed
    click.echo(f"[{gen.stop_message}; {len(got)} tokens in {secs:.2f} s host wall time{drawn}]", err=True)
    click.echo(f"[{format_performance(gen.performance())}]", err=True)
    if verify:
        _verify(cm, model_spec, ids, got, gen.logits)


def _prompt_tokens(cm, info, tok, prompt, prompt_ids, chat, bos) -> list:
    """The token ids of one ``--prompt`` (``prompt``) or ``--prompt-ids`` (``prompt_ids``)."""
    if prompt_ids is not None:
        if chat or bos is not None:
            raise click.UsageError(f"{'--chat' if chat else '--bos/--no-bos'} applies to --prompt TEXT, not to "
                                   "--prompt-ids")
        return parse_prompt_ids(prompt_ids)
    if tok is None:
        raise click.UsageError(f"--prompt TEXT needs a tokenizer: artifact '{cm.manifest.model}' bundles none "
                               "(give --tokenizer FILE or --demo-tokenizer, or --prompt-ids)")
    text = _chat_prompt(cm, info, tok, prompt) if chat else prompt
    add_bos = bos if bos is not None else (info.add_bos if info is not None and not chat else False)
    if add_bos and info is not None and info.bos_id is None:
        raise click.UsageError(f"--bos: artifact '{cm.manifest.model}''s tokenizer has no BOS token")
    ids = tok.encode(text)
    if add_bos:
        ids = [info.bos_id if info is not None else _bos_of(tok), *ids]
    if not ids:
        raise click.BadParameter(f"the prompt {prompt!r} encodes to no tokens", param_hint="--prompt")
    return ids


def _generate_batch(cm, tok, all_ids, max_new_tokens, temperature, top_k, top_p, seed, eos_id) -> None:
    """Several prompts with batched decode (dlavm.runtime.batch_generate): the replies, one line each, then
    per request why it stopped and the simulated figures. Sampling: request i uses seed ``seed + i``."""
    import time

    from dlavm.runtime.batch_generate import BatchGenerator, Request
    from dlavm.runtime.generate import GenerateArgumentError
    from dlavm.runtime.runtime import RunError
    try:
        bg = BatchGenerator(cm.runtime())
    except RunError as e:
        raise click.UsageError(f"{len(all_ids)} prompts need batched decode: {e}") from None
    reqs = [Request(ids, max_new_tokens, temperature, top_k or 0, 1.0 if top_p is None else top_p,
                    None if seed is None else seed + i, eos_id) for i, ids in enumerate(all_ids)]
    try:
        events = bg.generate(reqs)
    except (GenerateArgumentError, RunError) as e:
        raise click.UsageError(str(e)) from None
    t0 = time.perf_counter()
    for _ in events:
        pass
    secs = time.perf_counter() - t0
    for i, (ids, res) in enumerate(zip(all_ids, bg.results)):
        text = tok.decode(ids) + tok.decode(res.tokens) if tok is not None else " ".join(map(str, res.tokens))
        click.echo(f"[{i}] {text}")
    for i, res in enumerate(bg.results):
        drawn = f"; seed {res.seed}" if temperature > 0 and seed is None else ""
        click.echo(f"[{i}: slot {res.slot}, {res.stop_message}{drawn}]", err=True)
    total = sum(len(r.tokens) for r in bg.results)
    click.echo(f"[{len(all_ids)} sequences, {total} tokens in {secs:.2f} s host wall time]", err=True)
    click.echo(f"[{format_batch_performance(bg, cm)}]", err=True)


def format_batch_performance(bg, cm) -> str:
    """One line: simulated decode steps and tokens/s of a batched generation."""
    from dlavm.runtime.loader import artifact_target
    fig = artifact_target(cm.manifest).figures
    dec = [s for s in bg.steps if s["kind"] == "decode"]
    if not dec or not all(s["cycles"] for s in bg.steps):
        return "simulated: no batched decode step" if not dec else "simulated: the device reported no cycle counts"
    secs = fig.cycles_to_us(sum(s["cycles"] for s in dec)) / 1e6
    toks = sum(s["tokens"] for s in dec)
    pre = fig.cycles_to_us(sum(s["cycles"] for s in bg.steps if s["kind"] == "prefill")) / 1e3
    return (f"simulated: {len(bg.steps) - len(dec)} prefills {pre:.3f} ms; {len(dec)} batched decode steps, "
            f"{toks} tokens, {toks / secs:,.1f} tokens/s (mean {toks / len(dec):.2f} sequences per step)")


def _bos_of(tok) -> int:
    if tok.bos_id is None:
        raise click.UsageError(f"--bos: tokenizer '{tok.path}' has no BOS token")
    return tok.bos_id


def _verify(cm, model_spec, prompt, tokens, device_logits) -> None:
    """--verify: the comparison table and summaries; exit 1 when the same-weights reference disagrees
    at a step that is not a near-tie."""
    from dlavm.llm.verify import format_steps, verify
    if not tokens:
        raise click.UsageError("--verify: no token was generated, nothing to compare")
    comparisons = verify(model_spec, cm, prompt, tokens, device_logits)
    click.echo(f"verify: teacher-forced, torch ({model_spec}) on the prompt ({len(prompt)} tokens) + the "
               f"{len(tokens)} generated tokens; per step max |device - torch| of the logits, and the argmax "
               "(device/torch where they differ: 'tie' = torch's top-2 margin <= the error, '!' = larger)")
    click.echo(format_steps(comparisons))
    for c in comparisons:
        click.echo(f"verify {c.summary()}")
    bad = comparisons[0].real_divergences
    if bad:
        raise SystemExit(1)


COMMANDS = [generate_cmd]
