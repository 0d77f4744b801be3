"""What every GAN shares: a generator and a discriminator trained in alternation, the loss and the
discriminator's regularisers chosen in the config, DiffAugment, and EMA of the generator only.

A GAN in genlab is a subclass that builds `self.generator` and `self.discriminator` (and overrides
`generate` / `discriminate` when they take conditions or more than one input). This base turns its
config into optimizers and phases the trainer carries out without knowing what a GAN is:

- "discriminator", repeated `n_critic` times per step, each on a fresh batch when n_critic > 1
  (WGAN-GP's Algorithm 1), with its learning rate `discriminator_lr_scale` times the run's (TTUR);
- "r1", every `r1_every` steps when R1 is lazy (StyleGAN2: the penalty weighted by its interval);
- "generator", last, on the step's batch.

Real and generated items reach the discriminator in separate calls: with batch norm inside it, a
mixed batch would let it judge by batch statistics that the generator's fake-only batch never shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ...batch import LABEL, X, Batch
from ...errors import ArgumentError
from ...nn.diffaugment import diff_augment, parse_policy
from ...train.optim import OptimizerSpec, ParamGroup, Phase
from ..base import GenerativeModel, LossOutput
from .losses import generator_loss, r1_penalty, regularised_discriminator_loss


@dataclass
class AdversarialConfig:
    latent_dim: int = 64
    loss: Literal["non-saturating", "hinge", "wasserstein", "least-squares"] = "non-saturating"
    n_critic: int = 1  # discriminator steps per generator step
    discriminator_lr_scale: float = 1.0  # two time-scale update rule (Heusel et al. 2017): e.g. 4.0
    gp_weight: float = 0.0  # WGAN-GP's lambda (10 in the paper)
    r1_weight: float = 0.0  # R1's gamma; the penalty is gamma / 2 * E||grad D(x)||^2
    r1_every: int = 1  # lazy R1 (StyleGAN2: 16): the penalty every N steps, weighted N times
    label_smoothing: float = 0.0  # one-sided, for the non-saturating loss
    diffaugment: str = ""  # e.g. "color,translation,cutout" (Zhao et al. 2020), for small data sets


class AdversarialModel(GenerativeModel):
    family = "gan"
    # GANs are scored during training and keep their best checkpoint (late-training collapse is common),
    # and the collapse watch looks at them every 250 steps
    train_defaults = {"lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 0.0, "batch_size": 64,
                      "ema_decay": 0.999, "warmup_steps": 0, "grad_clip": 0.0, "eval_every": 1000,
                      "collapse_every": 250}
    watch_collapse = True  # the trainer's collapse watch (genlab.train.monitor) looks at its samples

    generator: nn.Module
    discriminator: nn.Module

    def __init__(self, config: AdversarialConfig, spec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        try:
            self._augment = parse_policy(config.diffaugment)
        except ValueError as e:
            raise ArgumentError(f"--set diffaugment: {e}") from None
        if self._augment and spec.kind != "image":
            raise ArgumentError("DiffAugment transforms images; drop --set diffaugment for point data")
        if config.n_critic < 1 or config.r1_every < 1:
            raise ArgumentError("n_critic and r1_every must be at least 1")
        if config.loss == "wasserstein" and not config.gp_weight:
            raise ArgumentError("the Wasserstein loss needs a Lipschitz critic: set gp_weight (10 in WGAN-GP)")

    # ------------------------------------------------------------------ what subclasses may override
    def latent(self, n: int, generator: torch.Generator | None, like: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's input noise for n items (B, latent_dim)."""
        shape = (n, self.config.latent_dim)
        if like is None:
            return self.noise(shape, generator)
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)

    def generate(self, z: torch.Tensor, conditions: Batch, generator: torch.Generator | None = None,
                 **options: Any) -> torch.Tensor:
        """Noise (and conditions) -> items in the data's range."""
        return self.generator(z)

    def discriminate(self, x: torch.Tensor, conditions: Batch) -> torch.Tensor:
        """Items (and conditions) -> one raw score per item (B, 1)."""
        return self.discriminator(x)

    def generator_groups(self) -> list[ParamGroup]:
        """The generator's parameter groups (StyleGAN's mapping network takes its own lr scale)."""
        return [ParamGroup([p for p in self.generator.parameters() if p.requires_grad])]

    # ------------------------------------------------------------------ the contract
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generate(z, {})

    def optimizers(self) -> list[OptimizerSpec]:
        return [OptimizerSpec.over("discriminator", self.discriminator, lr_scale=self.config.discriminator_lr_scale),
                OptimizerSpec("generator", self.generator_groups())]

    def phases(self) -> list[Phase]:
        cfg = self.config
        phases = [Phase("discriminator", repeats=cfg.n_critic, fresh_batch=cfg.n_critic > 1)]
        if cfg.r1_weight and cfg.r1_every > 1:
            phases.append(Phase("r1", optimizer="discriminator", every=cfg.r1_every))
        return phases + [Phase("generator")]

    def ema_modules(self) -> list[str]:
        return ["generator"]

    def training_conditions(self, batch: Batch) -> Batch:
        return {LABEL: batch[LABEL]} if LABEL in self.conditions else {}

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return diff_augment(x, self._augment, generator) if self._augment else x

    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        x = batch[X]
        conditions = self.training_conditions(batch)
        critic = lambda items: self.discriminate(self.augment(items, generator), conditions)  # noqa: E731
        if phase == "r1":
            return self.lazy_r1_loss(critic, x)
        z = self.latent(len(x), generator, like=x)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generate(z, conditions, generator)
            return self.critic_loss(critic, x, fake, generator)
        loss = generator_loss(self.config.loss, critic(self.generate(z, conditions, generator)))
        return LossOutput(loss, {"g_loss": loss.detach()})

    def critic_loss(self, critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> LossOutput:
        """The discriminator phase's loss from `critic` (items -> raw scores) on real and generated items,
        with the config's gradient penalty and (non-lazy) R1, and the logs the health check reads."""
        cfg = self.config
        loss, logs = regularised_discriminator_loss(
            cfg.loss, critic, real, fake, label_smoothing=cfg.label_smoothing, gp_weight=cfg.gp_weight,
            r1_weight=cfg.r1_weight if cfg.r1_every == 1 else 0.0, generator=generator)  # lazy R1 has its phase
        return LossOutput(loss, logs)

    def lazy_r1_loss(self, critic, real: torch.Tensor) -> LossOutput:
        """The "r1" phase: R1 on real items, weighted by its interval (StyleGAN2's lazy regularisation)."""
        penalty = r1_penalty(critic, real)
        return LossOutput(0.5 * self.config.r1_weight * self.config.r1_every * penalty, {"r1": penalty.detach()})

    def health(self, logs: dict[str, float]) -> str | None:
        """A warning when the discriminator wins outright (from its logged mean scores), else None."""
        real, fake = logs.get("d_real"), logs.get("d_fake")
        if real is None or fake is None or self.config.loss == "wasserstein":
            return None
        margin = 1.0 if self.config.loss == "hinge" else 0.0  # hinge scores sit at +-1 when D is sure
        # non-saturating: D(x) > 0.99 and D(G(z)) < 0.01 in probability, i.e. logits beyond +-4.6
        sure = 4.6 if self.config.loss == "non-saturating" else 3.0
        if real > margin + sure and fake < -margin - sure:
            return (f"the discriminator wins outright (mean score {real:.2f} on real, {fake:.2f} on generated): "
                    "the generator gets no useful gradient")
        return None

    @torch.inference_mode()
    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        conditions = self.check_conditions(n, conditions)
        return self.generate(self.latent(n, generator), conditions, generator, **options)
