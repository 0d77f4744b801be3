"""Discrete-time variance schedules (Ho et al. 2020; cosine: Nichol & Dhariwal 2021; vp: the variance-
preserving SDE of Song et al. 2021 cut into a few steps, as denoising diffusion GANs use it)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch


class NoiseSchedule:
    """alpha_bar_t for t = 0..T-1, kept in float64 for the maths and handed out as float32."""

    def __init__(self, num_steps: int = 1000, kind: Literal["linear", "cosine", "vp"] = "cosine",
                 beta_min: float = 0.1, beta_max: float = 20.0):
        self.num_steps = num_steps
        self.kind = kind
        if kind == "linear":
            # the DDPM paper's 1e-4..0.02 over 1000 steps, rescaled so other step counts keep the same curve;
            # below 50 steps the rescaled betas would pass 1, so they are capped like the cosine ones
            scale = 1000 / num_steps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64).clamp(max=0.999)
        elif kind == "cosine":
            s = 0.008
            f = torch.cos((torch.arange(num_steps + 1, dtype=torch.float64) / num_steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        elif kind == "vp":
            # alpha_bar(s) = exp(-beta_min s - (beta_max - beta_min) s^2 / 2) on s in [1e-3, 1], sampled at
            # num_steps + 1 even points (Xiao et al. 2022's schedule; s = 1e-3 stands for the data): every
            # step count, however few, ends in near-pure noise (alpha_bar 4e-5 at s = 1)
            s = 1e-3 + (1 - 1e-3) * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
            log_ab = -beta_min * s - 0.5 * (beta_max - beta_min) * s ** 2
            betas = 1 - (log_ab[1:] - log_ab[:-1]).exp()
        else:
            raise ValueError(f"unknown schedule '{kind}': use 'linear', 'cosine' or 'vp'")
        self.betas = betas
        self.alpha_bars = torch.cumprod(1 - betas, dim=0)
        # q(x_t | x_0)'s coefficients, rounded to float32 only at the end: 1 - alpha_bar computed in float32
        # loses three digits at small t, where alpha_bar is within 1e-4 of 1
        self.sqrt_alpha_bars = self.alpha_bars.sqrt().float()
        self.sqrt_one_minus_alpha_bars = (1 - self.alpha_bars).sqrt().float()
        self.snrs = (self.alpha_bars / (1 - self.alpha_bars)).float()
        # the same noise levels as sigma = sqrt((1 - ab) / ab), for the ODE samplers (increasing in t)
        self.sigmas = ((1 - self.alpha_bars) / self.alpha_bars).sqrt()
        self._log_sigmas = self.sigmas.log().numpy()
        self._copies: dict[tuple[str, str], torch.Tensor] = {}

    def on(self, name: str, device: torch.device) -> torch.Tensor:
        """A schedule tensor on `device`, copied there once: no host-to-device copy per training step."""
        key = (name, str(device))
        if key not in self._copies:
            self._copies[key] = getattr(self, name).to(device)
        return self._copies[key]

    def timestep_of(self, sigma: float) -> float:
        """The (fractional) timestep whose noise level is `sigma`, interpolated in log sigma."""
        return float(np.interp(math.log(sigma), self._log_sigmas, np.arange(self.num_steps)))

    def scales(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(ab_t), sqrt(1 - ab_t)) at integer timesteps t, float32, shaped to broadcast over ndim dims."""
        shape = (-1, *([1] * (ndim - 1)))
        return (self.on("sqrt_alpha_bars", t.device)[t].view(shape),
                self.on("sqrt_one_minus_alpha_bars", t.device)[t].view(shape))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at integer timesteps t, float32 on t's device."""
        return self.on("snrs", t.device)[t]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0): sqrt(ab) x0 + sqrt(1 - ab) noise, computed in float32 whatever x0's dtype."""
        signal, noise_scale = self.scales(t, x0.dim())
        return (signal * x0.float() + noise_scale * noise.float()).to(x0.dtype)
