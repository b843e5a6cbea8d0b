"""The tokenizer an LLM artifact bundles (``manifest.tokenizer``, doc/llm.md): its ``tokenizer.json``
read from the artifact's verified bytes, and its chat template rendered in a sandbox."""
from __future__ import annotations

from pathlib import Path

from .tokenizer import Tokenizer, TokenizerError


def tokenizer_from_text(text: str, name: str) -> Tokenizer:
    """A :class:`Tokenizer` of the ``tokenizer.json`` text ``text`` (``name``: where it came from, for
    messages); :class:`TokenizerError` when HF tokenizers cannot read it."""
    from tokenizers import Tokenizer as HFTokenizer
    try:
        hf = HFTokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 -- tokenizers raises a bare Exception for schema errors
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerError(f"{name} is not a tokenizer.json that HF tokenizers can read: {why}") from None
    return Tokenizer(hf, Path(name))


def render_chat(template: str, messages: list, bos_token: str = "", eos_token: str = "") -> str:
    """``template`` (a HF Jinja chat template, untrusted: rendered in jinja2's immutable sandbox) applied
    to ``messages`` with the generation prompt, as ``apply_chat_template`` does;
    :class:`TokenizerError` when it cannot be rendered."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    try:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                bos_token=bos_token, eos_token=eos_token)
    except TemplateError as e:
        raise TokenizerError(f"the chat template cannot be rendered: {e}") from None


__all__ = ["tokenizer_from_text", "render_chat"]
