"""SRGAN (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network"): an SRResNet generator upscales a low-resolution image `scale` times (x2 or x4:
7x7 -> 28x28 on mnist), first trained on the pixel loss alone, then against a discriminator.

As in the paper:
- generator (SRResNet, Fig. 4): 9x9 conv + PReLU; residual blocks of conv-BN-PReLU-conv-BN with an
  identity skip; conv-BN and a global skip over all the blocks; one sub-pixel convolution stage per x2
  (conv to 4x the channels, pixel shuffle, PReLU; Shi et al. 2016); a conv out, tanh into [-1, 1].
  Sized for a CPU: 32 channels, 8 blocks and a 3x3 output conv instead of 64, 16 and 9x9; batch 16 as in
  the paper;
- discriminator (Fig. 4): 3x3 convs with LeakyReLU(0.2), batch norm after all but the first, alternately
  stride 1 and stride 2 with the channels doubling at each stride-2 stage, then dense, LeakyReLU, dense.
  Here 32 channels and as many stride-2 stages as the image halves cleanly (`convnets.downsample_plan`);
- training: the SRResNet MSE stage first (phase "pretrain", the paper's initialisation of the GAN, until
  `pretrain_steps`), then the adversarial phases; the generator's perceptual loss is a content loss plus
  1e-3 times the adversarial loss -log D(G(I_LR)) (the non-saturating loss); Adam with betas (0.9, 0.999).

Where this departs from the paper:
- content loss. The paper's is the MSE between VGG19 features (SRGAN-VGG54); no ImageNet network is
  available offline, and the one network genlab ships per data set (the classifier of eval/features.py)
  is what FID and coverage measure with: training against it would flatter the evaluation. So the
  feature loss matches the discriminator's intermediate features on the upscaled and the true image
  (feature matching, Salimans et al. 2016; as a perceptual loss in pix2pixHD, Wang et al. 2018): the
  one network here that has learned what features of this data tell real from generated. Those
  features move as D trains, so the pixel MSE stays in the content loss as an anchor to the input
  (the paper's SRGAN-MSE keeps it alone): content = pixel_weight * MSE + feature_weight * feature MSE;
- low-resolution images are the high-resolution ones area-averaged `scale` times (the paper takes
  bicubic kernels), as the diffusion upscaler and benchmarks/upscale.py do, and lie in [-1, 1] too.

The low-resolution input is a sampling input: every run takes it (no --condition low_res needed), from
batch[LOW_RES] when the data gives one, else from its own images shrunk. `genlab upscale RUN --input
IMGS` upscales; previews and `genlab eval` upscale the held-out images shrunk. Without an input,
`sample(n)` upscales random low-resolution noise drawn from `generator` (the contract's unconditional
draw): it shows what the generator does, not images of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import LOW_RES, X, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import downsample_plan
from ...train.optim import Phase
from ..base import LossOutput
from .adversarial import AdversarialConfig, AdversarialModel
from .losses import generator_loss


@dataclass
class SRGANConfig(AdversarialConfig):
    scale: int = 4  # upscaling factor, a power of 2: 7x7 -> 28x28 on mnist (2: 14x14 -> 28x28)
    channels: int = 32  # generator width (64 in the paper)
    blocks: int = 8  # residual blocks (16 in the paper)
    # the last conv's kernel: 9 in the paper, but at full resolution a 9x9 doubles the generator's training
    # time on a CPU (28x28, batch 16: 0.11 s -> 0.05 s per forward and backward with 3, measured)
    output_kernel: int = 3
    discriminator_channels: int = 32  # first width of D, doubling per stride-2 stage (64 in the paper)
    discriminator_hidden: int = 256  # D's dense layer (1024 in the paper)
    # the SRResNet MSE stage before the adversarial phases (1e6 steps in the paper, then 2e5 adversarial):
    # 500 leaves a 3-minute CPU run on mnist x4 as long again against the discriminator
    pretrain_steps: int = 500
    pixel_weight: float = 1.0  # MSE in the adversarial stage's content loss
    feature_weight: float = 1.0  # MSE between D's intermediate features (in place of VGG's)
    adversarial_weight: float = 1e-3  # the paper's weight of -log D(G(I_LR))


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN plus the input (SRResNet's block, after He et al. 2016; Gross & Wilber 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.PReLU(channels), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """(B, C, h, w) -> (B, C, h * scale, w * scale) in [-1, 1]."""

    def __init__(self, image_channels: int, scale: int, channels: int, blocks: int, output_kernel: int = 9):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(image_channels, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):  # sub-pixel convolution: (B, 4n, h, w) -> (B, n, 2h, 2w)
            up += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(channels)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(channels, image_channels, output_kernel, padding=output_kernel // 2)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        h = self.head(low)  # (B, n, h, w)
        h = h + self.body(h)  # the global skip: the blocks learn a residual over the first features
        return torch.tanh(self.tail(self.up(h)))  # (B, C, H, W)


class SRDiscriminator(nn.Module):
    """(B, C, H, W) -> (B, 1) raw score; with `features=True` also the activations after each stride-2 stage."""

    def __init__(self, image_channels: int, image_size: int, channels: int, hidden: int):
        super().__init__()
        stages = max(1, downsample_plan(image_size)[0])  # 28 -> 14 -> 7, 8 -> 4

        def conv(c_in: int, c_out: int, stride: int, norm: bool = True) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1), *([nn.BatchNorm2d(c_out)] if norm else []), nn.LeakyReLU(0.2)]

        self.stages = nn.ModuleList()
        c_in, c = image_channels, channels
        for i in range(stages):  # (stride 1, stride 2) pairs; the paper's first conv has no batch norm
            self.stages.append(nn.Sequential(*conv(c_in, c, 1, norm=i > 0), *conv(c, c, 2)))
            c_in, c = c, c * 2
        side = image_size
        for _ in range(stages):
            side = (side + 1) // 2  # 3x3, stride 2, padding 1: ceil(side / 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, features: bool = False):
        feats = []
        for stage in self.stages:
            x = stage(x)  # (B, c, H / 2^i, W / 2^i)
            feats.append(x)
        logits = self.head(x)  # (B, 1)
        return (logits, feats) if features else logits


class SRGAN(AdversarialModel):
    description = "SRGAN: SRResNet upscaler (x2/x4) pre-trained on MSE, then adversarial + D-feature content loss"
    config_class = SRGANConfig
    data_kinds = ("image",)
    sampling_inputs = (LOW_RES,)  # every run upscales: no --condition low_res to remember
    # the paper's Adam betas (0.9, 0.999) and batch 16. Its lr of 1e-4 is for a million steps; in minutes
    # 5e-4 learns faster (300 MSE steps, mnist x4: PSNR 17.4 dB at 1e-4, 18.6 at 5e-4, 18.3 at 1e-3; bicubic
    # 14.8). No scoring or collapse watch during training: both sample without inputs, and an upscaler is
    # judged on held-out ones (benchmarks/upscale.py: PSNR, SSIM)
    train_defaults = {**AdversarialModel.train_defaults, "lr": 5e-4, "betas": (0.9, 0.999), "batch_size": 16,
                      "eval_every": 0, "collapse_every": 0}
    # one output per input: the spread of its samples is its inputs', there is no mode to collapse
    watch_collapse = False
    prefers_channels_last = True

    def __init__(self, config: SRGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        s = config.scale
        if s < 2 or s & (s - 1):
            raise ArgumentError(f"--set scale={s}: SRGAN upscales by powers of 2 (2, 4, 8), one pixel-shuffle stage each")
        c, size = self.data_shape[0], self.data_shape[-1]
        if size % s or self.data_shape[-2] % s:
            raise ArgumentError(f"--set scale={s} needs images whose sides divide by {s}; this data is {self.data_shape}")
        if config.pretrain_steps < 0:
            raise ArgumentError(f"--set pretrain_steps={config.pretrain_steps}: must be at least 0")
        if config.output_kernel < 1 or config.output_kernel % 2 == 0:
            raise ArgumentError(f"--set output_kernel={config.output_kernel}: an odd kernel size keeps the image centred")
        self.generator = SRResNet(c, s, config.channels, config.blocks, config.output_kernel)
        self.discriminator = SRDiscriminator(c, size, config.discriminator_channels, config.discriminator_hidden)

    @property
    def low_res_size(self) -> int:
        return self.data_shape[-1] // self.config.scale

    def shrink(self, x: torch.Tensor) -> torch.Tensor:
        """High-resolution images -> the low-resolution ones this run learns to undo (area average)."""
        return F.avg_pool2d(x, self.config.scale)

    # ------------------------------------------------------------------ the generator's input
    def latent(self, n: int, generator: torch.Generator | None, like: torch.Tensor | None = None) -> torch.Tensor:
        """Random low-resolution images (n, C, h, w) uniform in [-1, 1]: the input when none is given."""
        ref = like if like is not None else next(self.generator.parameters())
        shape = (n, self.data_shape[0], self.low_res_size, self.low_res_size)
        return torch.rand(shape, generator=generator, device=ref.device, dtype=ref.dtype) * 2 - 1

    def generate(self, z, conditions, generator=None, **options):
        low = conditions.get(LOW_RES, z)
        if low.shape[-1] != self.low_res_size or low.shape[-2] != self.low_res_size:
            low = F.interpolate(low.float(), size=(self.low_res_size,) * 2, mode="area")
        return self.generator(low.to(z.dtype))

    def evaluation_conditions(self, n: int, real=None, **options):
        """The held-out images shrunk (cycled to n): an upscaler is judged on real inputs."""
        if real is None or real.get(X) is None:
            raise ArgumentError("an SRGAN run is evaluated on real low-resolution inputs and none were given: "
                                "upscale with `genlab upscale RUN --input ...`, score with benchmarks/upscale.py")
        images = real[X].float()
        return {LOW_RES: self.shrink(images[torch.arange(n) % len(images)]).cpu()}

    # ------------------------------------------------------------------ training
    def phases(self) -> list[Phase]:
        start = self.config.pretrain_steps
        adversarial = [replace(p, from_step=max(p.from_step, start)) for p in super().phases()]
        pretrain = [Phase("pretrain", optimizer="generator", until_step=start)] if start else []
        return pretrain + adversarial

    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        if phase not in ("pretrain", "generator"):  # the shared D loss and penalties, on this run's upscaled inputs
            return super().training_loss(batch, phase, step, generator)
        cfg, x = self.config, batch[X]
        conditions = self.training_conditions(batch)
        low = conditions[LOW_RES]  # (B, C, h, w)
        sr = self.generate(low, conditions)  # (B, C, H, W)
        pixel = F.mse_loss(sr.float(), x.float())
        if phase == "pretrain":  # SRResNet: the MSE alone
            return LossOutput(pixel, {"mse": pixel.detach()})
        fake_logits, fake_feats = self.discriminator(sr, features=True)
        with torch.no_grad():
            _, real_feats = self.discriminator(x, features=True)
        feature = torch.stack([F.mse_loss(f.float(), r.float()) for f, r in zip(fake_feats, real_feats)]).mean()
        if self._augment:  # D judges augmented items; features are compared on the images themselves
            fake_logits = self.discriminate(self.augment(sr, generator), conditions)
        adversarial = generator_loss(cfg.loss, fake_logits)
        loss = cfg.pixel_weight * pixel + cfg.feature_weight * feature + cfg.adversarial_weight * adversarial
        return LossOutput(loss, {"g_loss": loss.detach(), "mse": pixel.detach(), "feature": feature.detach(),
                                 "g_adv": adversarial.detach()})

    def training_conditions(self, batch: Batch) -> Batch:
        low = batch.get(LOW_RES)
        return {LOW_RES: low if low is not None else self.shrink(batch[X])}
