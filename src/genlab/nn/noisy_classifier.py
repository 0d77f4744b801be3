"""A classifier of noisy images: the UNet's downsampling half, then pooling and a linear head.

As in Dhariwal & Nichol 2021 (classifier guidance): residual blocks that see the noise level through
the same time embedding as the denoiser, attention at the lowest resolution, global pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpatialSelfAttention
from .embeddings import TimestepEmbedding
from .unet import ResBlock


class NoisyImageClassifier(nn.Module):
    """(x (B, C, H, W) at unit variance, noise time (B,) in [0, 1000]) -> class logits (B, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), dropout: float = 0.0):
        super().__init__()
        emb_dim = base_channels * 4
        self.embed = TimestepEmbedding(base_channels, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = base_channels
        for level, mult in enumerate(channel_mults):
            self.blocks.append(ResBlock(ch, base_channels * mult, emb_dim, dropout))
            ch = base_channels * mult
            last = level == len(channel_mults) - 1
            self.downs.append(SpatialSelfAttention(ch) if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.norm_out = nn.GroupNorm(min(8, ch), ch)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t)
        h = self.conv_in(x)
        for block, down in zip(self.blocks, self.downs):
            h = down(block(h, emb))
        return self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))
