"""Variational autoencoder (Kingma & Welling 2014) with a Gaussian decoder of learned scale.

The decoder's scale is one number per channel set to its optimum, the batch's reconstruction RMSE
(the "optimal sigma" calibrated decoder of Rybkin et al. 2021): the balance between reconstruction and KL
follows the fit instead of being hand-tuned or learned slowly by gradient steps (a slowly learned scale
lets the KL win early and the posterior collapse). A running average of it is kept for the likelihood,
reported as a bound in bits/dim with a discretized Gaussian.
`beta` weights the KL term (Higgins et al. 2017); beta = 1 is the plain VAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...batch import LABEL, X
from ...data.base import DataSpec
from ...nn.convnets import MLP, ConvDecoder, ConvEncoder
from ...nn.distributions import discretized_gaussian_log_likelihood, nats_to_bits_per_dim
from ..base import GenerativeModel, LossOutput


@dataclass
class VAEConfig:
    latent_dim: int = 16
    base_channels: int = 32
    mlp_hidden: int = 128  # for 2-D point data
    beta: float = 1.0
    kl_warmup_steps: int = 500  # KL weight grows linearly from 0 to beta: avoids early posterior collapse
    # floor of the decoder's log-scale (sigma >= 0.5 on the [-1, 1] scale): below it the reconstruction
    # term drowns the KL, the posterior spreads away from the prior and prior samples fall into its holes
    min_log_scale: float = -0.7


class VAE(GenerativeModel):
    family = "vae"
    description = "VAE: convolutional encoder/decoder, Gaussian decoder with learned scale, ELBO bound"
    config_class = VAEConfig
    train_defaults = {"lr": 1e-3, "batch_size": 128, "ema_decay": 0.999, "warmup_steps": 100}
    likelihood = "bound"
    accepted_conditions = (LABEL,)

    def __init__(self, config: VAEConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        data_shape = self.data_shape
        z = config.latent_dim
        self.label_embedding = nn.Embedding(self.num_classes, z) if LABEL in self.conditions else None
        if self.is_image:
            c, size = data_shape[0], data_shape[-1]
            self.encoder = ConvEncoder(c, size, config.base_channels, 2 * z, norm="group", activation=nn.SiLU())
            self.decoder = ConvDecoder(z, c, size, config.base_channels, norm="group", activation=nn.SiLU())
            self.register_buffer("log_scale", torch.zeros(c, 1, 1))
        else:
            d = data_shape[0]
            self.encoder = MLP(d, config.mlp_hidden, 2 * z)
            self.decoder = MLP(z, config.mlp_hidden, d)
            self.register_buffer("log_scale", torch.zeros(d))

    @classmethod
    def migrate_state_dict(cls, state, format_version):
        # format 1 counted training calls in a buffer for the KL warm-up; the trainer now hands over the step
        return {k: v for k, v in state.items() if k != "updates"}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x).float().chunk(2, dim=1)  # (B, z) each, float32 under any autocast
        return mean, log_var.clamp(-12, 8)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None and labels is not None:
            z = z + self.label_embedding(labels)
        return self.decoder(z).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean."""
        return self.decode(self.encode(x)[0])

    def _optimal_log_scale(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """log of the per-channel RMSE: the decoder scale that maximises this batch's likelihood."""
        dims = [0] + list(range(2, x.dim())) if self.is_image else [0]
        mse = (x - recon).pow(2).mean(dim=dims, keepdim=True)[0]
        return (0.5 * mse.clamp(min=1e-12).log()).clamp(min=self.config.min_log_scale)

    def _elbo_terms(self, x, labels, generator):
        mean, log_var = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * eps
        recon = self.decode(z, labels)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)  # (B,)
        return recon, kl

    def training_loss(self, batch, phase, step, generator):
        x = batch[X]
        recon, kl = self._elbo_terms(x, batch.get(LABEL), generator)
        log_scale = self._optimal_log_scale(x, recon)
        with torch.no_grad():
            self.log_scale.lerp_(log_scale.detach(), 0.01 if step else 1.0)
        # Gaussian negative log-likelihood per item, in nats
        nll = (0.5 * ((x - recon) * torch.exp(-log_scale)).pow(2) + log_scale + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        warm = self.config.kl_warmup_steps
        kl_weight = self.config.beta * (min(1.0, (step + 1) / warm) if warm else 1.0)
        loss = (nll + kl_weight * kl).mean() / x[0].numel()
        return LossOutput(loss, {"loss": loss.detach(), "recon_nats": nll.mean().detach(), "kl_nats": kl.mean().detach(),
                                 "decoder_log_scale": log_scale.mean().detach()})

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **_: Any) -> torch.Tensor:
        conditions = self.check_conditions(n, conditions)
        z = self.noise((n, self.config.latent_dim), generator)
        out = self.decode(z, conditions.get(LABEL))
        return out.clamp(-1, 1) if self.is_image else out  # the decoder mean, as is usual for VAE samples

    @torch.inference_mode()
    def bits_per_dim(self, batch, generator=None) -> torch.Tensor:
        """Negative ELBO (a bound on -log p) with a discretized Gaussian decoder over 256 levels."""
        if not self.is_image:
            raise TypeError("bits/dim is defined for 8-bit images, not for point data")
        x = batch[X]
        recon, kl = self._elbo_terms(x, batch.get(LABEL) if LABEL in self.conditions else None, generator)
        log_scale = self.log_scale.clamp(min=self.config.min_log_scale).expand_as(recon)
        nll = -discretized_gaussian_log_likelihood(x, recon, log_scale).flatten(1).sum(1)
        return nats_to_bits_per_dim(nll + kl, x[0].numel())
