"""Denoising diffusion probabilistic model: a network trained on q(x_t | x_0) to predict the noise,
the clean image or the velocity.

Ho et al. 2020 (DDPM, epsilon prediction), v prediction from Salimans & Ho 2022, cosine schedule from
Nichol & Dhariwal 2021, Min-SNR-gamma loss weighting from Hang et al. 2023 (it converges several times
faster at equal compute, which matters on a CPU). Sampling goes through `genlab.schedulers`: ancestral
and DDIM on the discrete timesteps, and Euler, Heun and DPM-Solver++(2M) on Karras sigmas (Karras et al.
2022), the network reached through one conversion of its prediction. Optional class conditioning with
label dropout so the same network can be guided (classifier-free guidance, Ho & Salimans 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from ...batch import X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.distributions import discretized_gaussian_log_likelihood, nats_to_bits_per_dim
from ...schedulers import SAMPLERS, NoiseSchedule
from ...schedulers.ode import ODE_SAMPLERS, karras_sigmas
from ...schedulers.prediction import min_snr_weight, to_x0_and_eps, training_target
from ..base import LossOutput
from .base import DiffusionModel, DiffusionNetConfig

# steps where each sampler reaches its best FID per network call on the 10-minute mnist model
# (benchmarks/samplers.py: DPM++ 10 steps FID 1.96, Heun 10 steps 2.04 in 19 calls, DDIM 50 steps 2.41)
DEFAULT_STEPS = {"ddim": 50, "euler": 20, "heun": 10, "dpm++": 10}


@dataclass
class DDPMConfig(DiffusionNetConfig):
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "cosine"
    # None: min_snr for images (fast convergence), uniform for points (whose fine detail lives at low noise)
    loss_weighting: Literal["uniform", "min_snr"] | None = None
    min_snr_gamma: float = 5.0
    prediction: Literal["epsilon", "v", "x0"] = "epsilon"
    # DPM-Solver++(2M), 10 network calls: a lower FID than DDIM with 50 (see DEFAULT_STEPS); the 1000-step
    # ancestral chain stays one --sampler ddpm away
    sampler: Literal["ddpm", "ddim", "euler", "heun", "dpm++"] = "dpm++"
    # steps of every sampler but ddpm (which always takes num_timesteps); None: the sampler's own default
    sampling_steps: int | None = None
    clip_denoised: bool = True
    # the ODE samplers start at this noise level (EDM's 80: above it an image is pure noise, and the
    # cosine schedule's last sigma, about 2e4, would spend half the Karras steps there)
    sigma_max: float = 80.0
    karras_rho: float = 7.0


class DDPM(DiffusionModel):
    description = "DDPM: UNet denoiser (epsilon, v or x0), cosine schedule, ancestral, DDIM, Euler, Heun, DPM++"
    config_class = DDPMConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "ema_decay": 0.999, "warmup_steps": 200}
    likelihood = "bound"
    samplers = (*SAMPLERS, *ODE_SAMPLERS)

    def __init__(self, config: DDPMConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        config = self.config
        if config.loss_weighting is None:
            self.config = config = replace(config, loss_weighting="min_snr" if self.is_image else "uniform")
        self.schedule = NoiseSchedule(config.num_timesteps, config.schedule)

    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        b = x.shape[0]
        t = torch.randint(0, self.config.num_timesteps, (b,), device=x.device, generator=generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_t = self.schedule.add_noise(x, noise, t)
        a, s = self.schedule.scales(t, x.dim())
        target = training_target(self.config.prediction, x.float(), noise.float(), a, s)
        per_item = (self(x_t, t, **self.training_conditions(batch, generator)).float() - target).pow(2).flatten(1).mean(1)  # (B,)
        if self.config.loss_weighting == "min_snr":
            per_item = per_item * min_snr_weight(self.config.prediction, self.schedule.snr(t), self.config.min_snr_gamma)
        loss = per_item.mean()
        return LossOutput(loss, {"loss": loss.detach()})

    def default_steps(self, sampler: str) -> int:
        if sampler == "ddpm":
            return self.config.num_timesteps
        if self.config.sampling_steps is not None:
            return self.config.sampling_steps
        return min(DEFAULT_STEPS.get(sampler, 50), self.config.num_timesteps)

    def preview_options(self) -> dict[str, Any]:
        # the default sampler, but never the thousand-call chain: a grid every few hundred steps must be cheap
        return self.sample_options() if self.config.sampler != "ddpm" else {"sampler": "dpm++", "steps": 10}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {f"ancestral {self.config.num_timesteps} steps": {"sampler": "ddpm"},
                "DDIM 50 steps": {"sampler": "ddim", "steps": min(50, self.config.num_timesteps)},
                "DDIM 20 steps": {"sampler": "ddim", "steps": min(20, self.config.num_timesteps)},
                "DPM++ 10 steps": {"sampler": "dpm++", "steps": 10}}

    def noise_levels(self, steps: int, strength: float = 1.0) -> list[float]:
        # Karras sigmas between the schedule's first noise level and its level at `strength`, capped
        sigma_top = float(self.schedule.sigmas[round(strength * (self.config.num_timesteps - 1))])
        return karras_sigmas(float(self.schedule.sigmas[0]), min(self.config.sigma_max, sigma_top), steps,
                             self.config.karras_rho)

    def discrete_sample(self, n, output, sampler, steps, clip, generator, progress, eta: float = 0.0, **_):
        if sampler == "ddpm" and steps != self.config.num_timesteps:
            raise ArgumentError(f"the ddpm sampler always takes {self.config.num_timesteps} steps; use --sampler ddim --steps {steps}")
        kwargs = dict(steps=steps, eta=eta) if sampler == "ddim" else {}
        return SAMPLERS[sampler](self._noise_prediction(output), self.schedule, (n, *self.diffusion_shape), clip=clip,
                                 generator=generator, device=self.device, dtype=self.dtype, progress=progress, **kwargs)

    def _noise_prediction(self, output):
        """(x_t, t) -> predicted noise, whatever the network predicts: what ancestral and DDIM take."""
        if self.config.prediction == "epsilon":
            return output

        def eps(x, t):
            a, s = self.schedule.scales(t, x.dim())
            return to_x0_and_eps(self.config.prediction, x, output(x, t), a, s)[1]

        return eps

    def denoiser(self, output, n, clip):
        t_batch = torch.empty(n, device=self.device)

        def denoised(x, sigma):
            a = (1 + sigma**2) ** -0.5  # x_t = a x on the variance-preserving path, with noise scale sigma a
            x_t = a * x
            out = output(x_t, t_batch.fill_(self.schedule.timestep_of(sigma)))  # a fractional timestep
            x0 = to_x0_and_eps(self.config.prediction, x_t, out, a, sigma * a)[0]
            return x0.clamp(-clip, clip) if clip else x0

        return denoised

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
        cond = self._guidance_inputs(batch)[0]
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
            a, a_prev, beta = [v.view(-1, *([1] * (x.dim() - 1))) for v in (ab[t], ab[t - 1], betas[t])]
            x0_hat = to_x0_and_eps(self.config.prediction, x_t, self(x_t, t, **cond).float(), a.sqrt(), (1 - a).sqrt())[0]
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
        x0_hat = to_x0_and_eps(self.config.prediction, x_t, self(x_t, t, **cond).float(), a**0.5, (1 - a) ** 0.5)[0]
        log_scale = torch.full_like(x0_hat, 0.5 * float(torch.log(self.schedule.betas[0])))
        return -discretized_gaussian_log_likelihood(x, x0_hat, log_scale).flatten(1).sum(1)
