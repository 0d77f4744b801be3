"""Likelihood helpers shared by the families that have one."""

from __future__ import annotations

import math

import torch


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                        levels: int = 256) -> torch.Tensor:
    """log P(x) per element for data on `levels` evenly spaced values in [-1, 1].

    Each value owns a bin of width 2/(levels-1); the end bins extend to +-infinity, so the
    probabilities sum to one (Ho et al. 2020, eq. 13; Salimans et al. 2017 for the logistic form).
    """
    half_bin = 1.0 / (levels - 1)
    inv_scale = torch.exp(-log_scale)
    centred = x - mean
    cdf_plus = torch.special.ndtr((centred + half_bin) * inv_scale)
    cdf_minus = torch.special.ndtr((centred - half_bin) * inv_scale)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1 - cdf_minus).clamp(min=1e-12))
    log_mid = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_mid))


def nats_to_bits_per_dim(nats: torch.Tensor, dims: int) -> torch.Tensor:
    return nats / (dims * math.log(2))


def token_nll(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy in nats of each target token (B, T) under logits (B, T, V), in float32, and each
    position's weight (B, T): `keep` (False for padding) as floats, or ones."""
    nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    nll = nll.view(targets.shape)
    return nll, keep.float() if keep is not None else torch.ones_like(nll)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of values over the weighted positions (all of them, or along `dim`); 0 where none count."""
    if dim is None:
        return (values * weights).sum() / weights.sum().clamp(min=1)
    return (values * weights).sum(dim) / weights.sum(dim).clamp(min=1)
