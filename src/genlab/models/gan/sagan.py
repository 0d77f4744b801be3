"""SAGAN (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks").

What we follow from the paper:
- spectral normalisation (Miyato et al. 2018) on every convolution and linear layer of both networks,
  the generator included (the paper's finding: it stabilises G too); one power iteration per call;
- a self-attention block (`nn.self_attention.SelfAttention2d`, gamma starting at 0) in G and in D at a
  middle resolution (14x14 for 28x28 images), between residual blocks;
- the ResNet blocks of Miyato et al. (2018) / Miyato & Koyama (2018): G's BN-ReLU-upsample-conv-BN-ReLU-conv
  with an upsample-conv1x1 shortcut; D's ReLU-conv-ReLU-conv-avgpool with a conv1x1-avgpool shortcut,
  ReLU and global sum pooling at the end;
- hinge loss, Adam betas (0, 0.9) and the two time-scale update rule: G at 1e-4, D at 4 times that;
- with --condition label: conditional batch norm in G (de Vries et al. 2017; per-class gains and biases)
  and a projection discriminator (Miyato & Koyama 2018, `cgan.ProjectionDiscriminator`).
Smaller than the paper's (base width 32, latent 128, no attention at several scales) so that 28x28
trains on a CPU.

The power iteration runs only in training mode with gradients on: a loss measured under no_grad (a
check, a log) then leaves the normalisation where it was, so measuring twice gives the same number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ...batch import LABEL, Batch
from ...data.base import DataSpec
from ...nn.convnets import downsample_plan
from ...nn.self_attention import SelfAttention2d
from .adversarial import AdversarialConfig, AdversarialModel
from .cgan import ProjectionDiscriminator, labels_or_every_class
from .losses import AdversarialLoss


@dataclass
class SAGANConfig(AdversarialConfig):
    latent_dim: int = 128  # the paper's z
    loss: AdversarialLoss = "hinge"
    discriminator_lr_scale: float = 4.0  # TTUR: D 4e-4 against G 1e-4
    generator_channels: int = 32  # the paper's 64 per stage at 128x128; 32 keeps 28x28 fast on a CPU
    discriminator_channels: int = 32
    attention: bool = True  # False: the SN-ResNet baseline the paper compares against


def _power_iterate_only_with_gradients(layer: nn.Module, args) -> None:
    # torch runs the power iteration whenever the parametrization is in training mode: tie it to gradients
    layer.parametrizations.weight[0].train(layer.training and torch.is_grad_enabled())


def spectrally_normalise(module: nn.Module, embeddings: bool = False) -> nn.Module:
    """Spectral norm on every conv and linear layer of `module`, and its embeddings if asked (in place)."""
    kinds = (nn.Conv2d, nn.Linear, nn.Embedding) if embeddings else (nn.Conv2d, nn.Linear)
    for layer in list(module.modules()):
        if isinstance(layer, kinds) and not hasattr(layer, "parametrizations"):
            spectral_norm(layer)
            layer.register_forward_pre_hook(_power_iterate_only_with_gradients)
    return module


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm with per-class gain and bias looked up from embeddings (gain 1, bias 0 at the start);
    with no classes, ordinary batch norm with learned affine parameters."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=not num_classes)
        self.gain = nn.Embedding(num_classes, channels) if num_classes else None
        self.bias = nn.Embedding(num_classes, channels) if num_classes else None
        if num_classes:
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        if self.gain is None:
            return h
        return h * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GeneratorBlock(nn.Module):
    """Upsampling residual block: (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, labels)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """Residual block, average-pooled by 2 when `down`. The first block of D takes the image itself: no
    ReLU before its first conv, and its shortcut pools before the 1x1 conv (Miyato et al.'s optimized block)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if (down or in_channels != out_channels) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.shortcut is None:
            skip = x
        elif self.first:
            skip = self.shortcut(self._pool(x))
        else:
            skip = self._pool(self.shortcut(x))
        return self._pool(h) + skip


def _attention_after(stages: int) -> int:
    """Index of the block after which attention sits: the middle of the resolutions (28 -> 14, 32 -> 16)."""
    return (stages - 1) // 2


class Generator(nn.Module):
    """(z, y) -> (B, C, H, W): a linear stem to the bottom size, upsampling residual blocks, attention, tanh."""

    def __init__(self, latent_dim: int, out_channels: int, size: int, width: int, num_classes: int,
                 attention: bool):
        super().__init__()
        stages, bottom = downsample_plan(size)
        ch = min(width * 2**stages, width * 8)
        self.stem_shape = (ch, bottom, bottom)
        self.stem = nn.Linear(latent_dim, ch * bottom * bottom)
        self.blocks = nn.ModuleList()
        for _ in range(stages):
            self.blocks.append(GeneratorBlock(ch, max(ch // 2, width), num_classes))
            ch = max(ch // 2, width)
        attention = attention and stages > 0
        self.attention_index = _attention_after(stages) if attention else -1
        self.attention = SelfAttention2d(self.blocks[self.attention_index].conv2.out_channels) if attention else None
        self.norm = nn.BatchNorm2d(ch)
        self.out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(z).view(-1, *self.stem_shape)  # (B, C0, bottom, bottom)
        for i, block in enumerate(self.blocks):
            h = block(h, labels)
            if i == self.attention_index:
                h = self.attention(h)
        return torch.tanh(self.out(F.relu(self.norm(h))))


class DiscriminatorFeatures(nn.Module):
    """phi: (B, C, H, W) -> (B, F): downsampling residual blocks with attention, one more block at the bottom,
    ReLU and a sum over positions."""

    def __init__(self, in_channels: int, size: int, width: int, attention: bool):
        super().__init__()
        stages, _ = downsample_plan(size)
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(stages):
            out = min(width * 2**i, width * 8)
            layers.append(DiscriminatorBlock(ch, out, down=True, first=i == 0))
            ch = out
            if attention and i == _attention_after(stages):
                layers.append(SelfAttention2d(ch))
        layers.append(DiscriminatorBlock(ch, max(ch, width), down=False, first=not stages))
        self.features = nn.Sequential(*layers)
        self.out_features = max(ch, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x)).sum(dim=(2, 3))  # (B, F)


class SAGAN(AdversarialModel):
    description = "SAGAN: spectrally normalised ResNet G and D with self-attention, hinge loss, TTUR"
    config_class = SAGANConfig
    data_kinds = ("image",)
    accepted_conditions = (LABEL,)
    train_defaults = {**AdversarialModel.train_defaults, "lr": 1e-4, "betas": (0.0, 0.9)}

    def __init__(self, config: SAGANConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c, size = self.data_shape[0], self.data_shape[-1]
        self.conditional = LABEL in self.conditions
        classes = self.num_classes if self.conditional else 0
        # G's conditional batch-norm gains are no linear maps and stay as they are (BigGAN would normalise
        # the layers that predict them); D's class embedding is normalised, as in Miyato & Koyama's code
        self.generator = spectrally_normalise(Generator(config.latent_dim, c, size, config.generator_channels,
                                                        classes, config.attention))
        phi = DiscriminatorFeatures(c, size, config.discriminator_channels, config.attention)
        self.discriminator = spectrally_normalise(ProjectionDiscriminator(phi, nn.Linear(phi.out_features, 1),
                                                                          classes), embeddings=True)

    def generate(self, z: torch.Tensor, conditions: Batch, generator: torch.Generator | None = None,
                 **options: Any) -> torch.Tensor:
        labels = labels_or_every_class(conditions, len(z), self.num_classes, z.device) if self.conditional else None
        return self.generator(z, labels)

    def discriminate(self, x: torch.Tensor, conditions: Batch) -> torch.Tensor:
        return self.discriminator(x, conditions[LABEL] if self.conditional else None)
