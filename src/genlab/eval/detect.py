"""Real or generated? A classifier two-sample test (Lopez-Paz & Oquab 2017).

A small CNN (the feature network's architecture, trained from scratch) learns to tell real images from
generated ones on one half of each set; its ROC-AUC on the other half says how distinguishable they are:
0.5 means it cannot tell them apart, 1.0 that every sample gives itself away. The held-out samples it is
most sure are fake show what gives them away. The trained detector can be saved and then score any images
(a folder, say) as a generated-image detector for that generator.

Both sets are cut to the same size, so a constant guess scores exactly 0.5, and the split is by a fixed
seed, so the figure is reproducible.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EvalInputError
from ..nn.convnets import MLP
from .features import FeatureCNN, fit_classifier, quantize, save_tensors


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve, as the Mann-Whitney statistic with ties sharing their average rank."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise EvalInputError("ROC-AUC needs both real and generated items")
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    first_rank = torch.cumsum(counts, 0) - counts + 1  # rank of the first item of each tied group
    avg_rank = (first_rank + (counts - 1) / 2).double()[inverse]
    return float((avg_rank[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _make_net(shape: tuple[int, ...]) -> nn.Module:
    if len(shape) == 3:
        return FeatureCNN(shape[0], shape[-1], 1)
    return MLP(shape[0], 64, 1)


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return (out[1] if isinstance(out, tuple) else out).squeeze(1)


@dataclass
class Detection:
    auc: float
    accuracy: float
    n_train: int  # items per class used to train
    n_test: int  # items per class held out
    most_fake: torch.Tensor  # held-out generated items the detector is surest about, most sure first
    most_fake_scores: list[float]
    net: nn.Module = field(repr=False)
    input_shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "accuracy": self.accuracy, "n_train_per_class": self.n_train,
                "n_test_per_class": self.n_test, "most_fake_scores": self.most_fake_scores}


def detect(real: torch.Tensor, fake: torch.Tensor, *, epochs: int = 5, seed: int = 0, test_fraction: float = 0.5,
           batch_size: int = 128, lr: float = 2e-3, show: int = 16, device: str | torch.device = "cpu") -> Detection:
    """Train a real-vs-generated classifier on part of `real` and `fake`; ROC-AUC on the rest."""
    if real.shape[1:] != fake.shape[1:]:
        raise EvalInputError(f"real items {tuple(real.shape[1:])} and generated {tuple(fake.shape[1:])} differ in shape")
    for name, x in (("real", real), ("generated", fake)):
        if len(x) < 4:
            raise EvalInputError(f"need at least 4 {name} items to train and test a detector, got {len(x)}")
        if not torch.isfinite(x).all():
            raise EvalInputError(f"the {name} items contain NaN or infinite values")
    images = real.dim() == 4
    prep = (lambda x: quantize(x.float())) if images else (lambda x: x.float())
    gen = torch.Generator().manual_seed(seed)
    m = min(len(real), len(fake))
    real = prep(real[torch.randperm(len(real), generator=gen)[:m]])
    fake = prep(fake[torch.randperm(len(fake), generator=gen)[:m]])
    n_test = max(2, int(round(m * test_fraction)))
    n_train = m - n_test
    x_train = torch.cat([real[n_test:], fake[n_test:]])
    y_train = torch.cat([torch.zeros(n_train), torch.ones(n_train)])
    device = torch.device(device)
    torch.manual_seed(seed)
    net = _make_net(tuple(real.shape[1:])).to(device)
    fit_classifier(net, x_train, y_train, lambda n, xb, yb: F.binary_cross_entropy_with_logits(_logits(n, xb), yb),
                   steps=max(1, math.ceil(len(x_train) / batch_size)) * epochs, batch_size=batch_size, lr=lr,
                   generator=gen)
    x_test = torch.cat([real[:n_test], fake[:n_test]])
    y_test = torch.cat([torch.zeros(n_test), torch.ones(n_test)])
    p = score(net, x_test, device)
    fake_p = p[n_test:]
    order = fake_p.argsort(descending=True)[:show]
    return Detection(auc=roc_auc(p, y_test), accuracy=float(((p > 0.5).float() == y_test).float().mean()),
                     n_train=n_train, n_test=n_test, most_fake=fake[:n_test][order],
                     most_fake_scores=[round(float(v), 4) for v in fake_p[order]], net=net.cpu(),
                     input_shape=tuple(real.shape[1:]))


@torch.inference_mode()
def score(net: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu", batch_size: int = 500) -> torch.Tensor:
    """Probability that each item is generated, (N,)."""
    net = net.to(device).eval()
    prep = quantize if x.dim() == 4 else (lambda t: t)
    return torch.cat([torch.sigmoid(_logits(net, prep(x[i : i + batch_size].float()).to(device))).cpu()
                      for i in range(0, len(x), batch_size)])


def save_detector(result: Detection, path: str | Path, about: dict[str, Any]) -> Path:
    """Weights (safetensors) and a JSON beside them: input shape, AUC, what it was trained on."""
    path = Path(path).with_suffix(".safetensors")
    digest = save_tensors(result.net.state_dict(), path)
    meta = {"input_shape": list(result.input_shape), **result.to_dict(), **about, "weights_sha256": digest}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return path


def load_detector(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    from safetensors.torch import load_file

    path = Path(path).with_suffix(".safetensors")
    if not path.exists() or not path.with_suffix(".json").exists():
        raise EvalInputError(f"no detector at {path} (and {path.with_suffix('.json')}). `genlab detect RUN` "
                             "trains one and saves it as RUN/detect-figures/detector-*.safetensors (printed after "
                             "`detector:`); then score images with `genlab detect --score DIR --detector PATH`")
    meta = json.loads(path.with_suffix(".json").read_text())
    net = _make_net(tuple(meta["input_shape"]))
    net.load_state_dict(load_file(path))
    return net.eval(), meta


def detect_source(source, data: str | None = None, *, n: int = 2000, reference: str = "train", epochs: int = 5,
                  seed: int = 0, checkpoint: str = "latest", sampler: str | None = None, steps: int | None = None,
                  data_dir: str | None = None, device: str | None = None, write: bool = True,
                  out: str | Path | None = None) -> dict[str, Any]:
    """`detect` a run's samples (or an .npz, a folder of images, a tensor) against real images of the data.

    Returns the entry appended to detect.json (beside eval.json): AUC, accuracy, sizes, and the paths of
    the most-fake picture and of the saved detector.
    """
    import time

    from ..runs import resolve_device
    from .evaluate import append_entry, array_samples, check_samples, dataset_for, open_source, output_path
    from .protocol import reference_images

    kind, run, path = open_source(source)
    dataset = dataset_for(kind, run, data, data_dir)
    dev = resolve_device(device or "auto")
    if kind == "run":
        if not run.has_checkpoint():
            raise EvalInputError(f"run {run.path} has no checkpoint: train it first "
                                 f"(`genlab train --resume {run.path} --steps N`)")
        options = {k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None}
        conditions = run.load_model(checkpoint, device=str(dev)).evaluation_conditions(n)
        fake = run.sample(n, conditions, seed=seed, checkpoint=checkpoint, device=str(dev), **options)
    else:
        fake, _ = array_samples(kind, path, source, dataset, n)
    check_samples(fake, dataset)
    real = reference_images(dataset, reference, len(fake), seed)
    result = detect(real, fake, epochs=epochs, seed=seed, device=dev)
    entry: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "source": str(path) if path else "tensor",
                             "data": dataset.name, "reference_split": reference, "seed": seed, "epochs": epochs,
                             **({"sampler": sampler, "steps": steps} if kind == "run" else {}), **result.to_dict()}
    if write and (kind != "tensor" or out is not None):
        from ..outputs import save_samples

        json_path = output_path(kind, path, out, "detect")
        fig_dir = json_path.parent / (json_path.name.removesuffix(".json") + "-figures")
        tag = f"n{len(fake)}-seed{seed}"
        grid = save_samples(result.most_fake, fig_dir / f"most-fake-{tag}.png", dataset.kind,
                            reference=real[:1000] if dataset.kind == "points" else None)
        weights = save_detector(result, fig_dir / f"detector-{tag}", {"data": dataset.name, "generated": entry["source"]})
        entry["files"] = {"most_fake": str(grid.relative_to(json_path.parent)),
                          "detector": str(weights.relative_to(json_path.parent))}
        append_entry(json_path, entry)
        entry["written_to"] = str(json_path)  # for the caller; not part of the stored entry
    return entry
