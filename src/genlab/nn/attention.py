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
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        if x.device.type == "cpu" and torch.is_grad_enabled():
            # training on a CPU, for the few positions of a low-resolution map, plain matrix products with
            # the softmax in float32 train 1.5-2x faster under bf16 than SDPA's fused CPU kernel, whose
            # backward is slow (measured with the mnist DDPM UNet, benchmarks/speed.py)
            q, k, v = qkv.unbind(1)  # (B, heads, C/heads, HW)
            q = q * (c // self.heads) ** -0.5  # scaling q, not the HW x HW logits: fewer multiplications
            weights = torch.softmax(q.transpose(-1, -2) @ k, dim=-1, dtype=torch.float32)
            y = (v @ weights.to(v.dtype).transpose(-1, -2))  # (B, heads, C/heads, HW)
            return x + self.out(y.reshape(b, c, h, w))
        # without gradients (sampling) SDPA's fused kernels are faster everywhere: on a 2-core CPU the
        # mnist UNet's bf16 forward at batch 500 takes 15-25% less time than with the plain products, which
        # spend it on the float32 HW x HW weights; the fused kernels need the head dimension contiguous
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous()  # (B, heads, HW, C/heads) each
        y = attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class SpatialCrossAttention(nn.Module):
    """Each position of a feature map attends to the tokens of a context (a caption), with a residual.

    As in latent diffusion's UNet (Rombach et al. 2022): queries from the pixels, keys and values from
    the context; a row whose context is all padding (the "no caption" of classifier-free guidance)
    adds nothing. The output projection starts at zero so a new block starts as the identity.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)  # (B, heads, HW, d)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, L, d)
        y = attention(q, k, v, mask)  # (B, heads, HW, d)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))
