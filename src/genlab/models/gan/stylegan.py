"""StyleGAN2, sized for small images on a CPU.

Karras, Laine & Aila 2019, "A Style-Based Generator Architecture for Generative Adversarial Networks":
a mapping network (an MLP, 8 layers in the paper) turns the pixel-normalised z into w; the synthesis
network starts from a learned constant and is steered by w at every layer through learned affine
styles; per-pixel noise with learned per-channel strengths adds stochastic detail; style mixing
regularisation (two w's, a random crossover layer, with probability 0.9); the mapping network trains
at 0.01x the learning rate; truncation at sampling, w = w_avg + psi (w - w_avg), w_avg a moving
average of w kept as a buffer (beta 0.995, as in the official code).

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2): modulated
convolutions with weight demodulation in place of AdaIN, noise and bias outside the style block, a
skip generator (each resolution's toRGB added to the upsampled image), a residual discriminator
with a minibatch standard deviation layer, the non-saturating loss with lazy R1 every 16 steps (the
shared `adversarial.py` options), equalised learning rate throughout (`nn/modulated_conv.py`), and
Adam with betas (0, 0.99), lr 0.002, batch 32.

Sized down: the constant sits at the bottom of `downsample_plan` (7 for 28x28: 7 -> 14 -> 28; 4 for
8x8 and 32x32), 4 mapping layers, 16 base channels doubling towards the bottom. Left out: path length
regularisation, the lazy-R1 correction of Adam's lr and betas (x16/17: negligible with beta1 = 0),
truncation cut off after some layers (psi applies to all), and the upfirdn kernels: resampling convs
blur with the paper's [1, 3, 3, 1] filter as a depthwise conv, and the skip image is upsampled
bilinearly (the same filter inside the image). Style mixing draws a crossover per item rather than
per batch, so no device value decides a Python branch.

One departure by default, measured: the image goes through tanh (`output="tanh"`, as DCGAN's does). The
paper's images come out unbounded (`output="linear"`), and `sample` clips them to [-1, 1] as its image
export does. That suits photographs, whose pixels seldom sit at the ends of their range; most pixels of a
digit scan sit exactly at -1, and an unbounded output leaves out-of-range and noisy backgrounds that the
discriminator rejects at a glance. On mnist (28x28, batch 32, lr 2e-3) the linear output collapsed in
every setting tried (lr 5e-4 to 2e-3, R1 weight 0.01 and 1, DiffAugment, no style mixing, 64 channels,
batch 64): one or two classes by step 500-1000, FID 78 at step 500. With tanh, step 600 gave FID 14.2 over
all 10 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import downsample_plan
from ...nn.modulated_conv import (ACTIVATION_GAIN, EqualConv2d, EqualLinear, MinibatchStdDev, ModulatedConv2d, blur,
                                  blur_downsample, leaky_relu)
from ...train.optim import ParamGroup
from .adversarial import AdversarialConfig, AdversarialModel


@dataclass
class StyleGANConfig(AdversarialConfig):
    latent_dim: int = 128  # z (512 in the paper)
    w_dim: int = 128  # w (512 in the paper)
    mapping_layers: int = 4  # 8 in the paper
    mapping_lr_scale: float = 0.01  # the paper's lr multiplier of the mapping network
    # at full resolution, doubling at each lower one up to 8x. 16, measured on mnist in 10 minutes on a
    # 2-core CPU with AVX-512: FID 2.09, 1.42 and 4.99 on three seeds (5,000-5,700 steps), 3,700-6,700
    # samples/s (AVX2 only: 3.66, 2.21, 3.20 at ~3,400 steps); 32: FID 4.10 at 2,302 steps (one seed), 1,730 samples/s
    base_channels: int = 16
    style_mixing: float = 0.9  # probability that an item mixes two w's in training
    w_avg_beta: float = 0.995  # moving average of w, for truncation
    mbstd_group: int = 4  # minibatch standard deviation over groups of this many items
    # gamma: 10 at 1024x1024; StyleGAN2-ADA's rule 0.0002 * side^2 / batch gives 0.005 for 28x28 at batch
    # 32, and its CIFAR-10 (32x32) setting is 0.01
    r1_weight: float = 0.01
    r1_every: int = 16  # lazy R1
    # "linear": the paper's unbounded image; "tanh" squashes it into the data's [-1, 1] (see the module docstring)
    output: Literal["tanh", "linear"] = "tanh"


def _mapping_mlp(config: StyleGANConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = config.latent_dim
    for _ in range(config.mapping_layers):
        layers += [EqualLinear(width, config.w_dim), _LeakyReLU()]
        width = config.w_dim
    return nn.Sequential(*layers)


class _LeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky_relu(x)


class SynthesisLayer(nn.Module):
    """A modulated 3x3 conv (upsampling or not), per-pixel noise times a learned per-channel strength,
    bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))  # zero at first, as in the paper's code
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # sqrt(2) lrelu(conv + noise + bias) = lrelu(sqrt(2) conv + sqrt(2) noise + sqrt(2) bias): with the
        # activation's gain moved onto the small per-channel factors, the full-size tensor is written by the
        # demodulation, the noise and the activation only, in place where autograd allows
        x = self.conv(x, w, bias=self.bias, gain=ACTIVATION_GAIN)  # (B, O, H, W), or (B, O, 2H, 2W) upsampling
        b, _, h, wd = x.shape
        noise = torch.randn((b, 1, h, wd), generator=generator, device=x.device, dtype=x.dtype)  # one per pixel
        x = x.addcmul_(noise, (self.noise_strength * ACTIVATION_GAIN).to(x.dtype)[:, None, None])
        return F.leaky_relu(x, 0.2, inplace=True)


class ToRGB(nn.Module):
    """A modulated 1x1 conv to image channels, without demodulation or activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w, bias=self.bias)


def _channels(config: StyleGANConfig, stages: int) -> list[int]:
    """Channels per resolution, bottom first: base_channels at full size, doubling below, at most 8x."""
    return [config.base_channels * 2 ** min(stages - i, 3) for i in range(stages + 1)]


class StyleGenerator(nn.Module):
    """z -> w (mapping) -> one w per layer (mixing, truncation) -> image (synthesis, skip architecture).

    The w's are indexed as in the paper's code: each block's convolutions take one each, and its toRGB
    shares the w of the next block's first convolution, so `num_ws` = convolutions + 1."""

    def __init__(self, config: StyleGANConfig, image_channels: int, image_size: int):
        super().__init__()
        self.config = config
        stages, bottom = downsample_plan(image_size)
        ch = _channels(config, stages)
        self.mapping = _mapping_mlp(config)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.const = nn.Parameter(torch.randn(ch[0], bottom, bottom))
        self.convs = nn.ModuleList([SynthesisLayer(ch[0], ch[0], config.w_dim)])
        self.to_rgb = nn.ModuleList([ToRGB(ch[0], image_channels, config.w_dim)])
        for i in range(1, stages + 1):
            self.convs.extend([SynthesisLayer(ch[i - 1], ch[i], config.w_dim, up=True),
                               SynthesisLayer(ch[i], ch[i], config.w_dim)])
            self.to_rgb.append(ToRGB(ch[i], image_channels, config.w_dim))
        self.num_ws = len(self.convs) + 1

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> w (B, w_dim), z normalised to unit second moment first (pixel norm)."""
        z = z * (z.float().square().mean(dim=1, keepdim=True) + 1e-8).rsqrt().to(z.dtype)
        return self.mapping(z)

    def track(self, w: torch.Tensor) -> None:
        """Move w_avg towards this batch's mean w."""
        self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.config.w_avg_beta))

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor:
        """w_avg + psi (w - w_avg): psi 0 gives every item the mean style, psi 1 leaves w as it is."""
        return self.w_avg.to(ws.dtype).lerp(ws, psi)

    def mix(self, ws: torch.Tensor, w2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        """Layers from `crossover` (B,) on take w2 (B, w_dim) instead of ws (B, L, w_dim)."""
        first = torch.arange(self.num_ws, device=ws.device)[None, :] < crossover[:, None]  # (B, L)
        return torch.where(first[..., None], ws, w2[:, None].to(ws.dtype))

    def crossover(self, n: int, probability: float, generator: torch.Generator | None, device) -> torch.Tensor:
        """Per item: a layer in [1, num_ws) with `probability`, else num_ws (no mixing)."""
        layer = torch.randint(1, self.num_ws, (n,), generator=generator, device=device)
        mixed = torch.rand(n, generator=generator, device=device) < probability
        return torch.where(mixed, layer, torch.full_like(layer, self.num_ws))

    def synthesize(self, ws: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, C, H, W)."""
        x = self.const.to(ws.dtype).expand(len(ws), *self.const.shape)  # (B, C, b, b)
        x = self.convs[0](x, ws[:, 0], generator)
        image = self.to_rgb[0](x, ws[:, 1])
        for i, to_rgb in enumerate(self.to_rgb[1:], start=1):
            x = self.convs[2 * i - 1](x, ws[:, 2 * i - 1], generator)  # (B, C', 2b, 2b)
            x = self.convs[2 * i](x, ws[:, 2 * i], generator)
            up = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
            image = up + to_rgb(x, ws[:, 2 * i + 1])
        return torch.tanh(image) if self.config.output == "tanh" else image

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None, truncation: float | None = None,
                mixing: float = 0.0, track: bool = False) -> torch.Tensor:
        w = self.map(z)  # (B, w_dim)
        if track:
            self.track(w)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)  # (B, L, w_dim)
        if mixing:
            z2 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            ws = self.mix(ws, self.map(z2), self.crossover(len(z), mixing, generator, z.device))
        if truncation is not None:
            ws = self.truncate(ws, truncation)
        return self.synthesize(ws, generator)


class DiscriminatorBlock(nn.Module):
    """StyleGAN2's residual block: a 3x3 conv and a blurred stride-2 3x3 conv, beside a blurred downsample
    and 1x1 conv, summed and scaled by 1/sqrt(2) to keep the variance."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, stride=2, padding=0)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(blur_downsample(x))  # (B, O, H/2, W/2)
        x = leaky_relu(self.conv0(x))
        x = leaky_relu(self.conv1(blur(x, padding=2)))  # (B, I, H + 1, W + 1) -> (B, O, H/2, W/2)
        return (skip + x) * math.sqrt(0.5)


class ResidualDiscriminator(nn.Module):
    """fromRGB, residual blocks down to the bottom size, then minibatch stddev, a conv and two linears."""

    def __init__(self, config: StyleGANConfig, image_channels: int, image_size: int):
        super().__init__()
        stages, bottom = downsample_plan(image_size)
        ch = _channels(config, stages)[::-1]  # full resolution first
        self.from_rgb = EqualConv2d(image_channels, ch[0], 1)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch[i], ch[i + 1]) for i in range(stages)])
        self.mbstd = MinibatchStdDev(config.mbstd_group)
        self.conv = EqualConv2d(ch[-1] + 1, ch[-1], 3)
        self.fc = EqualLinear(ch[-1] * bottom * bottom, ch[-1])
        self.out = EqualLinear(ch[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(leaky_relu(self.from_rgb(x)))  # (B, C, b, b)
        x = leaky_relu(self.conv(self.mbstd(x)))
        return self.out(leaky_relu(self.fc(x.flatten(1))))  # (B, 1)


class StyleGAN(AdversarialModel):
    description = ("StyleGAN2: mapping net, demodulated modulated convs, noise, style mixing, truncation; "
                   "resnet D, lazy R1")
    config_class = StyleGANConfig
    data_kinds = ("image",)
    train_defaults = {**AdversarialModel.train_defaults, "lr": 2e-3, "betas": (0.0, 0.99), "batch_size": 32}
    auto_precision = {"cpu": "fp32"}  # a 28x28 training step measured 12-18% slower in bf16 on a 2-core CPU
    prefers_channels_last = True

    def __init__(self, config: StyleGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.mapping_layers < 1:
            raise ArgumentError("mapping_layers must be at least 1: the mapping network makes w from z")
        c, size = self.data_shape[0], self.data_shape[-1]
        self.generator = StyleGenerator(config, c, size)
        self.discriminator = ResidualDiscriminator(config, c, size)
        self._phase: str | None = None

    @classmethod
    def migrate_config(cls, config):
        config.setdefault("output", "linear")  # runs saved before the setting were trained unbounded
        return config

    def generator_groups(self) -> list[ParamGroup]:
        mapping = [p for p in self.generator.mapping.parameters() if p.requires_grad]
        ids = {id(p) for p in mapping}
        synthesis = [p for p in self.generator.parameters() if p.requires_grad and id(p) not in ids]
        return [ParamGroup(mapping, lr_scale=self.config.mapping_lr_scale, name="mapping"),
                ParamGroup(synthesis, name="synthesis")]

    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator):
        # the base's loss calls generate(); while it does, generate mixes styles and tracks w_avg
        self._phase = phase
        try:
            return super().training_loss(batch, phase, step, generator)
        finally:
            self._phase = None

    def generate(self, z: torch.Tensor, conditions: Batch, generator: torch.Generator | None = None,
                 truncation: float | None = None, **options: Any) -> torch.Tensor:
        if options:
            raise ValueError(f"stylegan has no sampling option {', '.join(sorted(options))}; it takes truncation")
        training = self._phase is not None
        # w_avg follows the w's of the discriminator phase's fakes, as the paper's code does
        return self.generator(z, generator, truncation=truncation,
                              mixing=self.config.style_mixing if training else 0.0,
                              track=self._phase == "discriminator")

    def sample_options(self, truncation: float | None = None, **given: Any) -> dict[str, Any]:
        return {"truncation": 1.0 if truncation is None else float(truncation),
                **{k: v for k, v in given.items() if v is not None}}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"one pass": {}, "truncation 0.7": {"truncation": 0.7}}

    @torch.inference_mode()
    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        return super().sample(n, conditions, generator, **options).clamp(-1.0, 1.0)
