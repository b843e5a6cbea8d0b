"""What an LLM artifact carries beyond the device program: its host embedding table at the weight
precision, and the checkpoint's tokenizer (doc/llm.md "What the artifact carries").

Both rewrite a fresh :class:`~dlavm.backend.build.Build` in place (its files and its manifest, checked
again by the one manifest reader), before it is run or saved, so an in-memory model and a saved one
hold the same bytes.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dlavm.artifact import ConstRef, HostQuant, HostStep, TokenizerInfo, read_manifest
from dlavm.backend.build import checksums
from dlavm.runtime.host_quant import quantise

TOKENIZER_FILE = "tokenizer/tokenizer.json"
CHAT_TEMPLATE_FILE = "tokenizer/chat_template.jinja"


def embedding_tables(manifest) -> list:
    """Names of the host constants that ``embedding`` host steps read as their table."""
    out = []
    for e in manifest.entries.values():
        for s in e.steps:
            if isinstance(s, HostStep) and s.op == "embedding" and s.args and isinstance(s.args[0], ConstRef):
                if s.args[0].const not in out:
                    out.append(s.args[0].const)
    return out


def store_host_tables(build, weights: str, group: int) -> None:
    """Store every float32 embedding table of ``build`` at the weight precision ``weights``: ``fp16`` as
    float16, ``int8`` / ``int4`` quantised as the device's weights are (int4 with ``group`` elements
    per scale), dequantised to float32 when loaded."""
    tables = set(embedding_tables(build.manifest))
    consts = []
    for c in build.manifest.host_consts:
        if c.name not in tables or c.dtype != "float32" or len(c.shape) != 2 or c.quant is not None:
            consts.append(c)
            continue
        arr = np.frombuffer(build.files[c.file], dtype="<f4").reshape(c.shape)
        if weights == "fp16":
            build.files[c.file] = arr.astype("<f2").tobytes()
            consts.append(dataclasses.replace(c, dtype="float16"))
            continue
        data, scales, g = quantise(arr, weights, group)
        scales_file = c.file.removesuffix(".bin") + ".scales.bin"
        build.files[c.file] = data
        build.files[scales_file] = scales
        consts.append(dataclasses.replace(c, quant=HostQuant(weights, g, scales_file)))
    _replace(build, host_consts=tuple(consts))


def bundle_tokenizer(build, bundle: dict) -> None:
    """Add the tokenizer ``bundle`` (``dlavm.models.hf_checkpoint.tokenizer_bundle``) to ``build``."""
    build.files[TOKENIZER_FILE] = bundle["json"]
    template = bundle.get("chat_template")
    if template is not None:
        build.files[CHAT_TEMPLATE_FILE] = template.encode("utf-8")
    info = TokenizerInfo(TOKENIZER_FILE, bundle["bos_id"], tuple(bundle["eos_ids"]), bool(bundle["add_bos"]),
                         CHAT_TEMPLATE_FILE if template is not None else None)
    _replace(build, tokenizer=info)


def _replace(build, **fields) -> None:
    m = dataclasses.replace(build.manifest, **fields, files=checksums(build.files))
    build.manifest = read_manifest(m.to_json(), source=f"the manifest built for '{m.model}'")


__all__ = ["store_host_tables", "bundle_tokenizer", "embedding_tables", "TOKENIZER_FILE", "CHAT_TEMPLATE_FILE"]
