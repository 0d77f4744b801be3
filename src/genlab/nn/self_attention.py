"""SAGAN's self-attention block (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks", eq. 1-3).

Every position j of a feature map takes a softmax-weighted sum over all positions i:

    s_ij = f(x_i)^T g(x_j),   beta_ji = softmax_i(s_ij),   o_j = v(sum_i beta_ji h(x_i)),   y = gamma * o + x

with f, g, h 1x1 convolutions to C/8 channels, v a 1x1 convolution back to C, and gamma a learned scalar
that starts at 0: the block is the identity at initialisation and the network learns first from local
features, then how much non-local evidence to mix in. Unlike `attention.SpatialSelfAttention` (a
diffusion UNet's block) there is no normalisation, one head, no 1/sqrt(d) scaling and the learned gate.
"""

from __future__ import annotations

import torch
from torch import nn


class SelfAttention2d(nn.Module):
    """y = gamma * attention(x) + x over the H*W positions of (B, C, H, W), gamma initialised to 0."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)  # the paper's C-bar = C / 8
        # no biases: the paper's W_f x, W_g x, W_h x, W_v o
        self.f = nn.Conv2d(channels, inner, 1, bias=False)  # keys: the positions attended to
        self.g = nn.Conv2d(channels, inner, 1, bias=False)  # queries: the positions that attend
        self.h = nn.Conv2d(channels, inner, 1, bias=False)  # values
        self.v = nn.Conv2d(inner, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """beta (B, N, N), N = H*W: row j holds the weights position j gives every position i (rows sum to 1)."""
        keys, queries = self.f(x).flatten(2), self.g(x).flatten(2)  # (B, C/8, N)
        # the softmax in float32: under bf16 autocast the N-way normalisation loses the small weights first
        return torch.softmax(queries.transpose(1, 2) @ keys, dim=-1, dtype=torch.float32)  # (B, N_j, N_i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        beta = self.attention_weights(x)
        values = self.h(x).flatten(2)  # (B, C/8, N)
        o = values @ beta.to(values.dtype).transpose(1, 2)  # (B, C/8, N): o_j = sum_i beta_ji h(x_i)
        return x + self.gamma * self.v(o.view(b, -1, height, width))  # (B, C, H, W)
