"""The four pipelines of doc/devproc.md, written once in DevProc: the tests, the benchmark and the guide use
these kernels and constants.

1. ``sentence_embedding``: tokenize -> all-MiniLM-L6-v2 (real weights) -> masked mean pool -> L2 normalise;
2. ``text_generation``: tokenize -> prefill + decode loop -> detokenise;
3. ``describe_image``: load -> resize -> normalise -> ViT tower (+ projection) -> concat with the prompt's token
   embeddings -> LLM prefill + decode loop -> detokenise;
4. ``classify``: load -> resize -> normalise -> CNN -> argmax.
"""
from __future__ import annotations

from functools import lru_cache

import devproc

from . import classifier, minilm, textgen, vlm


@devproc.kernel
def sentence_embedding(text: devproc.String, tok: devproc.Tokenizer, encoder: devproc.TorchModel):
    ids = devproc.tokenize_encode(text, tok, add_special_tokens=True)      # [CLS] ... [SEP]
    hidden = encoder(ids)                                                   # [1, n, 384] on the device
    return devproc.l2_normalize(devproc.mean_pool(hidden, devproc.ones_like(ids)), dim=-1)


@devproc.kernel
def text_generation(prompt: devproc.String, tok: devproc.Tokenizer, llm: devproc.TorchModel,
                    max_new_tokens: int = 16, eos_id=None):
    ids = devproc.tokenize_encode(prompt, tok)
    out = devproc.decode_loop(llm, ids, devproc.KVCache(), max_new_tokens=max_new_tokens, eos_id=eos_id)
    return out, devproc.tokenize_decode(out, tok)


@devproc.kernel
def pixels(path: devproc.String, size: int, mean, std):
    """An image file as the normalised [1, 3, size, size] tensor a vision model takes."""
    return devproc.normalize(devproc.resize(devproc.load_image(path), size=[size, size]), mean=mean, std=std)


@devproc.kernel
def classify(path: devproc.String, cnn: devproc.TorchModel):
    logits = cnn(pixels(path, classifier.IMAGE_SIZE, classifier.MEAN, classifier.STD))
    return devproc.argmax(logits, dim=-1)


@devproc.kernel
def describe_image(path: devproc.String, prompt: devproc.String, tok: devproc.Tokenizer,
                   tower: devproc.TorchModel, llm: devproc.TorchModel, table: devproc.Tensor,
                   max_new_tokens: int = 8):
    image = tower(pixels(path, vlm.IMAGE_SIZE, vlm.MEAN, vlm.STD))        # [1, 17, 128]
    words = devproc.embed(devproc.tokenize_encode(prompt, tok), table)     # [1, n, 128]
    out = devproc.decode_loop(llm, devproc.concat([image, words], dim=1), devproc.KVCache(),
                              max_new_tokens=max_new_tokens, embedding=table)
    return out, devproc.tokenize_decode(out, tok)


# ---------------------------------------------------------------------------- the constants they take

@lru_cache(maxsize=None)
def minilm_constants(max_seq: int = minilm.MAX_SEQ) -> tuple:
    """(tokenizer, encoder) of all-MiniLM-L6-v2 (compile for ``minilm.TARGET``)."""
    d = minilm.model_dir()
    return devproc.load_tokenizer(d / "tokenizer.json"), devproc.load_torch_model(f"hf:{d}", max_seq=max_seq,
                                                                                  name="minilm")


@lru_cache(maxsize=None)
def textgen_constants(max_seq: int = 64) -> tuple:
    """(tokenizer, llm): the tiny Llama recipe with the demo BPE of its 512 ids."""
    return (devproc.load_tokenizer(textgen.tokenizer_path()),
            devproc.load_torch_model("tiny-llama", max_seq=max_seq, name="llm"))


@lru_cache(maxsize=None)
def classifier_constants() -> tuple:
    model, example = classifier.build()
    return (devproc.load_torch_model(model, example, name="cnn"),)


@lru_cache(maxsize=None)
def vlm_constants(max_seq: int = vlm.MAX_SEQ) -> tuple:
    """(tokenizer, tower, llm, embedding table)."""
    tower, lm = vlm.build(max_seq)
    return (devproc.load_tokenizer(textgen.tokenizer_path()),
            devproc.load_torch_model(tower, vlm.vision_example(), name="tower"),
            devproc.load_torch_model(lm, vlm.llm_example(), vlm.llm_dynamic_shapes(max_seq), max_seq=max_seq,
                                     name="llm"),
            devproc.const(vlm.embedding_table(max_seq), "embedding"))
