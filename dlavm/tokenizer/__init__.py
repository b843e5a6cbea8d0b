"""Tokenizers: HF ``tokenizers`` from a local ``tokenizer.json`` and the demo BPE (doc/tokenizer.md)."""
from .tokenizer import BOS_TOKENS, EOS_TOKENS, DecodeStream, Tokenizer, TokenizerError
from .train import CORPUS, SPECIAL_TOKENS, build_demo_tokenizer_json, default_cache_dir, train_demo_tokenizer

__all__ = ["BOS_TOKENS", "EOS_TOKENS", "CORPUS", "SPECIAL_TOKENS", "DecodeStream", "Tokenizer",
           "TokenizerError", "build_demo_tokenizer_json", "default_cache_dir", "train_demo_tokenizer"]
