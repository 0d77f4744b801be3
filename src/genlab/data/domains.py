"""`domains:A+B`: two unpaired image domains, for translation between them (CycleGAN-style).

Each domain is any in-memory image set (`digits`, `mnist`, `imagefolder:PATH`...) loaded by name;
both are brought to one square size (--image-size, default the larger of the two) and one channel
count (a grayscale domain is repeated to RGB when the other is colour). A batch is
{"x": (B, C, S, S) from A, "x_b": (B, C, S, S) from B}. Each domain runs through its own epochs in
its own seeded order, so the two may differ in length and no pairing is implied. Labels are dropped:
`x_b` is listed in spec.extras["inputs"], not in spec.conditions, and models declare what they read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..batch import X, X_B, Batch
from ..config import from_dict
from ..errors import ArgumentError, DataError
from .base import DataSource, Dataset, DataSpec, DatasetInfo, LoadOptions, load_data, register
from .images import resize


@dataclass(frozen=True)
class DomainsOptions:
    data_dir_a: str = ""  # files of domain A (default --data-dir, else the set's own default)
    data_dir_b: str = ""


def _stored(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x  # a memory map is read into RAM


def _conform(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """(N, c, h, w) uint8 or float -> (N, channels, size, size), same dtype."""
    x = resize(x, size)
    return x.expand(-1, channels, -1, -1).contiguous() if x.shape[1] != channels else x


class DomainPair(DataSource):
    """Two image sets drawn side by side, each in its own epoch order."""

    def __init__(self, a: Dataset, b: Dataset, notes: list[str]):
        self.a, self.b = a, b
        self.name, self.source, self.notes = f"domains:{a.name}+{b.name}", f"{a.source} + {b.source}", notes
        self.spec = DataSpec("image", a.shape, extras={"inputs": [X_B], "domains": [a.name, b.name]})

    def train_size(self) -> int:
        return min(a.train_size() for a in (self.a, self.b))  # the smaller domain bounds the batch size

    def train_batch(self, index, batch_size, *, seed, rank=0, world_size=1, device="cpu") -> Batch:
        a = self.a.train_batch(index, batch_size, seed=seed, rank=rank, world_size=world_size, device=device)
        # seed + 1: B's order is not A's even when the two have the same length (no accidental pairing)
        b = self.b.train_batch(index, batch_size, seed=seed + 1, rank=rank, world_size=world_size, device=device)
        return {X: a[X], X_B: b[X]}

    def validation(self, n=None) -> Batch:
        return {X: self.a.validation(n)[X], X_B: self.b.validation(n)[X]}

    def describe(self) -> str:
        return (f"{self.name}: {self.a.train_size()} + {self.b.train_size()} unpaired training images, "
                f"item shape {self.shape}")


def load_domains(argument: str, opts: LoadOptions) -> DomainPair:
    """`domains:A+B` -> unpaired domains A and B (options: data_dir_a, data_dir_b)."""
    o = from_dict(DomainsOptions, opts.options, "domains options")
    name_a, plus, name_b = argument.partition("+")
    if not plus or not name_a or not name_b:
        raise ArgumentError(f"domains:{argument} names no two domains; give domains:A+B, e.g. domains:digits+mnist")
    parts = []
    for name, data_dir in ((name_a, o.data_dir_a), (name_b, o.data_dir_b)):
        part = load_data(name, LoadOptions(data_dir=data_dir or opts.data_dir, download=opts.download,
                                           seed=opts.seed, val_fraction=opts.val_fraction))
        if not isinstance(part, Dataset) or part.kind != "image":
            raise DataError(f"domains: '{name}' is a {part.kind} source; both domains must be sets of images")
        parts.append(part)
    (ca, _, sa), (cb, _, sb) = parts[0].shape, parts[1].shape
    if ca != cb and {ca, cb} != {1, 3}:
        raise DataError(f"domains: {name_a} has {ca} channels and {name_b} {cb}; only gray and RGB can be matched")
    size, channels = opts.image_size or max(sa, sb), max(ca, cb)
    notes = [f"both domains as {channels}x{size}x{size}; A: {parts[0].describe()}; B: {parts[1].describe()}"]
    a, b = (Dataset(p.name, _conform(_stored(p.stored_train), size, channels), None,
                    _conform(_stored(p.stored_val), size, channels), None, source=p.source) for p in parts)
    return DomainPair(a, b, notes)


register(DatasetInfo("domains", "two unpaired image sets for translation, e.g. domains:digits+mnist",
                     "two datasets", "CxSxS", "none", load_domains,
                     scheme=True, usage="domains:A+B",
                     options={"data_dir_a": "files of domain A (default --data-dir)",
                              "data_dir_b": "files of domain B (default --data-dir)"}))
