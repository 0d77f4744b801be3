"""Adversarial losses and the discriminator's gradient regularisers, shared by every GAN.

- non-saturating (Goodfellow et al. 2014): D minimises softplus(-D(x)) + softplus(D(G(z))); G minimises
  softplus(-D(G(z))), the form that still has gradients when D rejects the fakes confidently.
- hinge (Lim & Ye 2017; Miyato et al. 2018, SAGAN): D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G -D(G(z)).
- wasserstein (Arjovsky et al. 2017): the critic minimises D(G(z)) - D(x); G -D(G(z)). Needs a Lipschitz
  constraint: the gradient penalty below (Gulrajani et al. 2017).
- least-squares (Mao et al. 2017, LSGAN, 0-1 coding): D minimises (D(x) - 1)^2 + D(G(z))^2; G (D(G(z)) - 1)^2.
  Fakes far on the real side of the boundary still get gradients (CycleGAN's choice, Zhu et al. 2017).

Penalties are computed in float32 whatever the autocast precision: they differentiate through the
discriminator twice, and their small gradients are what bf16 rounds away first.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Literal

import torch
import torch.nn.functional as F

AdversarialLoss = Literal["non-saturating", "hinge", "wasserstein", "least-squares"]
Critic = Callable[[torch.Tensor], torch.Tensor]


def discriminator_loss(kind: AdversarialLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """The discriminator's loss from its raw outputs on real and on generated items."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "non-saturating":
        # one-sided label smoothing (Salimans et al. 2016): real targets become 1 - label_smoothing
        real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
        return F.binary_cross_entropy_with_logits(real_logits, real_target) + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "wasserstein":
        return fake_logits.mean() - real_logits.mean()
    if kind == "least-squares":
        return (real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def generator_loss(kind: AdversarialLoss, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's raw outputs on its items."""
    fake_logits = fake_logits.float()
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wasserstein"):
        return -fake_logits.mean()
    if kind == "least-squares":
        return (fake_logits - 1.0).pow(2).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def regularised_discriminator_loss(kind: AdversarialLoss, critic: Critic, real: torch.Tensor, fake: torch.Tensor, *,
                                   label_smoothing: float = 0.0, gp_weight: float = 0.0, r1_weight: float = 0.0,
                                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The discriminator's loss from `critic` (items -> raw scores) on real and generated items, plus the
    gradient penalty and R1 at the given weights; with the logs a GAN's health check reads."""
    real_logits, fake_logits = critic(real), critic(fake)
    loss = discriminator_loss(kind, real_logits, fake_logits, label_smoothing)
    logs = {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean()}
    if gp_weight:
        gp = gradient_penalty(critic, real, fake, generator)
        loss = loss + gp_weight * gp
        logs["gp"] = gp.detach()
    if r1_weight:
        r1 = r1_penalty(critic, real)
        loss = loss + 0.5 * r1_weight * r1
        logs["r1"] = r1.detach()
    return loss, logs


@contextlib.contextmanager
def _penalty_mode(x: torch.Tensor):
    """float32, and gradients on even when the caller measures the loss under no_grad."""
    with torch.autocast(x.device.type, enabled=False), torch.enable_grad():
        yield


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None,
                     target: float = 1.0) -> torch.Tensor:
    """WGAN-GP: E[(||grad D(x_hat)|| - 1)^2] at random interpolates x_hat of real and fake items.

    The norm is per sample, over all of one item's dimensions (every pixel and channel), one interpolation
    weight per item, as in Gulrajani et al. (2017, Algorithm 1)."""
    with _penalty_mode(real):
        real, fake = real.detach().float(), fake.detach().float()
        weight = torch.rand((len(real),) + (1,) * (real.dim() - 1), generator=generator, device=real.device)
        mixed = (weight * real + (1 - weight) * fake).requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(mixed).float().sum(), mixed, create_graph=True)
        return (grads.flatten(1).norm(dim=1) - target).pow(2).mean()


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad D(x)||^2] on real items; weight it by gamma / 2."""
    with _penalty_mode(real):
        real = real.detach().float().requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(real).float().sum(), real, create_graph=True)
        return grads.flatten(1).pow(2).sum(1).mean()
