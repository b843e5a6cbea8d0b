"""``nn.TransformerEncoderLayer`` over a dynamic sequence length.

    dlavm check examples/models/encoder.py:build
"""
import torch
from torch import nn
from torch.export import Dim


def build(max_seq: int = 64):
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True).eval()
    return model, (torch.randn(1, 16, 64),), ({1: Dim("seq", min=2, max=max_seq)},)
