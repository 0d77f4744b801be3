"""The contract every genlab model meets, whatever its family.

A model
- is built from its config dataclass, the shape of one data item and the number of classes (0 = none);
- names its optimizer groups (`optimizer_groups`): one for most models, "discriminator" and "generator"
  for GANs. The trainer steps the groups in that order, each with its own optimizer, without knowing
  what a GAN is;
- computes the training loss of one group from a batch (`training_loss`), drawing all randomness from
  the `generator` it is given, so a run is reproducible and a resumed run repeats the same draws;
- samples n items, optionally for given class labels (`sample`);
- where it has one, gives bits per dimension on data (`bits_per_dim`) and says if it is exact or a bound.
`forward` stays a plain network call.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..errors import ArgumentError


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate
    logs: dict[str, float] = field(default_factory=dict)  # detached numbers for metrics.jsonl


class GenerativeModel(nn.Module, abc.ABC):
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_class: ClassVar[type]
    # Trainer settings this model trains well with unless the user says otherwise (lr, batch_size, betas...).
    train_defaults: ClassVar[dict[str, Any]] = {}
    likelihood: ClassVar[Literal["exact", "bound", "none"]] = "none"

    def __init__(self, config: Any, data_shape: tuple[int, ...], num_classes: int = 0):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def conditional(self) -> bool:
        """Whether samples can be asked for by class label (the data has classes and the config uses them)."""
        return bool(self.num_classes) and bool(getattr(self.config, "class_conditional", False))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer, in the order the trainer steps them."""
        return {"model": [p for p in self.parameters() if p.requires_grad]}

    @abc.abstractmethod
    def training_loss(self, x: torch.Tensor, labels: torch.Tensor | None, group: str,
                      generator: torch.Generator) -> LossOutput:
        """The loss of optimizer group `group` on batch `x` (with its labels, if the data has them)."""

    @abc.abstractmethod
    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        """n samples of shape (n, *data_shape) in the data range; labels (n,) for class-conditional models."""

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood per dimension in bits, per item (B,); see `likelihood` for exact vs bound."""
        raise TypeError(f"{type(self).__name__} has no likelihood (likelihood='none')")

    def sample_options(self) -> dict[str, Any]:
        """Default sampling options, shown by `genlab info` and recorded with every evaluation."""
        return {}

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise on this model's device, from `generator`."""
        p = next(self.parameters())
        return torch.randn(shape, generator=generator, device=p.device, dtype=p.dtype)

    def check_labels(self, n: int, labels: torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        if not self.conditional:
            raise ArgumentError(f"{type(self).__name__} was trained without labels; sample without --labels")
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if len(labels) != n or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ArgumentError(f"labels must be {n} integers in [0, {self.num_classes}), got {labels.tolist()[:8]}...")
        return labels
