"""beta-VAE: the VAE with a heavier KL (Higgins et al. 2017) or a KL held at a growing capacity (Burgess et al. 2018).

- Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
  Framework": loss = recon + beta * KL with beta > 1. The heavier price on the KL pushes the posterior
  towards the factorised prior, and with it towards latents that each follow one generative factor; the
  price is blurrier reconstructions. beta = 4 is the name's default (their dSprites choice, 10 latents,
  Bernoulli decoder: the defaults here). The VAE's KL warm-up applies as to `vae`.
- Burgess et al. 2018, "Understanding disentangling in beta-VAE": loss = recon + gamma * |KL - C|, the
  KL pulled to a target capacity C (nats) that grows linearly from 0 to `capacity_max` over
  `capacity_steps` steps. Early, with little capacity, the code spends it on the factor that saves the
  most reconstruction (position on dSprites), then takes factors in one at a time as C grows: disentangled
  latents with the reconstructions of a wider channel. On with capacity_max > 0 (beta and the KL
  warm-up are then unused: C rising from 0 is the warm-up); their dSprites settings are gamma = 1000
  and C up to 25 nats over 100,000 steps. As in their code, the KL is the batch mean, so |KL - C|
  constrains the average rate, not each image's.

Logged besides the VAE's terms: `active_dims`, the latents whose KL (batch mean) exceeds 0.01 nats (the
rest carry nothing: the prior's), `kl_max_dim`, the KL of the busiest one, and `capacity` (C), all as
tensors: no host syncs. MIG on data with known factors: `genlab.eval.disentanglement`, and
benchmarks/disentanglement.py sets a VAE against beta-VAEs on `shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ...batch import LABEL, X
from ...errors import ArgumentError
from ..base import LossOutput
from .vae import VAE, VAEConfig

ACTIVE_KL = 0.01  # nats: a latent below this carries (next to) no information about the input


@dataclass
class BetaVAEConfig(VAEConfig):
    latent_dim: int = 10  # Higgins et al. on dSprites
    beta: float = 4.0
    # the papers' dSprites likelihood (the choices are the VAE's)
    decoder: Literal["auto", "gaussian", "bernoulli", "logistic"] = "bernoulli"
    capacity_max: float = 0.0  # C_max in nats; 0: plain beta weighting
    capacity_steps: int = 100_000  # steps over which C grows from 0 to capacity_max
    gamma: float = 1000.0  # weight of |KL - C|


class BetaVAE(VAE):
    family = "vae"
    description = "beta-VAE: the VAE with KL weight beta (default 4) or capacity annealing |KL - C| (Burgess et al.)"
    config_class = BetaVAEConfig
    data_kinds = ("image",)  # disentangling the factors of images; 2-D points have nothing to disentangle

    def __init__(self, config: BetaVAEConfig, spec, conditions: tuple[str, ...] = ()):
        if config.capacity_max < 0 or config.capacity_steps < 0 or config.gamma <= 0 or config.beta < 0:
            raise ArgumentError("beta-vae needs beta >= 0, gamma > 0, capacity_max >= 0 and capacity_steps >= 0; got "
                                f"beta={config.beta}, gamma={config.gamma}, capacity_max={config.capacity_max}, "
                                f"capacity_steps={config.capacity_steps}")
        super().__init__(config, spec, conditions)
        self._posterior: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def migrate_config(cls, config):
        return config  # beta-vae runs have always named their decoder: the VAE's migration is not theirs

    def capacity(self, step: int) -> float:
        """C at training step `step` (nats): 0 at step 0, capacity_max from capacity_steps on."""
        c = self.config
        if c.capacity_max <= 0:
            return 0.0
        return c.capacity_max * (min(1.0, step / c.capacity_steps) if c.capacity_steps else 1.0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = super().encode(x)
        if self.training and torch.is_grad_enabled():
            # elbo_terms returns the KL summed over latents: its split per latent is read off the posterior
            # it encoded, kept for the length of one training_loss call
            self._posterior = (mean.detach(), log_var.detach())
        return mean, log_var

    def training_loss(self, batch, phase, step, generator):
        self._posterior = None
        if self.config.capacity_max <= 0:
            out = super().training_loss(batch, phase, step, generator)  # recon + warmed-up beta * KL
        else:
            out = self._capacity_loss(batch, step, generator)
        out.logs.update(self._latent_logs())
        self._posterior = None
        return out

    def _capacity_loss(self, batch, step: int, generator) -> LossOutput:
        x = batch[X]
        nll, kl, _ = self.elbo_terms(x, batch.get(LABEL), generator)
        capacity = self.capacity(step)
        kl_mean = kl.mean()
        # per dimension of x, as the VAE's loss, so learning rates carry over
        loss = (nll.mean() + self.config.gamma * (kl_mean - capacity).abs()) / x[0].numel()
        return LossOutput(loss, {"loss": loss.detach(), "recon_nats": nll.mean().detach(), "kl_nats": kl_mean.detach(),
                                 "elbo_nats": -(nll + kl).mean().detach(),
                                 "capacity": kl_mean.new_full((), capacity)})  # a fill, not a host copy

    def _latent_logs(self) -> dict[str, torch.Tensor]:
        if self._posterior is None:
            return {}
        mean, log_var = self._posterior
        kl_units = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).flatten(1).mean(0)  # (latent units,)
        return {"active_dims": (kl_units > ACTIVE_KL).sum().float(), "kl_max_dim": kl_units.max()}
