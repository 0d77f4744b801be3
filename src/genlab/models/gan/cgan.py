"""Class-conditional GAN with a projection discriminator.

- Conditional GANs: Mirza & Osindero 2014, "Conditional Generative Adversarial Nets" (the label given to
  both networks).
- Projection discriminator: Miyato & Koyama 2018, "cGANs with Projection Discriminator". With features
  phi(x), D(x, y) = psi(phi(x)) + <embed(y), phi(x)>: the log density ratio of a conditional model whose
  class posterior is log-linear in phi, rather than the label concatenated to the input or to a hidden
  layer, which the paper shows conditions more weakly. Trained with the hinge loss, as in the paper.

The generator is DCGAN's (`nn.convnets.ConvDecoder`) with a learned label embedding concatenated to z.
We chose concatenation over conditional batch norm here because the decoder is shared and unchanged: its
linear stem turns [z, e(y)] into a class-dependent bottom feature map, which is enough for ten classes on
small images. Conditional batch norm, which modulates every layer, is what `sagan` uses.

The model is class-conditional only: it always trains with the labels (they are a required input, so
`--condition label` is implied) and refuses data without classes. Without labels at sampling it draws
every class in turn, as evaluation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...batch import LABEL, Batch
from ...data.base import DataSpec
from ...errors import ArgumentError
from ...nn.convnets import ConvDecoder, ConvEncoder
from .adversarial import AdversarialConfig, AdversarialModel
from .losses import AdversarialLoss


@dataclass
class CGANConfig(AdversarialConfig):
    loss: AdversarialLoss = "hinge"
    label_dim: int = 32  # size of the label embedding concatenated to z
    generator_channels: int = 32
    discriminator_channels: int = 32


class ProjectionDiscriminator(nn.Module):
    """(x, y) -> psi(phi(x)) + <embed(y), phi(x)>, one raw score per item (B, 1); psi alone without classes."""

    def __init__(self, phi: nn.Module, psi: nn.Linear, num_classes: int):
        super().__init__()
        self.phi, self.psi = phi, psi
        self.embed = nn.Embedding(num_classes, psi.in_features) if num_classes else None
        if self.embed is not None:  # N(0, 1) rows over thousands of features would swamp psi at the start
            nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.phi(x)  # (B, F)
        out = self.psi(features)  # (B, 1)
        if self.embed is not None:
            out = out + (self.embed(labels) * features).sum(1, keepdim=True)
        return out


def labels_or_every_class(conditions: Batch, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """The labels asked for, else every class in turn (0, 1, ..., 9, 0, ...): no random draw to seed."""
    labels = conditions.get(LABEL)
    return labels if labels is not None else torch.arange(n, device=device) % num_classes


class LabelConcatGenerator(nn.Module):
    """(z, y) -> images: [z, embed(y)] through a DCGAN decoder and tanh."""

    def __init__(self, latent_dim: int, label_dim: int, num_classes: int, channels: int, size: int, width: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, label_dim)
        self.decoder = nn.Sequential(ConvDecoder(latent_dim + label_dim, channels, size, width, norm="batch"),
                                     nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, self.embed(labels).to(z.dtype)], dim=1))  # (B, C, H, W)


class CGAN(AdversarialModel):
    description = "class-conditional GAN: label-embedding DCGAN generator vs projection discriminator, hinge loss"
    config_class = CGANConfig
    data_kinds = ("image",)
    accepted_conditions = (LABEL,)
    required_inputs = (LABEL,)  # every run trains with the labels, --condition label or not
    # DCGAN's convolutions: on mnist, 2 cores, fp32, a training step ran 12% faster in it (3 interleaved pairs)
    prefers_channels_last = True

    def __init__(self, config: CGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        if not spec.num_classes:
            raise ArgumentError("cgan is class-conditional: it trains with --condition label and needs data "
                                "with classes (e.g. digits, mnist); for unlabelled images use dcgan")
        super().__init__(config, spec, conditions)
        c, size = self.data_shape[0], self.data_shape[-1]
        self.generator = LabelConcatGenerator(config.latent_dim, config.label_dim, self.num_classes, c, size,
                                              config.generator_channels)
        encoder = ConvEncoder(c, size, config.discriminator_channels, 1, norm="batch")
        # phi: the encoder's convolutional features, flattened; psi: its linear head
        self.discriminator = ProjectionDiscriminator(nn.Sequential(encoder.features, nn.Flatten()), encoder.head,
                                                     self.num_classes)

    def generate(self, z: torch.Tensor, conditions: Batch, generator: torch.Generator | None = None,
                 **options: Any) -> torch.Tensor:
        return self.generator(z, labels_or_every_class(conditions, len(z), self.num_classes, z.device))

    def discriminate(self, x: torch.Tensor, conditions: Batch) -> torch.Tensor:
        return self.discriminator(x, conditions[LABEL])
