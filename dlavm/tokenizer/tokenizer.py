"""``Tokenizer``: a HF ``tokenizers`` tokenizer loaded from a local ``tokenizer.json``.

Encoding adds special tokens only when asked (``add_bos`` puts the BOS id
first; ``add_special_tokens`` applies the post-processor's template, e.g.
BERT's ``[CLS] ... [SEP]``), and never pads or truncates, so the ids are
exactly those of the C++ ``dlavm::Tokenizer`` reading the same file
(doc/tokenizer.md). Decoding skips special tokens unless told otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

# Special-token spellings looked up (in this order) for BOS and EOS; the C++
# tokenizer uses the same lists.
BOS_TOKENS = ("<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>")
EOS_TOKENS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<eos>")

REPLACEMENT_CHAR = "\ufffd"


class TokenizerError(ValueError):
    """A tokenizer file that cannot be read, or a request it cannot serve; the message names the cause."""


class Tokenizer:
    """Byte-level BPE (or any HF ``tokenizers``) tokenizer read from ``tokenizer.json``.

    Use ``Tokenizer.from_file(path)``; ``path`` may also be a directory that
    holds ``tokenizer.json`` (e.g. a Hugging Face checkpoint directory).
    """

    def __init__(self, hf_tokenizer, path: Path | None = None):
        if hf_tokenizer.padding is not None or hf_tokenizer.truncation is not None:
            # a tokenizer.json may ask for padding / truncation (all-MiniLM-L6-v2: pad to 128): encode
            # never applies them, so work on a copy without them (the caller's object is not changed)
            from tokenizers import Tokenizer as HFTokenizer
            hf_tokenizer = HFTokenizer.from_str(hf_tokenizer.to_str())
            hf_tokenizer.no_padding()
            hf_tokenizer.no_truncation()
        self._tok = hf_tokenizer
        self.path = path
        self._special_ids = {t.content: i for i, t in hf_tokenizer.get_added_tokens_decoder().items()
                             if t.special}
        self.bos_id = _first_present(self._special_ids, BOS_TOKENS)
        self.eos_id = _first_present(self._special_ids, EOS_TOKENS)

    @classmethod
    def from_file(cls, path) -> "Tokenizer":
        """Load ``path`` (a ``tokenizer.json`` or a directory holding one).

        Raises ``FileNotFoundError`` or ``TokenizerError`` naming the file when
        it is missing, not JSON, or not a tokenizer HF ``tokenizers`` can read.
        """
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file '{path}' does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise TokenizerError(f"tokenizer file '{path}' is not valid JSON: {e}") from None
        try:
            tok = HFTokenizer.from_str(text)
        except Exception as e:  # tokenizers raises a bare Exception for schema errors
            raise TokenizerError(f"tokenizer file '{path}' is not a tokenizer.json that HF tokenizers "
                                 f"can read: {e}") from None
        return cls(tok, path.resolve())

    @property
    def vocab_size(self) -> int:
        """Number of ids, added and special tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def hf(self):
        """The wrapped ``tokenizers.Tokenizer`` (padding and truncation disabled)."""
        return self._tok

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, id_: int) -> str | None:
        return self._tok.id_to_token(id_)

    def encode(self, text: str, add_bos: bool = False, add_special_tokens: bool = False) -> list[int]:
        """Ids of ``text`` (never padded nor truncated).

        ``add_special_tokens``: the post-processor's single-sequence template is applied (HF
        ``encode(text, add_special_tokens=True)``; BERT: ``[CLS] ... [SEP]``). ``add_bos``: the BOS
        id is put first (``TokenizerError`` if there is none), after the template if both are asked.
        """
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError(f"tokenizer '{self.path}' has no BOS token (looked for "
                                     f"{', '.join(BOS_TOKENS)})")
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``, special tokens skipped unless ``skip_special_tokens`` is false;
        incomplete UTF-8 becomes U+FFFD."""
        ids = [int(i) for i in ids]
        n = self.vocab_size
        for i in ids:
            if not 0 <= i < n:
                raise TokenizerError(f"token id {i} is outside the vocabulary [0, {n}) of '{self.path}'")
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Yield text pieces as ``ids`` arrive; ``"".join`` of the pieces equals ``decode(ids)``.

        A piece is yielded only once its characters are complete, so a
        character spread over several byte-level tokens comes out whole.
        """
        stream = DecodeStream(self)
        for i in ids:
            piece = stream.step(i)
            if piece:
                yield piece
        tail = stream.flush()
        if tail:
            yield tail

    def __repr__(self) -> str:
        return f"Tokenizer(path='{self.path}', vocab_size={self.vocab_size})"


class DecodeStream:
    """Incremental decoding, one id at a time (``step``), then ``flush`` at the end.

    Keeps the ids since the last complete character boundary and re-decodes
    them with one id of left context (so that decoders which treat the first
    token specially, e.g. a leading-space strip, do not change the text).
    Text ending in U+FFFD is an incomplete UTF-8 sequence and is held back.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] were already emitted (context)
        self._read = 0

    def step(self, id_: int) -> str:
        """Add one id; return the text it completes ("" when the character is not complete yet)."""
        self._ids.append(int(id_))
        prefix_text = self.tokenizer.decode(self._ids[self._prefix:self._read])
        new_text = self.tokenizer.decode(self._ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            self._prefix, self._read = self._read, len(self._ids)
            return new_text[len(prefix_text):]
        return ""

    def flush(self) -> str:
        """The text still held back (incomplete characters come out as U+FFFD)."""
        prefix_text = self.tokenizer.decode(self._ids[self._prefix:self._read])
        new_text = self.tokenizer.decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return new_text[len(prefix_text):]


def _first_present(ids: dict, names) -> int | None:
    for name in names:
        if name in ids:
            return ids[name]
    return None
