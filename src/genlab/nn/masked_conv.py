"""Masked convolutions for autoregressive image models: the two stacks of the gated PixelCNN.

An image is generated in raster order, and within a pixel channel by channel (R, then G, then B).
A single masked k x k convolution (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks") leaves
a blind spot up and to the right that grows with depth; the gated PixelCNN (van den Oord et al. 2016b,
"Conditional Image Generation with PixelCNN Decoders") splits the receptive field in two stacks instead:

- `VerticalConv`: output row i sees input rows i - k//2 .. i, every column of the kernel. Fed to the
  horizontal stack through `down_shift`, its row i holds rows < i only, across the whole width.
- `HorizontalConv`: output (i, j) sees row i, columns j - k//2 .. j. At column j, the current pixel,
  channel masks keep the colours apart: the features of colour c see the colours < c of the input
  (mask A, the first layer: the current subpixel is the one being predicted) or <= c (mask B, later
  layers, whose inputs already exclude it). A 1 x 1 `HorizontalConv` is the masked 1 x 1 convolution.

Feature maps are split into one contiguous group of channels per colour (`channel_groups`). With one
colour channel the masks only remove the current pixel from the first layer.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def channel_groups(channels: int, colours: int) -> torch.Tensor:
    """(channels,) the colour each feature channel belongs to, in contiguous blocks."""
    if channels < colours:
        raise ValueError(f"{channels} feature channels cannot hold one group for each of {colours} colours")
    return torch.arange(channels) * colours // channels


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) moved one row down, a zero row on top: row i then holds what row i - 1 held."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class VerticalConv(nn.Conv2d):
    """A (k//2 + 1) x k convolution over the rows above and the current one, padded to keep H x W."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        if kernel % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {kernel}")
        super().__init__(in_channels, out_channels, (kernel // 2 + 1, kernel))
        self.pad = (kernel // 2, kernel // 2, kernel // 2, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, self.pad), self.weight, self.bias)

    def last_row(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, rows, W), the last k//2 + 1 rows or fewer up to some row -> (B, out, 1, W) the output at
        that row alone (sampling, a row at a time)."""
        left, right, _, _ = self.pad
        return self._conv_forward(F.pad(x, (left, right, self.kernel_size[0] - x.shape[2], 0)), self.weight, self.bias)


class HorizontalConv(nn.Conv2d):
    """A 1 x (k//2 + 1) convolution over the current row up to the current pixel, channel-masked there.

    `in_groups` / `out_groups` give each input / output channel's colour (`channel_groups`).
    """

    def __init__(self, in_groups: torch.Tensor, out_groups: torch.Tensor, kernel: int, mask: Literal["A", "B"]):
        if kernel % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {kernel}")
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        super().__init__(len(in_groups), len(out_groups), (1, kernel // 2 + 1))
        weight_mask = torch.ones_like(self.weight)
        visible = out_groups[:, None] > in_groups[None] if mask == "A" else out_groups[:, None] >= in_groups[None]
        weight_mask[:, :, 0, -1] = visible.to(weight_mask.dtype)  # the last tap is the current pixel
        self.register_buffer("mask", weight_mask, persistent=False)  # rebuilt from the config, never saved
        with torch.no_grad():
            self.weight.mul_(weight_mask)  # parameters hold exactly the weights in use
        self.left = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, (self.left, 0, 0, 0)), self.weight * self.mask, self.bias)

    def column_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (out, (k//2 + 1) * in), bias) for `column`: the masked kernel, column-major."""
        return (self.weight * self.mask).permute(0, 3, 1, 2).flatten(1), self.bias

    @staticmethod
    def column(window: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, k//2 + 1, in) the inputs up to one pixel, oldest column first -> (B, out) the output there.

        One matrix product with `column_weights()`: sampling goes one pixel at a time, where a
        convolution over a single column would pay oneDNN's set-up for every call."""
        return F.linear(window.flatten(1), *weights)
