"""What a diffusion network predicts, and the one conversion every sampler goes through.

With x_t = a x0 + s eps (a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar) on a variance-preserving path):
- "epsilon" predicts the noise eps (Ho et al. 2020);
- "x0" predicts the clean data x0;
- "v" predicts v = a eps - s x0 (Salimans & Ho 2022), whose scale stays the same at every noise level.

Samplers take noise or data predictions; a model of any prediction type reaches them through
`to_x0_and_eps`. The Min-SNR-gamma weights (Hang et al. 2023) that make each type's loss equal to the
same clamped-SNR weighting of the x0 error are here too.
"""

from __future__ import annotations

from typing import Literal

import torch

Prediction = Literal["epsilon", "v", "x0"]
PREDICTIONS: tuple[str, ...] = ("epsilon", "v", "x0")


def to_x0_and_eps(prediction: str, x_t: torch.Tensor, output: torch.Tensor, a, s) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) implied by a network `output` of type `prediction` at x_t = a x0 + s eps.

    `a` and `s` are floats or tensors broadcastable to x_t (per-item scales).
    """
    if prediction == "epsilon":
        eps = output
        return (x_t - s * eps) / a, eps
    if prediction == "x0":
        x0 = output
        return x0, (x_t - a * x0) / s
    if prediction == "v":
        # a^2 + s^2 = 1 on a variance-preserving path
        return a * x_t - s * output, s * x_t + a * output
    raise ValueError(f"unknown prediction type '{prediction}': use one of {', '.join(PREDICTIONS)}")


def training_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, a, s) -> torch.Tensor:
    """What a network of type `prediction` is trained to output for x_t = a x0 + s eps."""
    if prediction == "epsilon":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return a * eps - s * x0
    raise ValueError(f"unknown prediction type '{prediction}': use one of {', '.join(PREDICTIONS)}")


def min_snr_weight(prediction: str, snr: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-item weight so that every prediction type's MSE is min(snr, gamma) times the x0 MSE.

    The epsilon MSE is snr times the x0 MSE, the v MSE is (snr + 1) times it (Hang et al. 2023, sec. 3.4).
    """
    clamped = snr.clamp(max=gamma)
    if prediction == "epsilon":
        return clamped / snr
    if prediction == "x0":
        return clamped
    if prediction == "v":
        return clamped / (snr + 1)
    raise ValueError(f"unknown prediction type '{prediction}': use one of {', '.join(PREDICTIONS)}")
