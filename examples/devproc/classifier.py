"""A small CNN image classifier on normalised 32x32 RGB images (convolutions on the device).

    image -> Pillow RGB -> resize 32x32 bilinear -> (v/255 - mean) / std  [1, 3, 32, 32]
          -> conv3x3(3->16)-ReLU-maxpool2 -> conv3x3(16->32)-ReLU-maxpool2 -> global average pool
          -> Linear(32 -> 4) -> logits [1, 4];  the class is their argmax

Four synthetic classes (:func:`synthetic_image`): horizontal stripes, vertical stripes, a bright
disc on a dark background, a checkerboard; each drawn with random colours, phase, size and noise.
:func:`build` initialises the network from a fixed seed and trains it for a few Adam steps on such
images (single-threaded: the same weights on every call, whatever the thread count), so its classes are not degenerate.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import device_weights, load_normalized, seeded

IMAGE_SIZE = 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASSES = ("horizontal stripes", "vertical stripes", "disc", "checkerboard")
TRAIN_STEPS = 80
BATCH = 32


def synthetic_image(label: int, seed: int, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE):
    """A ``[height, width, 3]`` uint8 RGB image of class ``label`` (see ``CLASSES``), from ``seed``."""
    if label not in range(len(CLASSES)):
        raise ValueError(f"label must be in [0, {len(CLASSES)}), got {label!r}")
    rng = np.random.default_rng([label, seed])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / height, xx / width
    period = rng.uniform(0.15, 0.3)
    phase = rng.uniform(0, 1)
    if label == 0:
        mask = ((yy / period + phase) % 1.0) < 0.5
    elif label == 1:
        mask = ((xx / period + phase) % 1.0) < 0.5
    elif label == 2:
        cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.18, 0.32)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    else:
        mask = (((yy / period + phase) % 1.0) < 0.5) ^ (((xx / period + phase) % 1.0) < 0.5)
    fg = rng.uniform(150, 255, 3)
    bg = rng.uniform(0, 100, 3)
    img = np.where(mask[..., None], fg, bg) + rng.normal(0, 12, (height, width, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_images(folder, count: int, seed: int = 0, sizes=((32, 32), (48, 40), (27, 33), (64, 64))) -> list:
    """Write ``count`` synthetic PNGs into ``folder`` (classes in turn, sizes from ``sizes`` in turn:
    most need resizing to 32x32); returns ``[(path, label)]``."""
    from pathlib import Path

    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        label = i % len(CLASSES)
        h, w = sizes[i % len(sizes)]
        path = folder / f"img{i:03d}_class{label}.png"
        Image.fromarray(synthetic_image(label, seed * 1000 + i, h, w)).save(path)
        out.append((path, label))
    return out


class SmallClassifier(nn.Module):
    """conv3x3-ReLU-maxpool twice, global average pool, linear: ``[B, 3, H, W] -> logits [B, classes]``."""

    def __init__(self, classes: int = len(CLASSES)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


def _normalize_batch(images):
    t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(torch.float32) / 255
    m = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    s = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return (t - m) / s


@lru_cache(maxsize=None)
def _build():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the same reductions, hence the same weights, whatever the thread count
    try:
        with seeded(0):
            model = SmallClassifier()
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            model.train()
            for step in range(TRAIN_STEPS):
                labels = [(step * BATCH + i) % len(CLASSES) for i in range(BATCH)]
                x = _normalize_batch([synthetic_image(lab, 10_000 + step * BATCH + i)
                                      for i, lab in enumerate(labels)])
                loss = torch.nn.functional.cross_entropy(model(x), torch.tensor(labels))
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build():
    """``(model, example_inputs)``: the trained classifier (``[1, 3, 32, 32] -> logits [1, 4]``, eval mode;
    shared between calls: do not modify it) and ``(x,)`` an example input (seeded)."""
    g = torch.Generator().manual_seed(0)
    return _build(), (torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),)


def preprocess(image_path):
    """``[1, 3, 32, 32]`` float32 tensor of the image file: Pillow ``convert("RGB")``, ``resize((32, 32),
    BILINEAR)``, ``(t / 255 - mean) / std`` in torch (torchvision's ToTensor + Normalize)."""
    return load_normalized(image_path, IMAGE_SIZE, MEAN, STD)


@lru_cache(maxsize=None)
def _device_model(weights, target: str):
    model, example = build()
    return device_weights(model, example, None, weights, target)


def reference_logits(image_path, weights: str | None = None, target: str = "tiny"):
    """The logits ``[4]`` (float32 numpy) of the image file in torch; ``weights`` ``None`` is the fp32
    model, ``fp16`` / ``int8`` / ``int4`` the weights a model compiled for ``target`` multiplies by."""
    with torch.no_grad():
        return _device_model(weights, target)(preprocess(image_path))[0].numpy()


def reference_class(image_path, weights: str | None = None, target: str = "tiny") -> int:
    """The class (argmax of :func:`reference_logits`) of the image file."""
    return int(reference_logits(image_path, weights, target).argmax())


__all__ = ["IMAGE_SIZE", "MEAN", "STD", "CLASSES", "SmallClassifier", "synthetic_image", "write_images", "build", "preprocess",
           "reference_logits", "reference_class"]
