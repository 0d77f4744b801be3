"""Classifier-free guidance (Ho & Salimans 2021) as a wrapper around a network call.

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
