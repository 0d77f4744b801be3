"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

The critic estimates the Wasserstein-1 distance; its Lipschitz constraint is a gradient penalty
lambda * E[(||grad D(x_hat)|| - 1)^2] on random interpolates, the norm taken per sample over all its
pixels (`losses.gradient_penalty`). The paper's Algorithm 1: n_critic = 5 critic steps, each on a fresh
batch, per generator step; Adam with lr 1e-4 and betas (0, 0.9); lambda = 10. The critic has no batch
norm (the penalty is per sample, and batch norm would couple the samples); layer norm takes its
place, as the paper recommends. On points both networks are MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from ...data.base import DataSpec
from ...nn.convnets import MLP, ConvDecoder, ConvEncoder
from .adversarial import AdversarialConfig, AdversarialModel


@dataclass
class WGANGPConfig(AdversarialConfig):
    loss: Literal["non-saturating", "hinge", "wasserstein"] = "wasserstein"
    n_critic: int = 5
    gp_weight: float = 10.0
    generator_channels: int = 32
    critic_channels: int = 32
    mlp_hidden: int = 256


class WGANGP(AdversarialModel):
    description = "WGAN-GP: Wasserstein critic with a per-sample gradient penalty, 5 critic steps per G step"
    config_class = WGANGPConfig
    train_defaults = {**AdversarialModel.train_defaults, "lr": 1e-4, "betas": (0.0, 0.9)}
    prefers_channels_last = True

    def __init__(self, config: WGANGPConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        z = config.latent_dim
        if self.is_image:
            c, size = self.data_shape[0], self.data_shape[-1]
            self.generator = nn.Sequential(ConvDecoder(z, c, size, config.generator_channels, norm="batch"), nn.Tanh())
            # GroupNorm with one group is layer norm over (C, H, W): per sample, as the penalty needs
            self.discriminator = ConvEncoder(c, size, config.critic_channels, 1, norm="layer")
        else:
            d = self.data_shape[0]
            self.generator = MLP(z, config.mlp_hidden, d, activation=nn.ReLU)
            self.discriminator = MLP(d, config.mlp_hidden, 1, activation=lambda: nn.LeakyReLU(0.2))
