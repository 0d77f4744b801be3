"""Latent diffusion: a DDPM in the spatial latent space of a trained autoencoder run.

Rombach et al. 2022 (Stable Diffusion's recipe): the autoencoder run named by `--set autoencoder=RUN`
is loaded frozen (its checkpoint and SHA-256 are recorded; a changed run is refused), its encoder's
latents are normalised per channel with the statistics it tracked, and a DDPM with every sampler,
guidance, captions and editing of `DDPM` learns them. For 28x28 mnist and the default autoencoder the
latent is 4x7x7: 196 numbers instead of 784, and a UNet that never runs at 28x28. Samples are decoded
by the autoencoder; inpainting keeps the known pixels exactly (a latent pixel counts as known when all
the pixels it covers are) and img2img starts from the encoded input.

The autoencoder can be any genlab run whose model offers `latent_shape`, `encode_latent` and
`decode_latent` (`models/vae/autoencoder.py` is the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import LOW_RES, MASK, SOURCE, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from .ddpm import DDPM, DDPMConfig


@dataclass
class LatentDiffusionConfig(DDPMConfig):
    autoencoder: str = ""  # the autoencoder run (--set autoencoder=RUN)
    # the latent the autoencoder gives (checked when the run is attached): channels and downsampling factor
    latent_channels: int = 4
    latent_factor: int = 4
    clip_denoised: bool = False  # latents have no fixed range
    sampler: str = "dpm++"
    # a 7x7 latent's UNet has one level: attending only in the middle would drop all of its other attention,
    # and the image models' measurement that the middle suffices does not carry over
    attention: Literal["middle", "lowest-level"] = "lowest-level"


class LatentDiffusion(DDPM):
    description = "latent diffusion: a DDPM over a trained autoencoder run's spatial latents (--set autoencoder=RUN)"
    config_class = LatentDiffusionConfig
    references = ("autoencoder",)
    data_kinds = ("image",)
    likelihood = "none"  # the DDPM's bound would be in latent space, not on the pixels
    accepted_conditions = tuple(c for c in DDPM.accepted_conditions if c != LOW_RES)

    def __init__(self, config: LatentDiffusionConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        if spec.kind != "image" or spec.shape[-1] % config.latent_factor or spec.shape[-2] % config.latent_factor:
            raise ArgumentError(f"latent diffusion needs images whose sides divide by latent_factor={config.latent_factor}; "
                                f"this data is {spec.kind} {tuple(spec.shape)}")
        super().__init__(config, spec, conditions)

    @property
    def diffusion_shape(self) -> tuple[int, ...]:
        h, w = self.data_shape[-2:]
        return (self.config.latent_channels, h // self.config.latent_factor, w // self.config.latent_factor)

    def attach_reference(self, name: str, model: nn.Module) -> None:
        needed = ("latent_shape", "encode_latent", "decode_latent")
        if not all(hasattr(model, a) for a in needed):
            raise ArgumentError(f"the '{name}' run's model ({type(model).__name__}) has no spatial latent "
                                f"({', '.join(needed)}); train one with `genlab train autoencoder`")
        if tuple(model.latent_shape) != self.diffusion_shape:
            raise ArgumentError(f"the '{name}' run's latents are {tuple(model.latent_shape)}, this model expects "
                                f"{self.diffusion_shape}: set latent_channels and latent_factor to match"
                                + (" (a flat latent: train the VAE with --set latent=spatial)"
                                   if len(model.latent_shape) == 1 else ""))
        super().attach_reference(name, model)

    # ------------------------------------------------------------------ to and from the latent space
    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        ae = self.referenced("autoencoder")
        mean = getattr(ae, "latent_mean", torch.zeros(self.config.latent_channels, device=self.device))
        std = getattr(ae, "latent_std", torch.ones(self.config.latent_channels, device=self.device))
        return mean.view(1, -1, 1, 1).float(), std.view(1, -1, 1, 1).float().clamp(min=1e-4)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised latents (B, *diffusion_shape), float32."""
        mean, std = self._stats()
        return (self.referenced("autoencoder").encode_latent(x).float() - mean) / std

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats()
        return self.referenced("autoencoder").decode_latent(z.float() * std + mean).float()

    def training_loss(self, batch, phase, step, generator):
        return super().training_loss({**batch, X: self.encode(batch[X])}, phase, step, generator)

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options: Any) -> torch.Tensor:
        if options.get("classifier") is not None:
            raise ArgumentError("classifier guidance needs a classifier of what the diffusion runs over: a latent "
                                "diffusion run's latents are not images; use --guidance with a --condition label run")
        conditions = self.check_conditions(n, conditions)
        source, mask = conditions.get(SOURCE), conditions.get(MASK)
        latent = dict(conditions)
        if source is not None:
            latent[SOURCE] = self.encode(source)
        if mask is not None:
            covered = F.avg_pool2d(mask.float().reshape(n, 1, *self.data_shape[1:]), self.config.latent_factor)
            latent[MASK] = covered > 1 - 1e-6
        x = self.decode(super().sample(n, latent, generator, **options))
        if source is not None and mask is not None:  # the known pixels exactly, not their reconstruction
            x = torch.where(mask.reshape(n, 1, *self.data_shape[1:]), source.float(), x)
        return x

    def bits_per_dim(self, batch, generator=None, timesteps: int = 100) -> torch.Tensor:
        raise TypeError("LatentDiffusion has no likelihood (likelihood='none'): its bound would be on latents")
