"""KL-regularised autoencoder with a spatial latent: the first stage of latent diffusion.

Rombach et al. 2022 (latent diffusion, "KL-reg., f=4"): a fully convolutional encoder maps an image to
a Gaussian posterior over a (c, H/f, W/f) latent, the decoder maps a latent back, and a KL term to
N(0, I) weighted far below the reconstruction keeps the latent space smooth without making it blurry
the way a full VAE's KL does. Reconstruction is L1 (sharper than L2 on digits). The encoder's mean is
the latent a diffusion model works on; the per-channel mean and spread of those latents are tracked
during training (`latent_mean`, `latent_std`) so a latent diffusion run can normalise them.

Any genlab model with a spatial latent offers the same three names to latent diffusion:
`latent_shape`, `encode_latent(x) -> z`, `decode_latent(z) -> x`.
Sampling this model alone draws latents from a Gaussian with the tracked statistics and decodes them:
a baseline, much worse than diffusion in its latent space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...batch import X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import SpatialDecoder, SpatialEncoder
from ..base import GenerativeModel, LossOutput


@dataclass
class AutoencoderConfig:
    # 16, not 32: in 3 of latent diffusion's 10 mnist minutes, 16 took 2,100 steps to 32's 566 (L1 0.031), and
    # the latent model on top scored FID 3.57 at 608 samples/s against 5.53 at 316 (benchmarks/latent_diffusion.py)
    base_channels: int = 16
    latent_channels: int = 4
    downsample: int = 2  # halvings: 28x28 -> 7x7 (f = 4)
    kl_weight: float = 1e-4  # per latent dimension, against the per-pixel L1
    stats_momentum: float = 0.01  # running latent statistics: weight of each batch


class Autoencoder(GenerativeModel):
    family = "vae"
    description = "KL-regularised autoencoder with a spatial latent (latent diffusion's first stage)"
    config_class = AutoencoderConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "ema_decay": 0.999, "warmup_steps": 100}
    data_kinds = ("image",)

    def __init__(self, config: AutoencoderConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c, h, w = self.data_shape
        f = 2**config.downsample
        if h % f or w % f:
            raise ArgumentError(f"images of {h}x{w} cannot be halved {config.downsample} times; "
                                f"use --set downsample=1 or --image-size a multiple of {f}")
        self.encoder = SpatialEncoder(c, config.base_channels, 2 * config.latent_channels, config.downsample)
        self.decoder = SpatialDecoder(config.latent_channels, config.base_channels, c, config.downsample)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c, h, w = self.data_shape
        f = 2**self.config.downsample
        return (self.config.latent_channels, h // f, w // f)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x), each (B, *latent_shape), float32."""
        mean, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).float().clamp(-1, 1)

    def training_loss(self, batch, phase, step, generator):
        x = batch[X].float()
        mean, logvar = self.posterior(x)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        recon = self.decoder(mean + (0.5 * logvar).exp() * noise).float()
        reconstruction = (recon - x).abs().mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = reconstruction + self.config.kl_weight * kl * mean[0].numel() / x[0].numel()
        if self.training:  # the statistics latent diffusion normalises with
            with torch.no_grad():
                m = self.config.stats_momentum
                self.latent_mean.lerp_(mean.mean((0, 2, 3)), m)
                self.latent_std.lerp_(mean.std((0, 2, 3)), m)
        return LossOutput(loss, {"loss": loss.detach(), "l1": reconstruction.detach(), "kl": kl.detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options):
        self.check_conditions(n, conditions)
        z = torch.randn((n, *self.latent_shape), generator=generator, device=self.device)
        z = z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)
        return self.decode_latent(z)
