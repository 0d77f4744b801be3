"""The original GAN (Goodfellow et al. 2014, "Generative Adversarial Nets"): an MLP generator and an
MLP discriminator, for 2-D points and flattened images.

As in the paper: the generator uses ReLU hidden units, the discriminator maxout units with dropout,
and the generator is trained with the non-saturating loss (the paper's suggested -log D(G(z))).
Images are generated flat and reshaped, with tanh into [-1, 1]; points are unbounded.

`pack=m` is PacGAN (Lin et al. 2018, "PacGAN: the power of two samples in generative adversarial
networks"): the discriminator judges m items at once, concatenated into one input, real with real and
generated with generated. A collapsed generator's packs hold near-identical items, which real packs
never do, so the discriminator can penalise the lack of diversity that one item alone does not show.
Nothing else changes (the generator, the loss, the sample count per step). pack=1 is Goodfellow's GAN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...data.base import DataSpec
from ...errors import ArgumentError
from .adversarial import AdversarialConfig, AdversarialModel


@dataclass
class GANConfig(AdversarialConfig):
    hidden: int = 256  # the paper's MNIST nets are wider (1200 / 240x5 maxout); 256 suffices for digits and toys
    depth: int = 2  # hidden layers in each network
    maxout_pieces: int = 5  # the paper's discriminator: maxout units of 5 pieces (1 = LeakyReLU 0.2 instead)
    dropout: float = 0.2  # dropout in the discriminator's hidden layers (0.5 in the paper's MNIST net)
    pack: int = 1  # PacGAN's m: items per discriminator input (2 in the paper's main results); 1 = no packing


class Maxout(nn.Module):
    """Linear to `pieces` candidates per unit, keep the largest (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (-1, self.pieces)).amax(-1)  # (B, out)


class GAN(AdversarialModel):
    description = "the original GAN: MLP generator vs maxout MLP discriminator (points, flattened images)"
    config_class = GANConfig

    def __init__(self, config: GANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        if config.pack < 1:
            raise ArgumentError(f"--set pack={config.pack}: pack is the number of items per discriminator input, "
                                "at least 1 (1 = no packing, 2 = PacGAN2)")
        dim = math.prod(self.data_shape)
        layers: list[nn.Module] = []
        width = config.latent_dim
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        layers.append(nn.Linear(width, dim))
        if self.is_image:
            layers.append(nn.Tanh())
        self.generator = nn.Sequential(*layers)
        layers, width = [nn.Flatten()], dim * config.pack
        for _ in range(config.depth):
            if config.maxout_pieces > 1:
                layers.append(Maxout(width, config.hidden, config.maxout_pieces))
            else:
                layers += [nn.Linear(width, config.hidden), nn.LeakyReLU(0.2)]
            layers.append(nn.Dropout(config.dropout))
            width = config.hidden
        layers.append(nn.Linear(width, 1))
        self.discriminator = nn.Sequential(*layers)

    def generate(self, z, conditions, generator=None, **options):
        return self.generator(z).view(len(z), *self.data_shape)

    def discriminate(self, x: torch.Tensor, conditions) -> torch.Tensor:
        """Items -> one score per pack of `pack` consecutive items (B / pack, 1)."""
        m = self.config.pack
        if len(x) % m:
            raise ArgumentError(f"a batch of {len(x)} does not split into packs of {m}: "
                                f"choose a batch size that is a multiple of pack={m}")
        return self.discriminator(x.reshape(len(x) // m, -1))
