"""A small UNet for diffusion: residual blocks with time (and class) embedding, attention at low resolution.

Ho et al. 2020 (DDPM) architecture, scaled down; resolutions follow the image size (28 -> 14 -> 7).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpatialCrossAttention, SpatialSelfAttention
from .embeddings import TimestepEmbedding
from .transformer import mean_pool


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
    """(x (B, C, H, W), t (B,), labels (B,) | None, context (B, L, D) | None, context_mask (B, L)) -> (B, C, H, W).

    The middle always self-attends; `attention_levels` are the resolution levels whose blocks do too.
    With `context_dim`, the middle and the `cross_attention_levels` (default: the attention levels)
    cross-attend to a context (caption tokens), and the context's mean over its real tokens joins the
    time embedding. `extra_embedding` (B, embedding_dim), when given, is added to the time embedding as
    well (a denoising diffusion GAN's latent noise, through its mapping network).
    """

    def __init__(self, in_channels: int, image_size: int, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_levels: tuple[int, ...] = (2,), dropout: float = 0.0, num_classes: int = 0,
                 context_dim: int = 0, out_channels: int | None = None,
                 cross_attention_levels: tuple[int, ...] | None = None):
        super().__init__()
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(
                f"image size {image_size} cannot be halved {len(channel_mults) - 1} times; "
                f"use fewer channel_mults (e.g. {channel_mults[:-1]})"
            )
        emb_dim = self.embedding_dim = base_channels * 4
        self.embed = TimestepEmbedding(base_channels, emb_dim, num_classes)
        self.context_dim = context_dim
        self.context_embed = nn.Linear(context_dim, emb_dim) if context_dim else None

        cross_levels = attention_levels if cross_attention_levels is None else cross_attention_levels

        def attention_blocks(ch: int, level: int) -> list[nn.Module]:
            blocks = [SpatialSelfAttention(ch) if level in attention_levels else nn.Identity()]
            return blocks + ([SpatialCrossAttention(ch, context_dim)] if context_dim and level in cross_levels else [])

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        chans = [base_channels * m for m in channel_mults]

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, out in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([ResBlock(ch, out, emb_dim, dropout), *attention_blocks(out, level)]))
                ch = out
                skips.append(ch)
            if level < len(chans) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = SpatialSelfAttention(ch)
        self.mid_cross = SpatialCrossAttention(ch, context_dim) if context_dim else None
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            out = chans[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(ch + skips.pop(), out, emb_dim, dropout),
                                              *attention_blocks(out, level)]))
                ch = out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))

        self.norm_out = nn.GroupNorm(min(8, ch), ch)
        self.conv_out = nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None, *,
                extra_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if (context is None) != (self.context_embed is None):
            raise ValueError("pass a context exactly when the UNet was built with context_dim")
        emb = self.embed(t, labels)
        if extra_embedding is not None:
            emb = emb + extra_embedding
        if context is not None:
            emb = emb + self.context_embed(mean_pool(context, context_mask))

        def block(layer: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
            h = layer[1](layer[0](h, emb))
            return layer[2](h, context, context_mask) if len(layer) > 2 else h

        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = block(layer, h) if isinstance(layer, nn.ModuleList) else layer(h)  # or a stride-2 downsample
            hs.append(h)
        h = self.mid_attn(self.mid1(h, emb))
        if self.mid_cross is not None:
            h = self.mid_cross(h, context, context_mask)
        h = self.mid2(h, emb)
        for layer in self.up:
            h = block(layer, torch.cat([h, hs.pop()], dim=1)) if isinstance(layer, nn.ModuleList) else layer(h)  # or upsample
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPDenoiser(nn.Module):
    """(x (B, D), t (B,), labels) -> (B, D): the diffusion network for 2-D toy data."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, num_classes: int = 0):
        super().__init__()
        self.embedding_dim = hidden
        self.embed = TimestepEmbedding(hidden, hidden, num_classes)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None, *,
                extra_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None:
            raise ValueError("the point-data denoiser takes no context (captions are for images)")
        emb = self.embed(t, labels)
        if extra_embedding is not None:
            emb = emb + extra_embedding
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


class PatchUNet(nn.Module):
    """UNet on non-overlapping p x p patches: (B, C, H, W) -> (B, C*p*p, H/p, W/p) -> UNet -> back.

    For 28x28 and larger images this cuts the compute of the full-resolution level by 4 at little cost
    in quality on small images. `extra_channels` are inputs only (a super-resolution model's upsampled
    low-resolution image, concatenated to x as in SR3): the output has `channels`.
    """

    def __init__(self, channels: int, image_size: int, patch: int, extra_channels: int = 0, **unet_kwargs):
        super().__init__()
        self.patch = patch
        self.unet = UNet((channels + extra_channels) * patch * patch, image_size // patch,
                         out_channels=channels * patch * patch, **unet_kwargs)
        self.embedding_dim = self.unet.embedding_dim

    def forward(self, x, t, labels=None, context=None, context_mask=None, *, extra_embedding=None):
        if self.patch == 1:
            return self.unet(x, t, labels, context, context_mask, extra_embedding=extra_embedding)
        h = self.unet(F.pixel_unshuffle(x, self.patch), t, labels, context, context_mask, extra_embedding=extra_embedding)
        return F.pixel_shuffle(h, self.patch)


def denoising_network(config: Any, data_shape: tuple[int, ...], is_image: bool, num_classes: int,
                      context_dim: int = 0, extra_channels: int = 0) -> tuple[nn.Module, Any]:
    """The (x, t, labels, context, context_mask) network of a diffusion or flow model, and its config with
    the choices filled in.

    `config` has the fields base_channels, channel_mults, num_res_blocks, patch_size, attention, dropout
    and mlp_hidden; unset channel_mults and patch_size are chosen from the image size. Captions are
    cross-attended at the lowest resolution level whatever `attention` says.
    """
    if not is_image:
        return MLPDenoiser(data_shape[0], config.mlp_hidden, num_classes=num_classes), config
    channels, size = data_shape[0], data_shape[-1]
    patch = config.patch_size or (2 if size >= 28 and size % 2 == 0 else 1)
    inner = size // patch
    # halve while the size stays even, at most twice (28 -> 14 -> 7, 32 -> 16 -> 8; a 7x7 latent stays 7x7)
    levels = 1 + (inner % 2 == 0) + (inner > 16 and inner % 4 == 0)
    mults = tuple(config.channel_mults or (1, 2, 2)[:levels])
    config = replace(config, patch_size=patch, channel_mults=mults)
    net = PatchUNet(channels, size, patch, extra_channels, base_channels=config.base_channels, channel_mults=mults,
                    num_res_blocks=config.num_res_blocks,
                    attention_levels=(len(mults) - 1,) if config.attention == "lowest-level" else (),
                    cross_attention_levels=(len(mults) - 1,),
                    dropout=config.dropout, num_classes=num_classes, context_dim=context_dim)
    return net, config
