"""A classifier of noisy images that guides a diffusion or flow run towards a class at sampling time.

Classifier guidance (Dhariwal & Nichol 2021): sampling adds scale * grad log p(y | x_t) to the score.
The classifier is its own run (`genlab train noise-classifier --data mnist`), trained with cross-entropy
on images noised at every level, and named when sampling another run:
`genlab sample RUN --classifier CLS_RUN --class 3 --guidance 2`.

It sees the noise level sigma of the variance-exploding view x = x0 + sigma eps that every genlab
sampler works in, as (x0 + sigma eps) / sqrt(1 + sigma^2) (unit variance, the denoisers' own input
scale) and log sigma through the time embedding. Any diffusion or flow run over the same images can
use it, whatever its schedule. It does not sample: it has no images of its own to give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...batch import LABEL, X
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.noisy_classifier import NoisyImageClassifier
from ..base import GenerativeModel, LossOutput


@dataclass
class NoiseClassifierConfig:
    base_channels: int = 32
    channel_mults: tuple[int, ...] | None = None  # None: halve while the size stays even, at most twice
    dropout: float = 0.0
    # training noise levels, log-uniform between these (the samplers' range: EDM's 0.002 to 80)
    sigma_min: float = 0.002
    sigma_max: float = 80.0


class NoiseClassifier(GenerativeModel):
    family = "diffusion"
    description = "classifier of noisy images for classifier guidance (genlab sample RUN --classifier THIS)"
    config_class = NoiseClassifierConfig
    train_defaults = {"lr": 1e-3, "batch_size": 128, "ema_decay": 0.999, "warmup_steps": 100}
    required_inputs = (LABEL,)
    data_kinds = ("image",)
    can_sample = False

    def __init__(self, config: NoiseClassifierConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        if not spec.num_classes:
            raise ArgumentError("a noise classifier needs labelled images (e.g. --data mnist); this data has no classes")
        super().__init__(config, spec, conditions)
        size = self.data_shape[-1]
        levels = 1 + (size % 2 == 0) + (size % 4 == 0 and size >= 16)
        mults = tuple(config.channel_mults or (1, 2, 2)[:levels])
        self.config = config = NoiseClassifierConfig(**{**config.__dict__, "channel_mults": mults})
        self.net = NoisyImageClassifier(self.data_shape[0], self.num_classes, config.base_channels, mults, config.dropout)

    def _time(self, sigma: torch.Tensor) -> torch.Tensor:
        lo, hi = math.log(self.config.sigma_min), math.log(self.config.sigma_max)
        return 1000 * (sigma.float().log() - lo) / (hi - lo)  # the time embedding's range, like a timestep

    def logits(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Class logits (B, classes) of x = x0 + sigma eps (the samplers' view), sigma (B,) per item."""
        scale = (1 + sigma.float() ** 2).rsqrt().view(-1, *([1] * (x.dim() - 1)))
        return self.net(x * scale.to(x.dtype), self._time(sigma)).float()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.logits(x, sigma)

    def training_loss(self, batch, phase, step, generator):
        x0, labels = batch[X].float(), batch[LABEL]
        lo, hi = math.log(self.config.sigma_min), math.log(self.config.sigma_max)
        sigma = torch.exp(lo + (hi - lo) * torch.rand(x0.shape[0], device=x0.device, generator=generator))
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        logits = self(x0 + sigma.view(-1, *([1] * (x0.dim() - 1))) * noise, sigma)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return LossOutput(loss, {"loss": loss.detach(), "accuracy": accuracy.detach()})

    def log_prob_gradient(self, x: torch.Tensor, sigma: float, labels: torch.Tensor) -> torch.Tensor:
        """d/dx log p(labels | x, sigma), (B, *item) float32: the guidance direction."""
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().float().clone().requires_grad_(True)  # a normal tensor, even inside inference mode
            sigmas = torch.full((x.shape[0],), sigma, device=x.device)
            chosen = F.log_softmax(self(x, sigmas), dim=1).gather(1, labels.long().view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(chosen, x)
        return grad

    @torch.inference_mode()
    def accuracy(self, x0: torch.Tensor, labels: torch.Tensor, sigma: float, generator=None) -> float:
        """Share of images x0 noised at `sigma` that it classifies correctly."""
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        sigmas = torch.full((x0.shape[0],), sigma, device=x0.device)
        return float((self(x0.float() + sigma * noise, sigmas).argmax(1) == labels).float().mean())

    def sample(self, n: int, conditions=None, generator=None, **options: Any) -> torch.Tensor:
        raise ArgumentError("a noise-classifier run does not sample: it guides a diffusion run, as in "
                            "`genlab sample DIFFUSION_RUN --classifier THIS_RUN --class 3 --guidance 2`")
