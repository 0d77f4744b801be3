"""Likelihood helpers shared by the families that have one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def discretized_logistic_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                        levels: int = 256) -> torch.Tensor:
    """log P(x) per element under a logistic of `mean` and `log_scale` discretised to `levels` evenly
    spaced values in [-1, 1] (Salimans et al. 2017, PixelCNN++, eq. 2; the end bins open to +-infinity,
    so the probabilities of the levels sum to one). Callers floor `log_scale` (PixelCNN++: -7)."""
    half_bin = 1.0 / (levels - 1)
    x, mean, log_scale = x.float(), mean.float(), log_scale.float()
    centred = x - mean
    inv_scale = torch.exp(-log_scale)
    plus, minus = inv_scale * (centred + half_bin), inv_scale * (centred - half_bin)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid: the open bin at -1
    log_survival_minus = -F.softplus(minus)  # log (1 - sigmoid): the open bin at +1
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_scale * centred
    # where the bin's mass underflows float32, its density times the bin width (PixelCNN++'s guard)
    log_density = mid - log_scale - 2 * F.softplus(mid) + math.log(2 * half_bin)
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_density)
    return torch.where(x < -1 + half_bin, log_cdf_plus, torch.where(x > 1 - half_bin, log_survival_minus, log_mid))


def discretized_logistic_mixture_log_likelihood(x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor,
                                                log_scales: torch.Tensor, dim: int, levels: int = 256) -> torch.Tensor:
    """log P(x) per element under a mixture of discretised logistics whose components lie along `dim` of
    `logits`, `means` and `log_scales` (x has no such dimension). Float32."""
    log_bin = discretized_logistic_log_likelihood(x.unsqueeze(dim), means, log_scales, levels)
    return torch.logsumexp(log_bin + F.log_softmax(logits.float(), dim=dim), dim=dim)


def dynamic_binarization(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Images in [-1, 1] -> {0., 1.}, each pixel on with probability (x + 1) / 2, drawn afresh from
    `generator` every call: "dynamically binarised MNIST" (Salakhutdinov & Murray 2008; Burda et al. 2016)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (u < (x.float() + 1) / 2).float()


def bernoulli_log_likelihood(bits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log P(bits) per element, bits in {0, 1}, under independent Bernoullis of these logits. Float32."""
    return -F.binary_cross_entropy_with_logits(logits.float(), bits.float(), reduction="none")
