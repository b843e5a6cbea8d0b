"""The demo tokenizer: a byte-level BPE trained on ``data/corpus.txt``.

Training is deterministic (same corpus, vocabulary size and ``tokenizers``
version give the same ``tokenizer.json``), so tests and demos build their
tokenizer locally instead of downloading one.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from dlavm.cache import cache_dir

from .tokenizer import Tokenizer, TokenizerError

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "data" / "corpus.txt"
# ids 0, 1, 2 in this order (the tiny built-in models use bos 0, eos 1)
SPECIAL_TOKENS = ("<s>", "</s>", "<unk>")


def default_cache_dir() -> Path:
    """``$DLAVM_CACHE_DIR/tokenizer``, else ``<repo>/build/tokenizer`` (git-ignored), else a temp dir
    (:func:`dlavm.cache.cache_dir`)."""
    return cache_dir("tokenizer")

def build_demo_tokenizer_json(vocab_size: int = 512, corpus: Path = CORPUS) -> str:
    """Train the demo byte-level BPE on ``corpus`` and return its ``tokenizer.json`` text."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    corpus = Path(corpus)
    if not corpus.is_file():
        raise FileNotFoundError(f"tokenizer training corpus '{corpus}' does not exist")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the byte alphabet plus special tokens "
                         f"({len(alphabet) + len(SPECIAL_TOKENS)})")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet)
    tok.train([str(corpus)], trainer)
    return tok.to_str(pretty=True)


def train_demo_tokenizer(vocab_size: int = 512, path=None) -> Tokenizer:
    """Train (or reuse) the demo tokenizer and return it loaded from its ``tokenizer.json``.

    ``path``: the file to write, or a directory to write ``tokenizer.json``
    into. By default the file goes to ``default_cache_dir()`` under a name
    derived from the corpus, the vocabulary size and the ``tokenizers``
    version, and an existing one is reused; never into the source tree.
    """
    import tokenizers

    corpus_sha = hashlib.sha256(CORPUS.read_bytes()).hexdigest()[:16] if CORPUS.is_file() else "missing"
    if path is None:
        target = default_cache_dir() / f"demo-bpe-{vocab_size}-{corpus_sha}-tk{tokenizers.__version__}.json"
        if target.is_file():
            try:
                return Tokenizer.from_file(target)
            except TokenizerError:
                pass  # a damaged cache entry: train again
    else:
        target = Path(path)
        if target.is_dir():
            target = target / "tokenizer.json"
    text = build_demo_tokenizer_json(vocab_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    # write-then-rename so that concurrent test runs never read half a file
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tokenizer-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, target)
    return Tokenizer.from_file(target)
