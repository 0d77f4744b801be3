"""A small UNet for diffusion: residual blocks with time (and class) embedding, attention at low resolution.

Ho et al. 2020 (DDPM) architecture, scaled down; resolutions follow the image size (28 -> 14 -> 7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpatialSelfAttention
from .embeddings import TimestepEmbedding


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(min(8, out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as identity: stabler early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """(x (B, C, H, W), t (B,), labels (B,) | None) -> (B, C, H, W)."""

    def __init__(self, in_channels: int, image_size: int, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_levels: tuple[int, ...] = (2,), dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(
                f"image size {image_size} cannot be halved {len(channel_mults) - 1} times; "
                f"use fewer channel_mults (e.g. {channel_mults[:-1]})"
            )
        emb_dim = base_channels * 4
        self.embed = TimestepEmbedding(base_channels, emb_dim, num_classes)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        chans = [base_channels * m for m in channel_mults]

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, out in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResBlock(ch, out, emb_dim, dropout),
                                                SpatialSelfAttention(out) if level in attention_levels else nn.Identity()]))
                ch = out
                skips.append(ch)
            if level < len(chans) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = SpatialSelfAttention(ch)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            out = chans[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(ch + skips.pop(), out, emb_dim, dropout),
                                              SpatialSelfAttention(out) if level in attention_levels else nn.Identity()]))
                ch = out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))

        self.norm_out = nn.GroupNorm(min(8, ch), ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, labels)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, emb))
            else:
                h = layer(h)  # stride-2 downsample
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], dim=1), emb))
            else:
                h = layer(h)  # upsample
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPDenoiser(nn.Module):
    """(x (B, D), t (B,), labels) -> (B, D): the diffusion network for 2-D toy data."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, num_classes: int = 0):
        super().__init__()
        self.embed = TimestepEmbedding(hidden, hidden, num_classes)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, labels)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)
