"""Denoising diffusion probabilistic model: a noise-predicting network trained on q(x_t | x_0).

Ho et al. 2020 (DDPM), cosine schedule from Nichol & Dhariwal 2021, Min-SNR-gamma loss weighting from
Hang et al. 2023 (it converges several times faster at equal compute, which matters on a CPU), and
samplers from `genlab.schedulers` (ancestral, DDIM). Optional class conditioning with label dropout so
the same network can be guided later.

For 28x28 and larger images the UNet works on 2x2 pixel patches (space-to-depth), which cuts the
compute of the full-resolution level by 4 at little cost in quality on small images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...batch import LABEL, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import discretized_gaussian_log_likelihood, nats_to_bits_per_dim
from ...nn.unet import MLPDenoiser, UNet
from ...schedulers import SAMPLERS, NoiseSchedule
from ..base import GenerativeModel, LossOutput


@dataclass
class DDPMConfig:
    base_channels: int = 32
    channel_mults: tuple[int, ...] | None = None  # None: chosen from the image size
    num_res_blocks: int = 1
    patch_size: int | None = None  # None: 2 for images of 28 pixels and more, else 1
    dropout: float = 0.0
    mlp_hidden: int = 128  # network width for 2-D point data
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "cosine"
    # None: min_snr for images (fast convergence), uniform for points (whose fine detail lives at low noise)
    loss_weighting: Literal["uniform", "min_snr"] | None = None
    min_snr_gamma: float = 5.0
    label_dropout: float = 0.1  # share of items trained without their label (for classifier-free guidance)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sampling_steps: int = 1000  # for ddim; ddpm always takes num_timesteps
    clip_denoised: bool = True


class PatchUNet(nn.Module):
    """UNet on non-overlapping p x p patches: (B, C, H, W) -> (B, C*p*p, H/p, W/p) -> UNet -> back."""

    def __init__(self, channels: int, image_size: int, patch: int, **unet_kwargs):
        super().__init__()
        self.patch = patch
        self.unet = UNet(channels * patch * patch, image_size // patch, **unet_kwargs)

    def forward(self, x, t, labels=None):
        if self.patch == 1:
            return self.unet(x, t, labels)
        return F.pixel_shuffle(self.unet(F.pixel_unshuffle(x, self.patch), t, labels), self.patch)


class DDPM(GenerativeModel):
    family = "diffusion"
    description = "DDPM: UNet noise predictor, cosine schedule, ancestral and DDIM samplers"
    config_class = DDPMConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "ema_decay": 0.999, "warmup_steps": 200}
    likelihood = "bound"
    accepted_conditions = (LABEL,)
    # a 2-core CPU compiles the UNet for sampling in 15-25 s (warm cache) and saves 15-20% per call at
    # batch 500: it pays for long jobs only (e.g. 10,000 samples with DDIM 100); training never gained
    compile_pays_after = {"sample": {"cpu": 2000}, "train": {}}

    def __init__(self, config: DDPMConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        data_shape = self.data_shape
        cond_classes = self.num_classes if LABEL in self.conditions else 0
        if self.is_image:
            channels, size = data_shape[0], data_shape[-1]
            patch = config.patch_size or (2 if size >= 28 and size % 2 == 0 else 1)
            inner = size // patch
            mults = config.channel_mults or ((1, 2) if inner <= 16 else (1, 2, 2))
            self.config = config = replace(config, patch_size=patch, channel_mults=tuple(mults))
            self.net = PatchUNet(channels, size, patch, base_channels=config.base_channels, channel_mults=tuple(mults),
                                 num_res_blocks=config.num_res_blocks, attention_levels=(len(mults) - 1,),
                                 dropout=config.dropout, num_classes=cond_classes)
        else:
            self.net = MLPDenoiser(data_shape[0], config.mlp_hidden, num_classes=cond_classes)
        if config.loss_weighting is None:
            self.config = config = replace(config, loss_weighting="min_snr" if self.is_image else "uniform")
        self.schedule = NoiseSchedule(config.num_timesteps, config.schedule)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t, labels)

    def training_loss(self, batch, phase, step, generator):
        x, labels = batch[X], batch.get(LABEL)
        b = x.shape[0]
        t = torch.randint(0, self.config.num_timesteps, (b,), device=x.device, generator=generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_t = self.schedule.add_noise(x, noise, t)
        cond = None
        if LABEL in self.conditions and labels is not None:
            drop = torch.rand(b, device=x.device, generator=generator) < self.config.label_dropout
            cond = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        per_item = (self(x_t, t, cond).float() - noise.float()).pow(2).flatten(1).mean(1)  # (B,)
        if self.config.loss_weighting == "min_snr":
            snr = self.schedule.snr(t)
            per_item = per_item * snr.clamp(max=self.config.min_snr_gamma) / snr
        loss = per_item.mean()
        return LossOutput(loss, {"loss": loss.detach()})

    def sample_options(self, **given: Any) -> dict[str, Any]:
        sampler = given.get("sampler") or self.config.sampler
        steps = self.config.num_timesteps if sampler == "ddpm" else self.config.sampling_steps
        return {"sampler": sampler, "steps": steps, **{k: v for k, v in given.items() if v is not None}}

    def network_calls(self, **options: Any) -> int:
        opts = self.sample_options(**options)
        steps = self.config.num_timesteps if opts["sampler"] == "ddpm" else opts["steps"]
        return steps * (2 if opts.get("guidance_scale", 1.0) != 1.0 else 1)

    def preview_options(self) -> dict[str, Any]:
        # DDIM with at most 50 steps: a grid every few hundred steps must not cost a thousand network calls
        return {"sampler": "ddim", "steps": min(50, self.config.num_timesteps)}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {f"ancestral {self.config.num_timesteps} steps": {"sampler": "ddpm"},
                "DDIM 50 steps": {"sampler": "ddim", "steps": min(50, self.config.num_timesteps)},
                "DDIM 20 steps": {"sampler": "ddim", "steps": min(20, self.config.num_timesteps)}}

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, sampler: str | None = None, steps: int | None = None,
               eta: float = 0.0, guidance_scale: float = 1.0, progress=None, **_: Any) -> torch.Tensor:
        labels = self.check_conditions(n, conditions).get(LABEL)
        sampler = sampler or self.config.sampler
        if sampler not in SAMPLERS:
            raise ArgumentError(f"unknown sampler '{sampler}'; choose from {sorted(SAMPLERS)}")
        denoise = self._denoiser(labels, guidance_scale)
        p = next(self.parameters())
        kwargs = dict(generator=generator, device=p.device, dtype=p.dtype,
                      clip=1.0 if (self.config.clip_denoised and self.is_image) else None, progress=progress)
        if sampler == "ddim":
            kwargs.update(steps=self.config.sampling_steps if steps is None else steps, eta=eta)
        elif steps not in (None, self.config.num_timesteps):
            raise ArgumentError(f"the ddpm sampler always takes {self.config.num_timesteps} steps; use --sampler ddim --steps {steps}")
        return SAMPLERS[sampler](denoise, self.schedule, (n, *self.data_shape), **kwargs)

    def _denoiser(self, labels, guidance_scale):
        if labels is None or guidance_scale == 1.0:
            return lambda x, t: self(x, t, labels).float()  # the sampler's maths stay float32 under autocast
        null = torch.full_like(labels, self.num_classes)

        def guided(x, t):  # classifier-free guidance: one batched call for both predictions
            eps_c, eps_u = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).float().chunk(2)
            return eps_u + guidance_scale * (eps_c - eps_u)

        return guided

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None, timesteps: int = 100) -> torch.Tensor:
        """Variational bound (Ho et al. 2020, eq. 5) with a discretized Gaussian decoder.

        The sum over the T-1 KL terms is estimated from `timesteps` stratified timesteps (unbiased);
        pass timesteps=num_timesteps for the full sum.
        """
        if not self.is_image:
            raise TypeError("bits/dim is defined for 8-bit images, not for point data")
        x = batch[X]
        sched, T = self.schedule, self.config.num_timesteps
        ab = sched.alpha_bars.to(x.device)
        betas = sched.betas.to(x.device)
        x = x.float()
        dims = x[0].numel()
        cond = batch.get(LABEL) if LABEL in self.conditions else None
        b = x.shape[0]
        # prior term KL(q(x_T | x_0) || N(0, I))
        abT = ab[-1]
        nll = 0.5 * (abT * x.pow(2) + (1 - abT) - 1 - torch.log(1 - abT)).flatten(1).sum(1)
        # decoder term at t = 0
        nll = nll + self._decoder_nll(x, cond, generator)
        # KL terms for t = 1..T-1, stratified Monte Carlo
        k = min(timesteps, T - 1)
        edges = torch.linspace(1, T, k + 1).long()
        for i in range(k):
            lo, hi = int(edges[i]), int(edges[i + 1])
            t = torch.randint(lo, max(hi, lo + 1), (b,), generator=generator, device=x.device)
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x_t = sched.add_noise(x, noise, t)
            eps = self(x_t, t, cond).float()
            a, a_prev, beta = [v.view(-1, *([1] * (x.dim() - 1))) for v in (ab[t], ab[t - 1], betas[t])]
            x0_hat = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
            c0 = beta * a_prev.sqrt() / (1 - a)
            var = beta * (1 - a_prev) / (1 - a)
            kl = (c0 * (x - x0_hat)).pow(2) / (2 * var)
            nll = nll + kl.flatten(1).sum(1) * (hi - lo)
        return nats_to_bits_per_dim(nll.double(), dims).float()

    def _decoder_nll(self, x, cond, generator):
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x_t = self.schedule.add_noise(x, noise, t)
        a = float(self.schedule.alpha_bars[0])
        x0_hat = (x_t - (1 - a) ** 0.5 * self(x_t, t, cond).float()) / a**0.5
        log_scale = torch.full_like(x0_hat, 0.5 * float(torch.log(self.schedule.betas[0])))
        return -discretized_gaussian_log_likelihood(x, x0_hat, log_scale).flatten(1).sum(1)
