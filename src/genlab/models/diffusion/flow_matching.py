"""Flow matching on straight paths between data and noise (rectified flow), with velocity prediction.

Lipman et al. 2023 (flow matching), Liu et al. 2023 (rectified flow): x_t = (1 - t) x0 + t eps for t in
[0, 1], and the network learns the constant velocity v = eps - x0 of each path by regression. Training
times are drawn logit-normal (Esser et al. 2024, the Stable Diffusion 3 recipe), which spends the
network's capacity on the middle of the path where the velocity is hardest to guess. Sampling
integrates dx/dt = v(x, t) from noise at t = 1 to data at t = 0 with the ODE samplers of
`genlab.schedulers.ode` (Euler, Heun, DPM-Solver++), which the model reaches through one conversion:
sigma = t / (1 - t), x = x_t / (1 - t), x0 = x_t - t v. Same UNet as the DDPM, same class conditioning
and classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from ...batch import X
from ...schedulers.ode import flow_sigmas
from ..base import LossOutput
from .base import DiffusionModel, DiffusionNetConfig

# the network sees t in [0, 1000]: the sinusoidal time features then have the DDPM UNet's frequencies
TIME_SCALE = 1000.0
# steps where each sampler does best per network call on the 10-minute mnist run (benchmarks/samplers.py):
# Heun 1.68 FID at 5 steps and 1.63 at 10, DPM++ 1.85 at 10, Euler 2.15 at 20
DEFAULT_STEPS = {"euler": 20, "heun": 5, "dpm++": 10}


@dataclass
class FlowMatchingConfig(DiffusionNetConfig):
    time_sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # Heun, 5 steps (9 calls): on the 10-minute mnist model FID 1.68, against 1.85 for DPM++ with 10 and
    # 2.63 for Euler with 10 (benchmarks/samplers.py, 2,000 samples)
    sampler: Literal["euler", "heun", "dpm++"] = "heun"
    # steps of every sampler; None: each sampler's own default (DEFAULT_STEPS)
    sampling_steps: int | None = None
    time_shift: float = 1.0  # > 1 spends more sampling steps at high noise (Esser et al. 2024)
    clip_denoised: bool = True


class FlowMatching(DiffusionModel):
    description = "flow matching / rectified flow: UNet velocity field, straight paths, Euler/Heun/DPM++ in few steps"
    config_class = FlowMatchingConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "ema_decay": 0.999, "warmup_steps": 200}
    ode_path = "flow"  # Heun steps x_t against t, where the paths are straight, not x against sigma

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * TIME_SCALE  # the model's forward takes t in [0, 1] and predicts the velocity

    def _times(self, b: int, device, generator) -> torch.Tensor:
        if self.config.time_sampling == "uniform":
            return torch.rand(b, device=device, generator=generator)
        normal = torch.randn(b, device=device, generator=generator)
        return torch.sigmoid(self.config.logit_mean + self.config.logit_std * normal)

    def training_loss(self, batch, phase, step, generator):
        x0 = batch[X].float()
        t = self._times(x0.shape[0], x0.device, generator)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        t_ = t.view(-1, *([1] * (x0.dim() - 1)))
        x_t = (1 - t_) * x0 + t_ * noise  # (B, *item)
        loss = (self(x_t, t, **self.training_conditions(batch, generator)).float() - (noise - x0)).pow(2).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    def default_steps(self, sampler: str) -> int:
        return self.config.sampling_steps if self.config.sampling_steps is not None else DEFAULT_STEPS[sampler]

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        return {"Euler 20 steps": {"sampler": "euler", "steps": 20},
                "Heun 5 steps": {"sampler": "heun", "steps": 5},
                "DPM++ 10 steps": {"sampler": "dpm++", "steps": 10}}

    def noise_levels(self, steps: int, strength: float = 1.0) -> list[float]:
        # even steps in t from just below 1 (sigma = 999: pure noise) or from t = strength
        return flow_sigmas(steps, t_max=min(0.999, strength), shift=self.config.time_shift)

    def denoiser(self, velocity, n, clip):
        """(x = x0 + sigma eps, sigma) -> x0 estimate, from the velocity at t = sigma / (1 + sigma)."""
        t_batch = torch.empty(n, device=self.device)

        def denoised(x, sigma):
            t = sigma / (1 + sigma)
            x_t = (1 - t) * x
            x0 = x_t - t * velocity(x_t, t_batch.fill_(t))
            return x0.clamp(-clip, clip) if clip else x0

        return denoised
