"""Editing with any trained diffusion or flow model, on the sigma parametrisation of `ode.py`.

- image-to-image (SDEdit, Meng et al. 2022): noise the input to the level `strength` picks, then
  solve the ODE from there with any ODE sampler; `strength_start` builds that starting point.
- inpainting (RePaint, Lugmayr et al. 2022): at every step the known pixels are replaced by the input
  noised to the step's level, and each step is taken `resample` times, going back up by fresh noise in
  between so the generated part can agree with the known part. The known pixels of the result are the
  input's exactly.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import ArgumentError
from .ode import Denoised


def check_strength(strength: float) -> float:
    if not 0 < strength <= 1:
        raise ArgumentError(f"--strength must lie in (0, 1] (1: from pure noise), got {strength}")
    return strength


def strength_start(source: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """The input noised to level sigma (x = source + sigma eps): where SDEdit starts."""
    noise = torch.randn(source.shape, generator=generator, device=source.device, dtype=source.dtype)
    return source + sigma * noise


def inpaint_sample(denoised: Denoised, sigmas: list[float], known: torch.Tensor, mask: torch.Tensor, *,
                   resample: int = 5, generator: torch.Generator | None = None,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Fill the pixels where `mask` is False, keeping `known` where it is True; (B, C, H, W) in, out.

    The steps are DDIM's deterministic update (Euler in sigma), `resample` times each; mask (B, 1, H, W)
    broadcasts over channels.
    """
    if resample < 1:
        raise ArgumentError(f"--resample must be at least 1, got {resample}")
    known = known.to(dtype=torch.float32)

    def noise():
        return torch.randn(known.shape, generator=generator, device=known.device, dtype=known.dtype)

    x = torch.where(mask, known + sigmas[0] * noise(), sigmas[0] * noise())
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        for r in range(resample):
            x0 = torch.where(mask, known, denoised(x, sigma))
            step = x0 + (sigma_next / sigma) * (x - x0)
            x_next = torch.where(mask, known + sigma_next * noise(), step)
            if r + 1 < resample and sigma_next > 0:
                x = x_next + math.sqrt(sigma**2 - sigma_next**2) * noise()  # back up to sigma: RePaint's resampling
        x = x_next
        if progress:
            progress(1)
    return x
