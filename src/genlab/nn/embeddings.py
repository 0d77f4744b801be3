"""Timestep and class embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sin/cos features at geometric frequencies (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def drop_labels(labels: torch.Tensor, share: float, null_label: int, generator: torch.Generator | None) -> torch.Tensor:
    """Labels with about `share` of them replaced by `null_label`, drawn from `generator`: one network then
    learns both the conditional and the unconditional model that classifier-free guidance mixes."""
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < share
    return torch.where(drop, torch.full_like(labels, null_label), labels)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of t, then an MLP; optionally plus a learned class embedding.

    Class index `num_classes` is the "no class" token, so one network serves conditional and
    unconditional use (what classifier-free guidance needs).
    """

    def __init__(self, dim: int, out_dim: int, num_classes: int = 0):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, out_dim) if num_classes else None
        self.num_classes = num_classes

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.mlp(sinusoidal_embedding(t, self.dim))
        if self.class_embedding is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes, dtype=torch.long)
            emb = emb + self.class_embedding(labels)
        return emb
