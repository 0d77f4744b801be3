"""The Dataset container and the name -> loader registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch

from ..errors import UnknownNameError


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) in [-1, 1], or (N, D) points
    y_train: torch.Tensor | None  # (N,) int64 class labels, or None
    x_val: torch.Tensor
    y_val: torch.Tensor | None
    kind: Literal["image", "points"] = "image"
    class_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one item, e.g. (1, 28, 28)."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def describe(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes else ", unlabelled"
        return f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val, item shape {self.shape}{classes}"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    source: str
    shape: str
    classes: str
    loader: Callable[..., Dataset]
    needs_files: bool = False


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    _REGISTRY[info.name] = info


def dataset_infos() -> list[DatasetInfo]:
    _ensure_loaded()
    return list(_REGISTRY.values())


def _ensure_loaded() -> None:
    from . import images, toy  # noqa: F401  (they register themselves)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> Dataset:
    """Load a dataset by name.

    Args:
        name: a registered name (`genlab datasets` lists them) or `imagefolder:PATH`.
        data_dir: directory with the dataset's files (IDX .gz, CIFAR batches); defaults to ./data/NAME.
        image_size: resize images to this square size (default: the dataset's native size).
        download: fetch missing files from the official source and check their checksums.
        seed: seed of the train/validation split.
        val_fraction: share held out for validation when the source has no separate split.
    """
    _ensure_loaded()
    if name.startswith("imagefolder:"):
        from .images import load_imagefolder

        return load_imagefolder(name.split(":", 1)[1], image_size=image_size, seed=seed, val_fraction=val_fraction)
    if name not in _REGISTRY:
        raise UnknownNameError("dataset", name, list(_REGISTRY) + ["imagefolder:PATH"])
    info = _REGISTRY[name]
    kwargs = dict(seed=seed, val_fraction=val_fraction)
    if info.needs_files:
        kwargs.update(data_dir=data_dir, download=download)
    if info.loader.__name__ != "load_points":
        kwargs["image_size"] = image_size
    return info.loader(name, **kwargs)


def split(x: torch.Tensor, y: torch.Tensor | None, val_fraction: float, seed: int):
    """Fixed-seed random split into (x_train, y_train, x_val, y_val)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = perm[:n_val], perm[n_val:]
    pick = (lambda t, i: None if t is None else t[i])
    return x[train], pick(y, train), x[val], pick(y, val)
