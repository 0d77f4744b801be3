"""Guidance: classifier-free (Ho & Salimans 2021) around a network call, and classifier guidance
(Dhariwal & Nichol 2021) around a denoiser.

The guided output u + scale (c - u) is taken in the network's own prediction space: the conversions
to noise, data or velocity are linear at a given noise level, so guiding any of them is the same.
"""

from __future__ import annotations

from typing import Callable

import torch

Network = Callable[..., torch.Tensor]  # (x, t, **conditions) -> prediction


def classifier_free(network: Network, conditions: dict[str, torch.Tensor], nulls: dict[str, torch.Tensor],
                    scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(x, t) -> float32 output, guided with `scale` towards `conditions` and away from their `nulls`.

    `conditions` are the network's keyword inputs (labels, caption tokens...), `nulls` the same inputs
    meaning "no condition". Scale 1 (or no conditions) is the plain call; scale 0 the unconditional one.
    """
    if not conditions or scale == 1.0:
        return lambda x, t: network(x, t, **conditions).float()  # a sampler's maths stay float32 under autocast

    def guided(x, t):  # one batched call for both predictions
        both = {k: torch.cat([v, nulls[k]]) for k, v in conditions.items()}
        cond, uncond = network(torch.cat([x, x]), torch.cat([t, t]), **both).float().chunk(2)
        return uncond + scale * (cond - uncond)

    return guided


def classifier_guided(denoised: Callable[[torch.Tensor, float], torch.Tensor],
                      log_prob_gradient: Callable[[torch.Tensor, float], torch.Tensor], scale: float,
                      clip: float | None = None) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """A denoiser (x = x0 + sigma eps, sigma) -> x0 steered by a classifier (Dhariwal & Nichol 2021).

    The score of the noisy data is (D(x) - x) / sigma^2; adding scale * grad log p(y | x) to it is the
    same as adding scale * sigma^2 * grad log p(y | x) to the denoised estimate D(x). `log_prob_gradient`
    gives grad_x log p(y | x, sigma). Scale 0 is the unguided denoiser.
    """
    if scale == 0:
        return denoised

    def guided(x, sigma):
        x0 = denoised(x, sigma) + scale * sigma**2 * log_prob_gradient(x, sigma).to(x.dtype)
        return x0.clamp(-clip, clip) if clip else x0

    return guided
