"""What every data source is, the in-memory one, and the registry of named datasets and schemes.

A data source hands the trainer batch number `index` of process `rank` as a dict of named tensors
(`genlab.batch`). By contract a batch is a function of (seed, index, rank, world_size, batch_size) and
nothing else, so a resumed run draws exactly the batches the uninterrupted run would have drawn.

Names resolve in one place, `load_data`: a registered dataset name (`digits`, `mnist`...) or a scheme
`SCHEME:ARGUMENT` (`imagefolder:PATH`, `text:PATH`...). Each registers itself with the loader that parses
it; nothing is recognised by the name of a function.
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..batch import CONDITIONS, LABEL, X, Batch
from ..errors import ArgumentError, DataError, UnknownNameError

Kind = Literal["image", "points", "tokens", "series", "audio"]


@dataclass(frozen=True)
class DataSpec:
    """What one item looks like: all a model needs to be built for the data."""

    kind: Kind
    shape: tuple[int, ...]  # one item of x: (C, H, W), (D,), (T,) tokens, (C, T) series
    num_classes: int = 0
    class_names: tuple[str, ...] | None = None
    vocab_size: int = 0  # tokens: size of the vocabulary of x (and of text/source unless given apart)
    conditions: tuple[str, ...] = ()  # condition tensors the batches carry (label, text, source, x_b...)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. pad_id, sample_rate, source_vocab_size

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape), "num_classes": self.num_classes,
                "class_names": list(self.class_names) if self.class_names else None, "vocab_size": self.vocab_size,
                "conditions": list(self.conditions), "extras": dict(self.extras)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        names = d.get("class_names")
        return cls(kind=d.get("kind", "image"), shape=tuple(d["shape"]), num_classes=int(d.get("num_classes", 0)),
                   class_names=tuple(names) if names else None, vocab_size=int(d.get("vocab_size", 0)),
                   conditions=tuple(d.get("conditions", ("label",) if d.get("num_classes") else ())),
                   extras=dict(d.get("extras") or {}))


@dataclass
class LoadOptions:
    """Everything a loader may be told, the same for every loader."""

    data_dir: str | Path | None = None
    image_size: int | None = None
    download: bool = False
    seed: int = 0
    val_fraction: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)  # scheme-specific (block_size, tokenizer...)
    assets: dict[str, bytes] | None = None  # a run's saved tokenizer/statistics: reuse, never refit
    # classes dropped from the training split, kept in validation (a run that has never seen them:
    # anomaly detection's held-out class); applied by `load_data` through `DataSource.without_classes`
    exclude_classes: tuple[int, ...] = ()


class DataSource(abc.ABC):
    """A source of training batches and held-out items."""

    name: str
    spec: DataSpec
    source: str = ""
    notes: list[str]

    @abc.abstractmethod
    def train_batch(self, index: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                    device: torch.device | str = "cpu") -> Batch:
        """Batch number `index` of process `rank`, on `device`; a function of its arguments only."""

    @abc.abstractmethod
    def train_size(self) -> int:
        """Training items (or windows) in one pass; a batch larger than this is refused."""

    @abc.abstractmethod
    def validation(self, n: int | None = None) -> Batch:
        """The first n held-out items (all if None), always the same ones, on the CPU."""

    def assets(self) -> dict[str, bytes]:
        """Files the run must keep to read this data again the same way (tokenizer, normalisation)."""
        return {}

    def without_classes(self, classes: tuple[int, ...]) -> "DataSource":
        """This source with the items of `classes` dropped from training and kept in validation."""
        raise ArgumentError(f"{self.name} is a {self.kind} source without per-item classes; "
                            "--exclude-class needs labelled data (see `genlab datasets`)")

    # shorthands most callers want
    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def class_names(self) -> list[str] | None:
        return list(self.spec.class_names) if self.spec.class_names else None

    def describe(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        return f"{self.name}: {self.train_size()} training items, item shape {self.shape} ({self.kind}){classes}"


def decode(x: torch.Tensor) -> torch.Tensor:
    """Stored items -> float32 model input: uint8 images to [-1, 1], floats as they are."""
    return x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of n items that epoch `epoch` visits (CPU, seeded; cached for the epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_777 + epoch))


def epoch_position(n: int, index: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """(epoch, first position in that epoch's order) of batch `index` for `rank`."""
    global_batch = batch_size * world_size
    per_epoch = n // global_batch
    if per_epoch < 1:
        raise ArgumentError(f"the data has {n} training items, fewer than one batch of {global_batch}; "
                            "lower --batch-size")
    epoch, i = divmod(index, per_epoch)
    return epoch, i * global_batch + rank * batch_size


def epoch_indices(n: int, index: int, batch_size: int, seed: int, rank: int, world_size: int) -> torch.Tensor:
    """Item indices of batch `index` for `rank`: every process takes its slice of one global batch."""
    epoch, start = epoch_position(n, index, batch_size, rank, world_size)
    return epoch_order(n, seed, epoch)[start : start + batch_size]


class Dataset(DataSource):
    """Items held in memory (or memory-mapped): images, points, or any fixed-shape arrays, optional labels,
    and optional further per-item tensors (captions: `text` and `text_mask`).

    8-bit images stay uint8 (4x smaller than float32) and are decoded to [-1, 1] per batch on the
    device. `x_train`/`x_val` give the decoded float tensors for evaluation.
    """

    def __init__(self, name: str, x_train, y_train: torch.Tensor | None, x_val, y_val: torch.Tensor | None,
                 kind: Kind = "image", class_names: list[str] | None = None, source: str = "",
                 notes: list[str] | None = None, extras: dict[str, Any] | None = None,
                 items_train: dict[str, torch.Tensor] | None = None, items_val: dict[str, torch.Tensor] | None = None,
                 assets: dict[str, bytes] | None = None):
        self.name = name
        self.stored_train, self.stored_val = x_train, x_val  # uint8 or float; tensor or np.memmap
        self.y_train, self.y_val = y_train, y_val
        self.items_train, self.items_val = dict(items_train or {}), dict(items_val or {})
        self._assets = dict(assets or {})
        self.source = source
        self.notes = list(notes or [])
        conditions = (LABEL,) if class_names and y_train is not None else ()
        conditions += tuple(k for k in self.items_train if k in CONDITIONS)
        self.spec = DataSpec(kind, tuple(x_train.shape[1:]), len(class_names) if class_names else 0,
                             tuple(class_names) if class_names else None, conditions=conditions,
                             extras=dict(extras or {}))
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._decoded: dict[str, torch.Tensor] = {}
        self._order_cache: dict = {}

    # ------------------------------------------------------------------ evaluation-side views
    def _decode_all(self, which: str) -> torch.Tensor:
        if which not in self._decoded:
            stored = self.stored_train if which == "train" else self.stored_val
            if isinstance(stored, np.ndarray):  # a memory map is read-only: copy it, never alias it
                stored = torch.from_numpy(np.array(stored))
            self._decoded[which] = decode(stored)
        return self._decoded[which]

    @property
    def x_train(self) -> torch.Tensor:
        return self._decode_all("train")

    @property
    def x_val(self) -> torch.Tensor:
        return self._decode_all("val")

    # ------------------------------------------------------------------ DataSource
    def train_size(self) -> int:
        return len(self.stored_train)

    def train_batch(self, index, batch_size, *, seed, rank=0, world_size=1, device="cpu") -> Batch:
        if isinstance(self.stored_train, np.ndarray):  # memory-mapped: gather on the host, copy over
            idx = epoch_indices(len(self.stored_train), index, batch_size, seed, rank, world_size)
            x = torch.from_numpy(np.ascontiguousarray(self.stored_train[np.sort(idx.numpy())]))
            order = torch.argsort(torch.argsort(idx))  # back to the permuted order
            x = x[order]
            if torch.device(device).type == "cuda":
                x = x.pin_memory()
            batch = {X: decode(x.to(device, non_blocking=True))}
            if self.y_train is not None:
                batch[LABEL] = self.y_train[idx].to(device, non_blocking=True)
            batch.update({k: v[idx].to(device, non_blocking=True) for k, v in self.items_train.items()})
            return batch
        key = str(device)
        if key not in self._on_device:  # the whole (compact) training set lives on the device once
            y = self.y_train.to(device) if self.y_train is not None else None
            items = {k: v.to(device) for k, v in self.items_train.items()}
            self._on_device[key] = (self.stored_train.to(device), y, items)
        x_all, y_all, items = self._on_device[key]
        epoch, start = epoch_position(len(x_all), index, batch_size, rank, world_size)
        idx = self._order_on(x_all.device, seed, epoch)[start : start + batch_size]
        batch = {X: decode(x_all[idx])}
        if y_all is not None:
            batch[LABEL] = y_all[idx]
        batch.update({k: v[idx] for k, v in items.items()})
        return batch

    def _order_on(self, device: torch.device, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's order, copied to the device once per epoch: no host-to-device copy per batch."""
        key = (str(device), seed, epoch)
        if self._order_cache.get("key") != key:
            self._order_cache = {"key": key, "order": epoch_order(len(self.stored_train), seed, epoch).to(device)}
        return self._order_cache["order"]

    def validation(self, n=None) -> Batch:
        n = len(self.stored_val) if n is None else min(n, len(self.stored_val))
        batch = {X: self.x_val[:n]}
        if self.y_val is not None:
            batch[LABEL] = self.y_val[:n]
        batch.update({k: v[:n] for k, v in self.items_val.items()})
        return batch

    def assets(self) -> dict[str, bytes]:
        return dict(self._assets)

    def without_classes(self, classes: tuple[int, ...]) -> "Dataset":
        classes = tuple(sorted({int(c) for c in classes}))
        if self.y_train is None or not self.num_classes:
            return super().without_classes(classes)
        outside = [c for c in classes if not 0 <= c < self.num_classes]
        if outside:
            raise ArgumentError(f"--exclude-class {outside[0]}: {self.name} has classes 0..{self.num_classes - 1}")
        keep = ~torch.isin(self.y_train, torch.tensor(classes, dtype=self.y_train.dtype))
        if not keep.any():
            raise ArgumentError(f"--exclude-class {', '.join(map(str, classes))} leaves no training items in {self.name}")
        stored = self.stored_train[keep.numpy()] if isinstance(self.stored_train, np.ndarray) else self.stored_train[keep]
        shown = ", ".join(self.spec.class_names[c] if self.spec.class_names else str(c) for c in classes)
        note = (f"class(es) {shown} excluded from training ({int((~keep).sum())} of {len(keep)} items dropped); "
                "validation keeps every class")
        # the spec stays that of the whole data set (same classes), so labels and models mean the same
        return Dataset(self.name, stored, self.y_train[keep], self.stored_val, self.y_val, kind=self.spec.kind,
                       class_names=list(self.spec.class_names) if self.spec.class_names else None, source=self.source,
                       notes=[*self.notes, note], extras=self.spec.extras,
                       items_train={k: v[keep] for k, v in self.items_train.items()}, items_val=self.items_val,
                       assets=self._assets)

    def describe(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes else ", unlabelled"
        return f"{self.name}: {len(self.stored_train)} train / {len(self.stored_val)} val, item shape {self.shape}{classes}"


# ---------------------------------------------------------------------------------------------- registry
Loader = Callable[[str, LoadOptions], DataSource]


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset (`mnist`) or a scheme (`text`, used as `text:PATH`)."""

    name: str
    description: str
    source: str
    shape: str
    classes: str
    loader: Loader  # loader(name_or_argument, options) -> DataSource
    needs_files: bool = False
    scheme: bool = False  # True: used as NAME:ARGUMENT
    usage: str = ""  # e.g. "text:PATH"
    options: dict[str, str] = field(default_factory=dict)  # scheme option -> help (--set train.data_options.K=V)


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    _REGISTRY[info.name] = info


def dataset_infos() -> list[DatasetInfo]:
    _ensure_loaded()
    return list(_REGISTRY.values())


def _ensure_loaded() -> None:
    import importlib

    # each module registers what it provides; a module missing an optional dependency registers nothing
    for module in ("images", "toy", "text", "sequences", "number_words", "series", "domains", "imagecache", "shapes"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{module}":
                raise


def load_data(name: str, options: LoadOptions | None = None, **kwargs: Any) -> DataSource:
    """Any data source by name or `SCHEME:ARGUMENT`; `kwargs` fill LoadOptions."""
    _ensure_loaded()
    opts = options or LoadOptions(**kwargs)
    scheme, sep, argument = name.partition(":")
    if sep and scheme in _REGISTRY and _REGISTRY[scheme].scheme:
        if not argument:
            raise ArgumentError(f"'{name}' needs an argument: {_REGISTRY[scheme].usage}")
        data = _REGISTRY[scheme].loader(argument, opts)
    else:
        info = _REGISTRY.get(name)
        if info is None or info.scheme:
            valid = [i.usage if i.scheme else i.name for i in _REGISTRY.values()]
            raise UnknownNameError("dataset", name, valid)
        data = info.loader(name, opts)
    return data.without_classes(tuple(opts.exclude_classes)) if opts.exclude_classes else data


def load_dataset(name: str, data_dir: str | Path | None = None, image_size: int | None = None,
                 download: bool = False, seed: int = 0, val_fraction: float = 0.1,
                 options: dict[str, Any] | None = None) -> Dataset:
    """An in-memory dataset (images or points) by name, for evaluation and the like.

    Args:
        name: a registered name (`genlab datasets` lists them) or `imagefolder:PATH`.
        data_dir: directory with the dataset's files (IDX .gz, CIFAR batches); defaults to ./data/NAME.
        image_size: resize images to this square size (default: the dataset's native size).
        download: fetch missing files from the official source and check their checksums.
        seed: seed of the train/validation split.
        val_fraction: share held out for validation when the source has no separate split.
        options: the data set's own options (`genlab datasets` lists them), e.g. {"radius": 1.0} for 8gaussians.
    """
    data = load_data(name, LoadOptions(data_dir, image_size, download, seed, val_fraction, options=dict(options or {})))
    if not isinstance(data, Dataset):
        raise DataError(f"'{name}' is a {data.kind} source, not an in-memory set of images or points")
    return data


def split(x, y: torch.Tensor | None, val_fraction: float, seed: int):
    """Fixed-seed random split into (x_train, y_train, x_val, y_val)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = perm[:n_val], perm[n_val:]
    pick = (lambda t, i: None if t is None else t[i])
    return x[train], pick(y, train), x[val], pick(y, val)
