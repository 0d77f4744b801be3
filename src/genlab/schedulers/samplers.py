"""Diffusion samplers: ancestral DDPM (Ho et al. 2020) and DDIM (Song et al. 2021).

Both predict x0 from the noise estimate and clip it to the data range before each update (the
"clipped" sampler of the DDPM code); that is what keeps backgrounds clean at few training steps.
The per-step coefficients are precomputed as Python floats so the loop does no schedule maths.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ArgumentError
from .noise_schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> predicted noise


def _start(shape, generator, device, dtype):
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def _predict_x0(x: torch.Tensor, eps: torch.Tensor, ab: float, clip: float | None) -> torch.Tensor:
    x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
    return x0.clamp(-clip, clip) if clip else x0


def ancestral_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                     generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                     clip: float | None = 1.0, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """All T steps of p(x_{t-1} | x_t) with the posterior variance beta~_t."""
    ab = schedule.alpha_bars.tolist()
    betas = schedule.betas.tolist()
    x = _start(shape, generator, device, dtype)
    t_batch = torch.empty(shape[0], dtype=torch.long, device=device)
    for t in reversed(range(schedule.num_steps)):
        ab_prev = ab[t - 1] if t > 0 else 1.0
        eps = denoiser(x, t_batch.fill_(t))
        x0 = _predict_x0(x, eps, ab[t], clip)
        # posterior mean  c0 * x0 + ct * x_t  and variance beta~_t
        c0 = betas[t] * ab_prev**0.5 / (1 - ab[t])
        ct = (1 - ab_prev) * (1 - betas[t]) ** 0.5 / (1 - ab[t])
        x = c0 * x0 + ct * x
        if t > 0:
            var = betas[t] * (1 - ab_prev) / (1 - ab[t])
            x = x + var**0.5 * _start(shape, generator, device, dtype)
        if progress:
            progress(1)
    return x


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """`steps` timesteps spread evenly over [0, T-1], ending at T-1 ("trailing" spacing)."""
    if not 1 <= steps <= num_train_steps:
        raise ArgumentError(f"DDIM steps must be between 1 and {num_train_steps}, got {steps}")
    return sorted({round(num_train_steps - 1 - i * num_train_steps / steps) for i in range(steps)})


def ddim_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *, steps: int = 50,
                eta: float = 0.0, generator: torch.Generator | None = None, device=None,
                dtype=torch.float32, clip: float | None = 1.0,
                progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """DDIM with `steps` network calls; eta=0 is deterministic, eta=1 matches DDPM's variance."""
    ab = schedule.alpha_bars.tolist()
    times = ddim_timesteps(schedule.num_steps, steps)[::-1]
    x = _start(shape, generator, device, dtype)
    t_batch = torch.empty(shape[0], dtype=torch.long, device=device)
    for i, t in enumerate(times):
        ab_prev = ab[times[i + 1]] if i + 1 < len(times) else 1.0
        eps = denoiser(x, t_batch.fill_(t))
        x0 = _predict_x0(x, eps, ab[t], clip)
        if clip:  # keep eps consistent with the clipped x0
            eps = (x - ab[t] ** 0.5 * x0) / (1 - ab[t]) ** 0.5
        sigma = eta * ((1 - ab_prev) / (1 - ab[t]) * (1 - ab[t] / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and i + 1 < len(times):
            x = x + sigma * _start(shape, generator, device, dtype)
        if progress:
            progress(1)
    return x


SAMPLERS = {"ddpm": ancestral_sample, "ddim": ddim_sample}
