"""Dilated causal 1-D convolutions, with a cache of past inputs for generating one step at a time.

The convolution at time t sees inputs t, t - d, ..., t - (k - 1) d only (van den Oord et al. 2016,
"WaveNet", fig. 3): the sequence is padded on the left with zeros. Generating one step at a time by
recomputing the whole receptive field costs O(2^L) per step for L doubling layers; Paine et al. 2016
("Fast Wavenet Generation Algorithm") keep, per layer, a queue of the inputs the next steps will need,
which makes a step O(L). `ConvCache` is that queue as a circular buffer; it starts filled with zeros,
which is exactly the left padding of the full computation, so the two agree step for step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvCache:
    """The last `length` inputs of one causal convolution, (B, C, length), oldest first from `position`."""

    def __init__(self, past: torch.Tensor):
        self.past = past  # (B, C, M), a circular buffer
        self.position = 0  # where the oldest value sits, and where the next input goes

    @classmethod
    def empty(cls, batch: int, channels: int, length: int, like: torch.Tensor) -> "ConvCache":
        return cls(like.new_zeros(batch, channels, length))

    @classmethod
    def from_sequence(cls, x: torch.Tensor, length: int) -> "ConvCache":
        """The cache after a full pass over x (B, C, T): its last `length` steps, zeros before its start."""
        x = x[..., -length:] if x.shape[-1] >= length else F.pad(x, (length - x.shape[-1], 0))
        return cls(x.contiguous())  # position 0: the oldest

    def taps(self, dilation: int, kernel_size: int) -> torch.Tensor:
        """Inputs at t - (k-1) d, ..., t - d, oldest first: (B, C, k - 1)."""
        m = self.past.shape[-1]
        index = [(self.position + m - j * dilation) % m for j in range(kernel_size - 1, 0, -1)]
        return self.past[..., index]

    def push(self, x: torch.Tensor) -> None:
        self.past[..., self.position] = x
        self.position = (self.position + 1) % self.past.shape[-1]


class CausalConv1d(nn.Conv1d):
    """Conv1d whose output at t depends on inputs at t and before only; `step` computes one time step."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)

    @property
    def history(self) -> int:
        """How many past steps an output sees besides the current one: (k - 1) d."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        return super().forward(F.pad(x, (self.history, 0)))

    def new_cache(self, batch: int, like: torch.Tensor) -> ConvCache | None:
        return ConvCache.empty(batch, self.in_channels, self.history, like) if self.history else None

    def cache_from(self, x: torch.Tensor) -> ConvCache | None:
        """The cache the `step`s after a full pass over x (B, C_in, T) need."""
        return ConvCache.from_sequence(x, self.history) if self.history else None

    def step(self, x: torch.Tensor, cache: ConvCache | None) -> torch.Tensor:
        """One time step: x (B, C_in) -> (B, C_out), given the inputs before it in `cache` (then updated)."""
        if cache is None:  # a 1x1 convolution has no past
            return F.linear(x, self.weight[..., 0], self.bias)
        window = torch.cat([cache.taps(self.dilation[0], self.kernel_size[0]), x[..., None]], -1)  # (B, C_in, k)
        cache.push(x)
        return F.linear(window.flatten(1), self.weight.flatten(1), self.bias)


def receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Inputs one output of a stack of causal convolutions with these dilations depends on."""
    return (kernel_size - 1) * sum(dilations) + 1
