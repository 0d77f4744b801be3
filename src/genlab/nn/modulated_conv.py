"""StyleGAN2's layers (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"):
equalised learning rate, modulated convolution with weight demodulation, the [1, 3, 3, 1] blur used to
downsample, and the minibatch standard deviation layer (Karras et al. 2018, "Progressive Growing of GANs").

Equalised learning rate (ProGAN, section 4.1): weights are stored as N(0, 1) and scaled by He's constant
1 / sqrt(fan_in) at every call, so Adam's scale-free steps move every layer at the same relative speed.
A parameter group's lr scale then multiplies the effective step exactly as StyleGAN's `lr_multiplier`
does (the mapping network's 0.01): Adam's step on the stored weight is the lr, on the used weight the lr
times the constant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEMODULATION_EPS = 1e-8  # the paper's epsilon in sigma_j = sqrt(sum w'^2 + eps)


ACTIVATION_GAIN = math.sqrt(2.0)  # after LeakyReLU(0.2): keeps unit variance through equalised layers


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) times sqrt(2), the gain that keeps unit variance through equalised layers."""
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate; `bias_init` 1 for StyleGAN's style affines."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.gain = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.gain, self.bias)


class EqualConv2d(nn.Module):
    """A convolution with equalised learning rate; same-padded unless `padding` is given."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, stride: int = 1,
                 padding: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, stride=self.stride, padding=self.padding)


def blur(x: torch.Tensor, padding: int, stride: int = 1, gain: float = 1.0) -> torch.Tensor:
    """The [1, 3, 3, 1] low-pass filter StyleGAN2 resamples with, as a fixed depthwise convolution (so
    R1's double backward goes through it); `gain` 4 after inserting zeros between pixels."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    kernel = taps[:, None] * taps[None, :] * (gain / taps.sum() ** 2)  # (4, 4), sums to gain
    c = x.shape[1]
    return F.conv2d(x, kernel.expand(c, 1, 4, 4), stride=stride, padding=padding, groups=c)


def blur_downsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): low-pass, then every second pixel."""
    return blur(x, padding=1, stride=2)


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True) -> torch.Tensor:
    """Each item's kernel (B, O, I, k, k): w'_ijk = s_i w_ijk, then (demodulated) w'' = w' / ||w'_j||,
    the norm over each output channel's inputs and taps (StyleGAN2 eq. 1 and 3)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # (B, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + DEMODULATION_EPS).rsqrt()
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, bias: torch.Tensor | None = None, gain: float = 1.0) -> torch.Tensor:
    """gain * (conv(x, modulated_weight(weight, styles)) + bias) per item, computed as the paper's code
    does when it does not fuse: scale the input channels by the styles, one shared convolution for the
    batch (instead of B grouped ones), scale the outputs by the demodulation coefficients. The bias and
    gain ride on that last scaling (one pass over the output instead of three).

    x (B, I, H, W), weight (O, I, k, k), styles (B, I), bias (O,) -> (B, O, H, W), or (B, O, 2H, 2W)
    with `up`."""
    x = x * styles.to(x.dtype)[:, :, None, None]
    w = weight.to(x.dtype)
    if up:
        # the paper's upsampling conv: a stride-2 transposed conv (zeros between pixels, then the kernel,
        # flipped so it is the same correlation as below) and the [1, 3, 3, 1] blur; it equals upsampling
        # then convolving, at a quarter of the multiplications
        out = F.conv_transpose2d(x, w.transpose(0, 1).flip(2, 3), stride=2)  # (B, O, 2H + k - 2, ...)
        out = blur(out, padding=(5 - w.shape[-1]) // 2, gain=4.0)  # (B, O, 2H, 2W)
    else:
        out = F.conv2d(x, w, padding=w.shape[-1] // 2)
    if not demodulate:
        out = out if gain == 1.0 else out * gain
        return out if bias is None else out + (bias * gain).to(out.dtype)[:, None, None]
    # sum_ik (s_i w_jik)^2 = sum_i s_i^2 sum_k w_jik^2, in float32 whatever the autocast precision
    energy = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()  # (B, O)
    scale = ((energy + DEMODULATION_EPS).rsqrt() * gain).to(out.dtype)[:, :, None, None]
    if bias is None:
        return out * scale
    return torch.addcmul((bias * gain).to(out.dtype)[:, None, None], out, scale)


class ModulatedConv2d(nn.Module):
    """A k x k convolution whose input channels are scaled by a style computed from w, demodulated
    (the synthesis convolutions) or not (toRGB, whose styles take He's constant instead)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.demodulate, self.up = demodulate, up
        # demodulation normalises the scale away; without it the style carries He's constant
        self.style_gain = 1.0 if demodulate else 1.0 / math.sqrt(in_channels * kernel_size**2)

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        return self.affine(w) * self.style_gain  # (B, I)

    def modulated_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The kernels the layer applies to each item (B, O, I, k, k)."""
        return modulated_weight(self.weight, self.styles(w), self.demodulate)

    def forward(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
                gain: float = 1.0) -> torch.Tensor:
        return modulated_conv2d(x, self.weight, self.styles(w), self.demodulate, self.up, bias, gain)


class MinibatchStdDev(nn.Module):
    """Append the mean standard deviation of each feature over groups of items as extra channels
    (ProGAN section 3), so the discriminator can see a batch that lacks variety."""

    def __init__(self, group_size: int = 4, channels: int = 1):
        super().__init__()
        self.group_size, self.channels = group_size, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # the largest group that divides the batch (a Python int: no device sync)
        g = next(s for s in range(min(self.group_size, n), 0, -1) if n % s == 0)
        f = self.channels
        y = x.float().reshape(g, n // g, f, c // f, h, w)  # (G, M, F, C/F, H, W): item i sits in group i % M
        # the variance over the group written out: torch's var over a leading dim measured 24x slower on a CPU
        y = ((y - y.mean(dim=0)).square().mean(dim=0) + 1e-8).sqrt()  # (M, F, C/F, H, W)
        y = y.mean(dim=(2, 3, 4))  # (M, F)
        y = y.reshape(n // g, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)
