"""Size-generic convolutional encoders/decoders and MLPs, shared by the VAE and GAN families.

The number of stride-2 stages follows the image size: halve while the size stays even and at least 4
(28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 8 -> 4), so one network definition serves digits, MNIST and CIFAR.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "group", "layer", "none"]


def downsample_plan(size: int, max_stages: int = 4) -> tuple[int, int]:
    """Return (number of stride-2 stages, bottom spatial size) for a square image of `size`."""
    stages = 0
    while size % 2 == 0 and size // 2 >= 4 and stages < max_stages:
        size //= 2
        stages += 1
    return stages, size


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "layer":  # over (C, H, W) of each item: keeps items independent (WGAN-GP's critic)
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features): stride-2 4x4 convolutions doubling channels, then a linear head."""

    def __init__(self, in_channels: int, image_size: int, base_channels: int, out_features: int,
                 norm: Norm = "batch", activation: nn.Module | None = None, first_norm: bool = False):
        super().__init__()
        stages, bottom = downsample_plan(image_size)
        act = activation or nn.LeakyReLU(0.2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 3, 1, 1), act]
        ch = base_channels
        for i in range(stages):
            out = min(ch * 2, base_channels * 8)
            layers += [nn.Conv2d(ch, out, 4, 2, 1), _norm(norm if (i > 0 or first_norm) else "none", out), act]
            ch = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch * bottom * bottom, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W): a linear stem to the bottom size, then stride-2 transposed convs."""

    def __init__(self, in_features: int, out_channels: int, image_size: int, base_channels: int,
                 norm: Norm = "batch", activation: nn.Module | None = None):
        super().__init__()
        stages, bottom = downsample_plan(image_size)
        act = activation or nn.ReLU()
        ch = min(base_channels * 2**stages, base_channels * 8)
        self.stem_shape = (ch, bottom, bottom)
        self.stem = nn.Sequential(nn.Linear(in_features, ch * bottom * bottom))
        layers: list[nn.Module] = [_norm(norm, ch), act]
        for _ in range(stages):
            out = max(ch // 2, base_channels)
            layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1), _norm(norm, out), act]
            ch = out
        layers += [nn.Conv2d(ch, out_channels, 3, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(z).view(-1, *self.stem_shape))


class MLP(nn.Sequential):
    """in -> hidden x depth -> out, for 2-D toy data."""

    def __init__(self, in_features: int, hidden: int, out_features: int, depth: int = 3, activation=nn.SiLU):
        layers: list[nn.Module] = []
        dim = in_features
        for _ in range(depth):
            layers += [nn.Linear(dim, hidden), activation()]
            dim = hidden
        layers.append(nn.Linear(dim, out_features))
        super().__init__(*layers)


class ResidualConvBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus the input (through a 1x1 conv when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(min(8, in_channels), in_channels), nn.SiLU(),
                                  nn.Conv2d(in_channels, out_channels, 3, padding=1),
                                  nn.GroupNorm(min(8, out_channels), out_channels), nn.SiLU(),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class SpatialEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_channels, H / 2^stages, W / 2^stages): a fully convolutional encoder whose
    output keeps a spatial layout (the first stage of latent diffusion, Rombach et al. 2022)."""

    def __init__(self, in_channels: int, base_channels: int, out_channels: int, stages: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 3, padding=1)]
        ch = base_channels
        for i in range(stages):
            out = base_channels * 2 ** min(i + 1, 2)
            layers += [ResidualConvBlock(ch, out), nn.Conv2d(out, out, 3, stride=2, padding=1)]
            ch = out
        layers += [ResidualConvBlock(ch, ch), nn.GroupNorm(min(8, ch), ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialDecoder(nn.Module):
    """(B, in_channels, h, w) -> (B, out_channels, h * 2^stages, w * 2^stages), the mirror of SpatialEncoder."""

    def __init__(self, in_channels: int, base_channels: int, out_channels: int, stages: int):
        super().__init__()
        ch = base_channels * 2 ** min(stages, 2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 3, padding=1), ResidualConvBlock(ch, ch)]
        for i in reversed(range(stages)):
            out = base_channels * 2 ** min(i, 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1),
                       ResidualConvBlock(ch, out)]
            ch = out
        layers += [nn.GroupNorm(min(8, ch), ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
