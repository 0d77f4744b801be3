"""The locked protocol every score is stored with, and the reference statistics computed once per protocol.

A protocol records the feature network (name and weights sha256), the data, the reference split and its
size, the number of samples, k of precision/recall, the KID subsets, the sampler and its steps, and the
seed. The fields that change what a number means must agree before two scores share a column in
`genlab report`: the feature network and its weights, the data and reference, the sample count (FID is
biased by it) and k. Sampler, steps and seed are recorded but do not split columns: sampler and steps
are what a comparison across runs varies (a GAN takes one network call, DDPM a thousand), and the seed
moves scores only by noise. KID is unbiased, so its subset settings change its spread, not its value.

Reference statistics (the real images' features, their mean and covariance, predicted classes, and the
k-NN radii for precision/recall) are cached under `$GENLAB_CACHE/reference/`, keyed by the feature
network's hash and a hash of the exact reference images, so they are computed once per protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from ..data import Dataset
from ..errors import EvalInputError
from .features import FeatureExtractor, cache_root, fingerprint, quantize, save_tensors
from .frechet import feature_statistics
from .prdc import knn_radii

COMPARABLE_FIELDS = ("features", "features_sha256", "data", "reference_split", "reference_size", "num_samples", "k")


@dataclass(frozen=True)
class Protocol:
    features: str
    features_sha256: str
    data: str
    reference_split: str
    reference_size: int
    num_samples: int
    k: int
    kid_subsets: int
    kid_subset_size: int
    sampler: str | None
    steps: int | None
    seed: int

    def comparable(self) -> tuple:
        """The fields that must agree for two scores to be compared."""
        return tuple(getattr(self, f) for f in COMPARABLE_FIELDS)

    def differences(self, other: "Protocol") -> list[str]:
        """Human-readable list of the comparable fields in which two protocols differ."""
        out = []
        for f in COMPARABLE_FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                short = (lambda v: v[:12]) if f == "features_sha256" else (lambda v: v)
                out.append(f"{f} {short(a)} vs {short(b)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Protocol":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Reference:
    """Real images seen through a feature network, with what the metrics need from them."""

    split: str
    size: int
    key: str
    features: torch.Tensor  # (N, D) float32
    mu: torch.Tensor  # (D,) float64
    sigma: torch.Tensor  # (D, D) float64
    predicted: torch.Tensor | None  # (N,) classes predicted by the feature network, if it is a data classifier

    def radii(self, k: int) -> torch.Tensor:
        """Squared k-NN radii of the reference features (precision/recall/density/coverage), cached."""
        path = cache_root() / "reference" / f"{self.key}-radii-k{k}.safetensors"
        tensors = _read(path)
        if tensors is not None and len(tensors["radii"]) == self.size:
            return tensors["radii"]
        radii = knn_radii(self.features, k)
        save_tensors({"radii": radii}, path)
        return radii


def reference_images(dataset: Dataset, split: str, size: int, seed: int = 0) -> torch.Tensor:
    """`size` images of `split` ("train" or "val"), a fixed-seed subset when the split is larger."""
    if split not in ("train", "val"):
        raise EvalInputError(f"reference split must be 'train' or 'val', got '{split}'")
    x = dataset.x_train if split == "train" else dataset.x_val
    if len(x) == 0:
        other = "val" if split == "train" else "train"
        raise EvalInputError(f"{dataset.name} has an empty {split} split; use --reference {other}")
    if size < len(x):
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        x = x[idx]
    return x


def reference_stats(extractor: FeatureExtractor, dataset: Dataset, split: str = "train", size: int = 10_000,
                    seed: int = 0, batch_size: int = 500) -> Reference:
    """Reference statistics for (feature network, exact reference images), from the cache or computed now."""
    x = reference_images(dataset, split, size, seed)
    x = quantize(x) if dataset.kind == "image" else x
    key = hashlib.sha256(json.dumps([extractor.name, extractor.sha256, fingerprint(x)]).encode()).hexdigest()[:32]
    path = cache_root() / "reference" / f"{key}.safetensors"
    tensors = _read(path)
    if tensors is None:
        feats, logits = extractor(x, batch_size)
        mu, sigma = feature_statistics(feats)
        tensors = {"features": feats, "mu": mu, "sigma": sigma}
        if logits is not None and extractor.num_classes:
            tensors["predicted"] = logits.argmax(1)
        save_tensors(tensors, path)
    return Reference(split, len(x), key, tensors["features"], tensors["mu"], tensors["sigma"], tensors.get("predicted"))


def _read(path) -> dict[str, torch.Tensor] | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        return None
    try:
        return load_file(path)
    except (SafetensorError, OSError):
        return None  # a cut-off write: recompute


