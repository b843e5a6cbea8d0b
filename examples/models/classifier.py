"""An MLP classifier that ends in ``log_softmax`` (a fixed batch of 4 feature vectors).

    dlavm check examples/models/classifier.py:build
"""
import torch
import torch.nn.functional as F
from torch import nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(32, 64)
        self.l2 = nn.Linear(64, 10)

    def forward(self, x):
        return F.log_softmax(self.l2(F.relu(self.l1(x))), dim=-1)


def build():
    torch.manual_seed(0)
    return Classifier().eval(), (torch.randn(4, 32),)
