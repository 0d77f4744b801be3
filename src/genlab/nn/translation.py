"""Networks for image-to-image translation: an image -> image ResNet generator and a PatchGAN
discriminator, both with instance norm, as CycleGAN and pix2pix use them.

- `ResnetGenerator` (Johnson et al. 2016, "Perceptual Losses for Real-Time Style Transfer", as CycleGAN's
  appendix 7.2 gives it): c7s1-k, two stride-2 downsamplings d2k d4k, residual blocks R4k, two fractionally
  strided upsamplings u2k uk, c7s1-C with tanh. Reflection padding keeps the borders free of the zero
  padding's artefacts. Images too small to halve twice (8x8) halve once (`convnets.downsample_plan`).
- `PatchDiscriminator` (Isola et al. 2017, pix2pix): 4x4 convolutions to a map of scores, one per
  overlapping patch, so it judges local texture and leaves global structure to the generator's other
  losses. `layers` stride-2 convolutions set the patch: 1 -> 16x16, 2 -> 34x34, 3 -> the papers' 70x70.

Instance norm without affine parameters and without running statistics (the reference implementation's
choice): each image is normalised on its own, so training and evaluation behave the same and the batch
size changes nothing but the gradient's average.
"""

from __future__ import annotations

import torch
from torch import nn

from .convnets import downsample_plan


def _conv_norm_relu(in_channels: int, out_channels: int, **conv) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, **conv), nn.InstanceNorm2d(out_channels), nn.ReLU()]


class ResidualBlock(nn.Module):
    """x + (reflect-pad, conv3x3, IN, ReLU, reflect-pad, conv3x3, IN)(x): the same width in and out."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), *_conv_norm_relu(channels, channels, kernel_size=3),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, C, S, S) images in [-1, 1] -> (B, C, S, S) images in [-1, 1]."""

    def __init__(self, channels: int, image_size: int, base_channels: int = 32, blocks: int = 6):
        super().__init__()
        stages, _ = downsample_plan(image_size, max_stages=2)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), *_conv_norm_relu(channels, base_channels, kernel_size=7)]
        ch = base_channels
        for _ in range(stages):  # (B, ch, s, s) -> (B, 2ch, s/2, s/2)
            layers += _conv_norm_relu(ch, 2 * ch, kernel_size=3, stride=2, padding=1)
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(blocks)]
        for _ in range(stages):  # (B, ch, s, s) -> (B, ch/2, 2s, 2s): output_padding makes it exactly twice
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """(B, C, S, S) -> (B, 1, s, s): a raw score per patch; s = S / 2^layers - 2."""

    def __init__(self, channels: int, image_size: int, base_channels: int = 32, layers: int = 1):
        super().__init__()
        if image_size // 2**layers < 3:
            raise ValueError(f"a PatchGAN with {layers} stride-2 layers needs images of at least {3 * 2**layers} "
                             f"pixels, got {image_size}; use fewer layers")
        act = nn.LeakyReLU(0.2)
        # no norm on the first layer (pix2pix): it would erase the input's own contrast
        body: list[nn.Module] = [nn.Conv2d(channels, base_channels, 4, stride=2, padding=1), act]
        ch = base_channels
        for i in range(1, layers + 1):  # the last of these keeps the size (stride 1), as in pix2pix
            out = base_channels * min(2**i, 8)
            body += [nn.Conv2d(ch, out, 4, stride=2 if i < layers else 1, padding=1), nn.InstanceNorm2d(out), act]
            ch = out
        body.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
