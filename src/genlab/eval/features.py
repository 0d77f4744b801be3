"""Feature networks: the yardstick that FID, KID, precision/recall/density/coverage and class coverage use.

The default is a small CNN trained on the dataset's real training images (class labels when the data
has them, else rotation prediction, Gidaris et al. 2018). For the built-in data sets that can be trained
here (`digits`, `mnist`) genlab ships the trained weights in `eval/pinned/`, because one-thread training
gives other bytes on another CPU, and other bytes are another yardstick: the packaged file's sha256 is
checked against a constant in this module on every load. For any other data (or other sizes, such as
mnist resized with --image-size 32) genlab trains the network on the fly and caches it under
`$GENLAB_CACHE/features/` (default `~/.cache/genlab`). Either way the weights sit in safetensors beside a
JSON that records the held-out accuracy and the weights' sha256, and every score carries that name and
hash, so a user sees what the yardstick was, how good it is, and whether another machine's matches.

Why not Inception-v3 by default: its ImageNet weights cannot be downloaded here, and a network trained
on 299x299 photographs sees upsampled 28x28 digits poorly. A local Inception-v3 weights file (the
pytorch-fid or torch-fidelity one) can be pointed at instead (`inception.py`). FIDs measured with
different feature networks, or with different weights of the same one, are on different scales and
are never comparable.

2-D point data needs no network: the coordinates are the features.
"""

from __future__ import annotations

import abc

import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import EvalInputError
from ..nn.convnets import downsample_plan
from ..files import cache_root, file_digest

FEATURES_VERSION = 1  # bump when the architecture or the training recipe changes: it changes every score


def fingerprint(*tensors: torch.Tensor | None) -> str:
    """sha256 over the shapes, dtypes and bytes of tensors: names data exactly, whatever it is called."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> str:
    """Write safetensors atomically (a cut-off write never sits under the final name); return its sha256."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    digest = file_digest(tmp)
    os.replace(tmp, path)
    return digest


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None, loss_fn, *, steps: int, batch_size: int,
                   lr: float, generator: torch.Generator, prepare=None, progress: str | None = None) -> None:
    """The training recipe of genlab's small classifiers (feature network, detector): Adam, minibatches
    drawn epoch by epoch from a seeded permutation, learning rate decaying linearly to zero, which lands
    a few epochs on a good minimum without tuning. `prepare(xb, yb, generator) -> (xb, yb)` may transform
    a batch (rotations); `loss_fn(net, xb, yb)` returns the loss."""
    device = next(net.parameters()).device
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    per_epoch = max(1, math.ceil(len(x) / batch_size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress, unit="step")
    net.train()
    for step in range(steps):
        i = step % per_epoch
        if i == 0:
            perm = torch.randperm(len(x), generator=generator)
        idx = perm[i * batch_size : (i + 1) * batch_size]
        xb, yb = x[idx], (None if y is None else y[idx])
        if prepare is not None:
            xb, yb = prepare(xb, yb, generator)
        loss = loss_fn(net, xb.to(device), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    net.eval()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round images in [-1, 1] to 8 bits, as saving them would: an .npz and in-memory samples score alike."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


# ---------------------------------------------------------------------------------------------- interface
class FeatureExtractor(abc.ABC):
    """Maps items to features (and, for a data classifier, class logits) in batches, without gradients."""

    name: str = ""
    sha256: str = ""
    dim: int = 0
    num_classes: int = 0  # > 0 when the logits are the data's classes (class histograms need them)
    input_shape: tuple[int, ...] | None = None  # None: any size (resized inside)
    accuracy: float | None = None
    accuracy_note: str = ""
    origin: str = ""  # where the weights come from: packaged with genlab, or trained on this machine

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def check(self, x: torch.Tensor) -> None:
        """Raise EvalInputError when `x` cannot go through this network."""
        if self.input_shape is not None and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise EvalInputError(
                f"items of shape {tuple(x.shape[1:])} do not fit the feature network '{self.name}', which takes "
                f"{tuple(self.input_shape)}. Evaluate samples of the dataset's shape (resize them, or load the data "
                f"with --image-size {x.shape[-1]} so genlab trains a feature network at that size).")

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features, class logits or None) for one batch."""

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (N, dim) and logits (N, num_classes) or None, float32 on the CPU."""
        self.check(x)
        feats, logits = [], []
        for start in range(0, len(x), batch_size):
            f, lg = self._forward(x[start : start + batch_size].to(self.device, torch.float32))
            feats.append(f.float().cpu())
            if lg is not None:
                logits.append(lg.float().cpu())
        return torch.cat(feats), (torch.cat(logits) if logits else None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "dim": self.dim, "accuracy": self.accuracy,
                "accuracy_note": self.accuracy_note, "num_classes": self.num_classes, "origin": self.origin}


class PointFeatures(FeatureExtractor):
    """2-D toy data: the coordinates themselves."""

    def __init__(self, dims: int, device: torch.device | str = "cpu"):
        super().__init__(device)
        self.name, self.dim, self.input_shape = "coordinates", dims, (dims,)
        self.sha256 = hashlib.sha256(b"identity").hexdigest()
        self.accuracy_note = "raw coordinates (no network)"
        self.origin = "no network: the coordinates are the features"

    def _forward(self, x):
        return x, None


# ---------------------------------------------------------------------------------------------- the genlab CNN
@dataclass(frozen=True)
class FeatureNetConfig:
    width: int = 16  # channels of the first conv; doubled at each stride-2 stage
    embed_dim: int = 128  # the feature vector: the classifier's penultimate layer
    epochs: int = 3
    min_steps: int = 300  # small datasets (8x8 digits: 13 batches an epoch) get more epochs
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


class FeatureCNN(nn.Module):
    """(B, C, S, S) -> (features (B, embed_dim), logits (B, num_outputs)); at most two stride-2 stages.

    Small on purpose (about 2.3 M multiply-adds for 28x28): 10,000 images take seconds on a CPU core.
    The features are the flattened maps through one linear layer, so they keep where strokes are, which a
    global average pool would throw away. They are divided by `scale`, set after training to their root
    mean square on the training images: KID's kernel (x.y / d + 1)^3 assumes features of order one, as
    Inception's are, and FIDs come out in those units whatever the training run made of the raw scale.
    """

    def __init__(self, in_channels: int, image_size: int, num_outputs: int, width: int = 16, embed_dim: int = 128):
        super().__init__()
        stages, bottom = downsample_plan(image_size, max_stages=2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
        ch = width
        for _ in range(stages):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.BatchNorm2d(ch * 2), nn.ReLU()]
            ch *= 2
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(ch * bottom * bottom, embed_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(embed_dim, num_outputs))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.embed(self.body(x))  # (B, embed_dim)
        return f / self.scale, self.head(f)


class CNNFeatures(FeatureExtractor):
    """A trained FeatureCNN with the record of how it was trained."""

    def __init__(self, net: FeatureCNN, meta: dict[str, Any], device: torch.device | str = "cpu"):
        super().__init__(device)
        self.net = net.to(self.device).eval()
        self.meta = meta
        self.name = f"genlab-cnn/{meta['data']}"
        self.sha256 = meta["weights_sha256"]
        self.dim = int(meta["config"]["embed_dim"])
        self.input_shape = tuple(meta["input_shape"])
        self.num_classes = int(meta["num_classes"]) if meta["task"] == "classes" else 0
        self.accuracy = float(meta["accuracy"])
        what = "class" if meta["task"] == "classes" else "rotation (the data has no labels)"
        self.accuracy_note = f"{what} accuracy on {meta['accuracy_split']}"

    def _forward(self, x):
        return self.net(x)


def _rotation_batch(x: torch.Tensor, _labels, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by a random multiple of 90 degrees; the label is the multiple."""
    k = torch.randint(0, 4, (len(x),), generator=generator)
    rots = torch.stack([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])  # (4, B, C, S, S)
    return rots[k, torch.arange(len(x))], k


def _targets(dataset: Dataset) -> str:
    return "classes" if dataset.y_train is not None and dataset.num_classes > 1 else "rotation"


def train_feature_net(dataset: Dataset, config: FeatureNetConfig = FeatureNetConfig(),
                      device: torch.device | str = "cpu", progress: bool = False) -> tuple[FeatureCNN, dict[str, Any]]:
    """Train a FeatureCNN on `dataset.x_train`; return it with its record (accuracy on `x_val`)."""
    if dataset.kind != "image":
        raise EvalInputError(f"{dataset.name} holds points, not images: point data needs no feature network")
    task = _targets(dataset)
    c, s = dataset.shape[0], dataset.shape[-1]
    if task == "rotation" and dataset.shape[-2] != s:
        raise EvalInputError(f"{dataset.name} has no labels and non-square images {dataset.shape}: resize them "
                             "(--image-size) so genlab can train its feature network on rotations")
    device = torch.device(device)
    torch.manual_seed(config.seed)  # weight init and dropout
    num_outputs = dataset.num_classes if task == "classes" else 4
    net = FeatureCNN(c, s, num_outputs, config.width, config.embed_dim).to(device)
    x = dataset.x_train
    steps = max(math.ceil(len(x) / config.batch_size) * config.epochs, config.min_steps)
    start = time.perf_counter()
    fit_classifier(net, x, dataset.y_train if task == "classes" else None,
                   lambda n, xb, yb: F.cross_entropy(n(xb)[1], yb), steps=steps, batch_size=config.batch_size,
                   lr=config.lr, generator=torch.Generator().manual_seed(config.seed),
                   prepare=_rotation_batch if task == "rotation" else None,
                   progress=f"feature network for {dataset.name}" if progress else None)
    with torch.inference_mode():
        f = torch.cat([net(x[i : i + 500].to(device))[0] for i in range(0, min(len(x), 10_000), 500)])
        net.scale.fill_(f.pow(2).mean().sqrt().clamp(min=1e-6))
    accuracy = _accuracy(net, dataset, task, device)
    meta = {"version": FEATURES_VERSION, "data": dataset.name, "task": task, "input_shape": list(dataset.shape),
            "num_classes": dataset.num_classes if task == "classes" else 0, "class_names": dataset.class_names,
            "config": asdict(config), "accuracy": accuracy,
            "accuracy_split": f"the validation split ({len(dataset.x_val)} images, never trained on)",
            "train_size": len(x), "train_seconds": round(time.perf_counter() - start, 1)}
    return net, meta


@torch.inference_mode()
def _accuracy(net: FeatureCNN, dataset: Dataset, task: str, device: torch.device) -> float:
    x, y = dataset.x_val, dataset.y_val
    if task == "rotation":
        x, y = _rotation_batch(x, None, torch.Generator().manual_seed(1))
    correct = 0
    for start in range(0, len(x), 500):
        logits = net(x[start : start + 500].to(device))[1]
        correct += int((logits.argmax(1).cpu() == y[start : start + 500]).sum())
    return correct / max(1, len(x))


def _cache_paths(dataset: Dataset, config: FeatureNetConfig) -> tuple[Path, Path]:
    key = hashlib.sha256(json.dumps({"v": FEATURES_VERSION, "config": asdict(config), "data": fingerprint(
        dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)}, sort_keys=True).encode()).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name)[-40:] + "-" + key[:16]
    root = cache_root() / "features"
    return root / f"{stem}.safetensors", root / f"{stem}.json"


def load_or_train(dataset: Dataset, config: FeatureNetConfig = FeatureNetConfig(), *, device: str | torch.device = "cpu",
                  retrain: bool = False, progress: bool = False) -> CNNFeatures:
    """The genlab feature network for `dataset` on `device`: from the cache, or trained now (on one CPU
    thread, see below) and cached.

    The cache key is the exact data (a hash of its tensors), the recipe and FEATURES_VERSION, so a change
    to any of them trains a new network rather than silently reusing an old one. To compare scores with
    someone else's, share the cached .safetensors/.json pair: equal weights hashes mean equal yardsticks.
    """
    from safetensors.torch import load_file

    weights, record = _cache_paths(dataset, config)
    if weights.exists() and record.exists() and not retrain:
        meta = json.loads(record.read_text())
        if file_digest(weights) == meta.get("weights_sha256"):
            net = FeatureCNN(dataset.shape[0], dataset.shape[-1], _outputs(meta), config.width, config.embed_dim)
            try:
                net.load_state_dict(load_file(weights))
                fx = CNNFeatures(net, meta, device)
                fx.origin = (f"trained on this machine ({meta['train_size']} images, {meta['train_seconds']} s), "
                             f"read from the cache {weights.parent}")
                return fx
            except RuntimeError:
                pass  # written by another version of the network: train again
        # a truncated or edited file: train again rather than measure with unknown weights
    # One CPU thread: a multi-threaded (or GPU) run sums gradients in another order and lands on other
    # weights, hence another hash and another protocol. This way the same torch build on the same kind of
    # CPU trains the same bytes anywhere; the network is small enough for that to cost little.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, meta = train_feature_net(dataset, config, device="cpu", progress=progress)
    finally:
        torch.set_num_threads(threads)
    meta["weights_sha256"] = save_tensors(net.state_dict(), weights)
    tmp_record = record.with_name(record.name + f".tmp{os.getpid()}")
    tmp_record.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_record, record)
    fx = CNNFeatures(net.cpu(), meta, device)
    fx.origin = f"trained here on {meta['train_size']} images in {meta['train_seconds']} s; cached in {weights.parent}"
    return fx


def _outputs(meta: dict[str, Any]) -> int:
    return int(meta["num_classes"]) if meta["task"] == "classes" else 4


# ---------------------------------------------------------------------------------------------- pinned weights
PINNED_DIR = Path(__file__).with_name("pinned")
# The sha256 of each packaged weights file (benchmarks/pin_feature_networks.py wrote them). The record
# beside the file must quote the same hash, so an edited file, or an edited file with its record, is caught.
PINNED_SHA256 = {
    "digits": "71cd2356286e52dbc61ad8349afef081e22c94dbb6705c2bd406906fa5c54ec0",
    "mnist": "85432c6ccaf46a91a4ecaec03797a97511070214dfc9014317e0e72800860124",
}


def pinned_features(dataset: Dataset, config: FeatureNetConfig = FeatureNetConfig(), *,
                    device: torch.device | str = "cpu") -> tuple[CNNFeatures | None, str]:
    """The feature network packaged with genlab for `dataset`, or (None, why it does not apply).

    It applies when the data set is one genlab pins weights for, its items have the shape the network was
    trained on (mnist resized with --image-size 32 does not), it has the same classes, and `config` is the
    recipe the weights were trained with. A packaged file whose hash differs from the one in this module
    raises EvalInputError: measuring with unknown weights would give scores that look comparable but are not.
    """
    expected = PINNED_SHA256.get(dataset.name)
    if expected is None or dataset.kind != "image":
        return None, f"genlab pins no feature network for '{dataset.name}'"
    weights, record = PINNED_DIR / f"{dataset.name}.safetensors", PINNED_DIR / f"{dataset.name}.json"
    for path in (weights, record):
        if not path.exists():
            raise EvalInputError(f"the packaged feature network file {path} is missing: reinstall genlab "
                                 "(pip install --force-reinstall genlab), or pass features='train' to train one here "
                                 "(its scores are then not comparable with other machines')")
    meta = json.loads(record.read_text())
    if meta.get("weights_sha256") != expected:
        raise _damaged(record, str(meta.get("weights_sha256")), expected)
    if meta["version"] != FEATURES_VERSION:  # a release always re-pins; this guards a working copy
        return None, (f"the pinned network is of FEATURES_VERSION {meta['version']}, not {FEATURES_VERSION}: "
                      "re-pin with benchmarks/pin_feature_networks.py")
    if tuple(dataset.shape) != tuple(meta["input_shape"]):
        return None, (f"items of shape {tuple(dataset.shape)} differ from the {tuple(meta['input_shape'])} the pinned "
                      f"network for {dataset.name} takes (resized data)")
    if _targets(dataset) != meta["task"] or dataset.class_names != meta["class_names"]:
        return None, f"the data's classes differ from those the pinned network for {dataset.name} was trained on"
    if asdict(config) != meta["config"]:
        return None, "a feature-network config other than the pinned recipe was asked for"
    digest = file_digest(weights)
    if digest != expected:
        raise _damaged(weights, digest, expected)
    from safetensors.torch import load_file

    cfg = meta["config"]
    net = FeatureCNN(dataset.shape[0], dataset.shape[-1], _outputs(meta), cfg["width"], cfg["embed_dim"])
    net.load_state_dict(load_file(weights))
    fx = CNNFeatures(net, meta, device)
    fx.origin = (f"pinned weights packaged with genlab ({weights.name}, trained on {meta['train_size']} images with "
                 f"torch {meta['torch']}): the same yardstick on every machine")
    return fx, ""


def _damaged(path: Path, found: str, expected: str) -> EvalInputError:
    return EvalInputError(f"the packaged feature network file {path} has sha256 {found[:12]}..., not the "
                          f"{expected[:12]}... this genlab release pins: the installation is damaged or the file "
                          "was edited. Reinstall genlab (pip install --force-reinstall genlab); scores measured "
                          "with other weights are not comparable with anyone else's.")


def feature_extractor(dataset: Dataset, features: "str | FeatureExtractor" = "auto", *, device: str | torch.device = "cpu",
                      config: FeatureNetConfig = FeatureNetConfig(), retrain: bool = False,
                      progress: bool = False) -> FeatureExtractor:
    """The feature network named by `features`.

    Args:
        dataset: the real data the network measures (points need none: their coordinates are the features).
        features: "auto" (the pinned genlab CNN when genlab ships one that fits the data, else one trained
            on the fly and cached), "train" (always the one trained on the fly, e.g. to compare with scores
            measured that way), a path to a local Inception-v3 weights file, or a FeatureExtractor (returned
            as is).
        device: where the network runs.
        config: the recipe of the genlab CNN; the pinned weights are used only with the default recipe.
        retrain: train the on-the-fly network again even if cached.
        progress: show a progress bar while training.
    """
    if isinstance(features, FeatureExtractor):
        return features
    if features in ("auto", "train"):
        if dataset.kind == "points":
            return PointFeatures(dataset.shape[0], device)
        why = "features='train' was asked for"
        if features == "auto":
            fx, why = pinned_features(dataset, config, device=device)
            if fx is not None:
                return fx
        fx = load_or_train(dataset, config, device=device, retrain=retrain, progress=progress)
        fx.origin += f" (pinned weights not used: {why})"
        return fx
    from .inception import InceptionFeatures

    return InceptionFeatures(features, device)
