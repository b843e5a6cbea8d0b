"""Hand-written attention (nanoGPT style) recognised as dev.attention once its mask is proven causal."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from dlavm.frontend.torch import from_torch
from dlavm.ir import Call, PassManager, count_ops, post_order
from dlavm.passes import device_pipeline
from dlavm.reference import run_function
from dlavm.target import get_target

T, D, H = 24, 32, 2


class Attn(nn.Module):
    """q/k/v projections and ``softmax(masked_fill(q @ k^T * scale, mask, -inf)) @ v``."""

    def __init__(self, mask: str):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.o, self.kind = nn.Linear(D, 3 * D), nn.Linear(D, D), mask
        if mask == "tril":      # nanoGPT: keep where the buffer is 1
            self.register_buffer("bias", torch.tril(torch.ones(T, T)).view(1, 1, T, T))
        elif mask == "triu":    # drop where the buffer is True
            self.register_buffer("drop", torch.triu(torch.ones(T, T), 1).bool())
        elif mask == "band":    # a sliding window of 4: not causal
            self.register_buffer("bias", (torch.tril(torch.ones(T, T)) - torch.tril(torch.ones(T, T), -4))
                                 .view(1, 1, T, T))

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = (t.view(B, L, H, C // H).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if self.kind == "div":
            att = (q @ k.transpose(-2, -1)) / (k.size(-1) ** 0.5)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / (k.size(-1) ** 0.5))
        if self.kind in ("tril", "band"):
            att = att.masked_fill(self.bias[:, :, :L, :L] == 0, float("-inf"))
        elif self.kind == "triu":
            att = att.masked_fill(self.drop[:L, :L], float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(B, L, C)
        return self.o(y)


def _device(kind):
    model = Attn(kind).eval()
    mod = from_torch(model, (torch.randn(1, 8, D),), ({1: Dim("seq", min=2, max=T - 1)},))
    dev = PassManager(device_pipeline("fp16", target=get_target("tiny"))).run(mod)
    return model, dev


@pytest.mark.parametrize("kind,causal", [("tril", True), ("triu", True), ("none", False), ("div", False)])
def test_written_attention_becomes_dev_attention(kind, causal):
    model, dev = _device(kind)
    fn = next(iter(dev.functions.values()))
    ops = count_ops(fn)
    assert ops.get("dev.attention") == 1 and "matmul" not in ops and "where" not in ops
    (att,) = [n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == "dev.attention"]
    assert att.attrs["causal"] is causal and att.attrs["scale"] == pytest.approx(1 / (D // H) ** 0.5)
    assert dev.attrs["legalize_stats"]["attention-written"] == 1
    assert dev.attrs["host_ops"] == []
    for n in (2, 9, T - 1):
        x = torch.randn(1, n, D, generator=torch.Generator().manual_seed(n))
        want = model(x).detach()
        got = run_function(dev, fn.name, [x])
        assert (got - want).abs().max() <= 5e-3 * want.abs().max()


def test_a_mask_that_is_not_causal_stays_on_the_host_with_the_reason():
    model, dev = _device("band")
    fn = next(iter(dev.functions.values()))
    ops = count_ops(fn)
    assert "dev.attention" not in ops and ops["matmul"] == 2 and ops["where"] == 1
    reasons = {h["op"]: h["reason"] for h in dev.attrs["host_ops"]}
    assert reasons["matmul"].startswith("hand-written attention left on the host: attention mask is neither "
                                        "causal nor full")
    x = torch.randn(1, 9, D)
    got = run_function(dev, fn.name, [x])
    assert (got - model(x).detach()).abs().max() <= 5e-3 * model(x).detach().abs().max()


def test_transformer_encoder_layer_runs_wholly_on_the_device():
    """nn.TransformerEncoderLayer (batch first, batch 1): the packed q/k/v projection splits into three mvms
    (slice-of-split-linear), the head layouts cancel (canonicalize), no host op and one transfer each way."""
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=True).eval()
    mod = from_torch(model, (torch.randn(1, 8, D),), ({1: Dim("seq", min=2, max=T)},))
    dev = PassManager(device_pipeline("fp16", target=get_target("tiny"))).run(mod)
    fn = next(iter(dev.functions.values()))
    ops = count_ops(fn)
    assert dev.attrs["host_ops"] == [] and ops["dev.to_device"] == 1 and ops["dev.to_host"] == 1
    assert ops["dev.attention"] == 1 and dev.attrs["legalize_stats"]["slice-of-split-linear"] == 3
    for n in (2, 9, T):
        x = torch.randn(1, n, D, generator=torch.Generator().manual_seed(n))
        want = model(x).detach()
        got = run_function(dev, fn.name, [x])
        assert (got - want).abs().max() <= 5e-3 * want.abs().max()
