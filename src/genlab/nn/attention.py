"""Self-attention over the pixels of a feature map."""

from __future__ import annotations

import torch
from torch import nn

from .transformer import attention


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention across H*W positions with a residual connection."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (3, B, heads, HW, C/heads) with the head dimension contiguous: SDPA's fused CPU kernel needs that, and
        # without it falls back to an unfused path several times slower (and far slower in bf16)
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).permute(1, 0, 2, 4, 3).contiguous()
        y = attention(q, k, v)  # (B, heads, HW, C/heads)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))
