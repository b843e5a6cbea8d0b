"""Hand-written test models (plain torch, no transformers)."""
import torch
import torch.nn.functional as F
from torch import nn


class LlamaBlock(nn.Module):
    """One Llama decoder block: RMSNorm, RoPE, GQA causal attention, SwiGLU."""

    def __init__(self, dim=64, heads=4, kv_heads=2, hidden=176, theta=10000.0):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.q = nn.Linear(dim, heads * self.hd, bias=False)
        self.k = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.v = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.o = nn.Linear(heads * self.hd, dim, bias=False)
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.n1 = nn.RMSNorm(dim, eps=1e-5)
        self.n2 = nn.RMSNorm(dim, eps=1e-5)
        inv = 1.0 / theta ** (torch.arange(0, self.hd, 2).float() / self.hd)
        self.register_buffer("inv_freq", inv, persistent=False)

    def rope(self, x, pos):
        f = pos[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat([f, f], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x):
        b, s, _ = x.shape
        pos = torch.arange(s, device=x.device)
        h = self.n1(x)
        q = self.q(h).view(b, s, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        q, k = self.rope(q, pos), self.rope(k, pos)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, -1))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class UsesCummax(nn.Module):
    def forward(self, x):
        values, _ = torch.cummax(x, dim=-1)   # aten.cummax: not supported by DLAVM
        return values
