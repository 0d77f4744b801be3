"""Anomaly scores of held-out items under a run: how badly its model explains each one.

Two scores, higher meaning more anomalous:
- `elbo`: the negative ELBO in bits/dim, from the model's `bits_per_dim` (a bound on -log p(x), one
  posterior draw per item), for models with a likelihood;
- `recon`: the mean squared error of the item's reconstruction through its code (genlab.apps.latents),
  for models that encode and decode.
A run trained without a class (`genlab train vae --data mnist --exclude-class 3`) has never seen it;
the ROC-AUC of either score at telling that class from the rest of the held-out split measures how
well it detects novelty (An & Cho 2015, "Variational autoencoder based anomaly detection using
reconstruction probability", use the same one-class-out protocol on MNIST). 0.5 is chance.
A likelihood is known to rate some foreign data as *more* likely (Nalisnick et al. 2019, "Do deep
generative models know what they don't know?"): the AUC can fall below 0.5.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..batch import LABEL, X
from ..errors import ArgumentError

Score = Literal["elbo", "recon"]
SCORES = ("elbo", "recon")
DESCRIPTIONS = {"elbo": "negative ELBO, bits/dim", "recon": "reconstruction MSE"}


@dataclass
class AnomalyScores:
    """Per-item scores of held-out items; `score` names the one that ranks them."""

    items: torch.Tensor  # (N, *data shape) the held-out items, in the data's range
    labels: torch.Tensor | None  # (N,) their classes, if the data has them
    scores: dict[str, torch.Tensor]  # score name -> (N,), higher = more anomalous
    score: str
    target_classes: tuple[int, ...] = ()
    auc: dict[str, float] = field(default_factory=dict)  # score name -> ROC-AUC of finding the target classes
    class_names: list[str] | None = None

    @property
    def ranking(self) -> torch.Tensor:
        """Item indices, most anomalous first."""
        return torch.argsort(self.scores[self.score], descending=True)

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(label)

    def top(self, k: int = 10) -> list[dict[str, Any]]:
        """The k most anomalous items: index, class, every score."""
        rows = []
        for i in self.ranking[:k].tolist():
            row: dict[str, Any] = {"index": i}
            if self.labels is not None:
                row["class"] = self.class_name(int(self.labels[i]))
            row.update({name: float(s[i]) for name, s in self.scores.items()})
            rows.append(row)
        return rows

    def class_means(self) -> dict[str, float]:
        """Mean ranking score per class of the held-out items."""
        if self.labels is None:
            return {}
        s = self.scores[self.score]
        return {self.class_name(c): float(s[self.labels == c].mean()) for c in torch.unique(self.labels).tolist()}

    def write_csv(self, path: str | Path) -> Path:
        """One row per item: index, class, is_target, each score."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            names = list(self.scores)
            writer.writerow(["index", *(["class", "is_target"] if self.labels is not None else []), *names])
            for i in range(len(self.items)):
                labelled = []
                if self.labels is not None:
                    label = int(self.labels[i])
                    labelled = [self.class_name(label), int(label in self.target_classes)]
                writer.writerow([i, *labelled, *(f"{float(self.scores[n][i]):.6g}" for n in names)])
        return path

    def save_grid(self, path: str | Path, k: int = 16) -> Path:
        """The k most anomalous items as an image grid, most anomalous first (row by row)."""
        from ..imageio import save_grid

        if self.items.dim() != 4:
            raise ArgumentError("--grid draws images; this data's items are not images (write --out scores.csv)")
        return save_grid(self.items[self.ranking[:k]], path)

    def summary(self, k: int = 10) -> str:
        """A few lines: the AUCs, the mean score per class, the top k."""
        lines = [f"{len(self.items)} held-out items scored by {self.score} ({DESCRIPTIONS[self.score]}; higher = more anomalous)"]
        if self.auc:
            targets = ", ".join(self.class_name(c) for c in self.target_classes)
            for name, value in self.auc.items():
                lines.append(f"ROC-AUC finding class {targets} by {name:<5} {value:.3f}  (0.5: chance)")
        means = self.class_means()
        if means:
            lines.append("mean score per class: " + "  ".join(f"{c}:{v:.3g}" for c, v in means.items()))
        lines.append(f"top {k}:")
        for row in self.top(k):
            scores = "  ".join(f"{n}={row[n]:.4g}" for n in self.scores)
            cls = f"class {row['class']:<4} " if "class" in row else ""
            lines.append(f"  #{row['index']:<6} {cls}{scores}")
        return "\n".join(lines)


def heldout_items(run: Any, data: str | None = None, data_dir: str | None = None, n: int | None = None):
    """(held-out batch, its DataSource) of `data` (default: the run's own), read with the run's settings
    (image size, split seed), so the run's own held-out split is the one it never trained on."""
    from ..api import data_options
    from ..data.base import load_data

    cfg = run.train_config
    same = data is None or data == cfg.data
    cfg = replace(cfg, data=data or cfg.data, data_dir=data_dir or (cfg.data_dir if same else None), exclude_classes=[])
    source = load_data(cfg.data, data_options(cfg, run.assets() if same else None))
    return source.validation(n), source


def anomaly_scores(run: Any, data: str | None = None, *, data_dir: str | None = None, score: Score | None = None,
                   target_classes: int | list[int] | None = None, n: int | None = None, seed: int = 0,
                   batch_size: int = 250, checkpoint: str = "latest", device: str | None = None) -> AnomalyScores:
    """Score a data set's held-out split under a run: `anomaly_scores("runs/vae-no3", "mnist", target_classes=3)`.

    Args:
        run: A run directory (or `Run`) whose model has a likelihood bound, or encodes and decodes, or both.
        data: The data whose held-out split is scored (default: the run's own); same item shape as the run's.
        score: The score that ranks the items: "elbo" (default where the model has a likelihood) or "recon".
        target_classes: Class(es) whose detection the ROC-AUC measures; None: those the run was trained
            without (`--exclude-class`), if any; [] for none.
        n: Score the first n held-out items only.
        seed: Seeds the posterior draws of the ELBO.

    Returns:
        `AnomalyScores` (every available score per item, AUCs; `summary`, `write_csv`, `save_grid`).

    Raises:
        ArgumentError: The model gives neither score, or the data or target classes do not fit.
    """
    from sklearn.metrics import roc_auc_score

    from ..runs import Run
    from .latents import LatentCodec

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    batch, source = heldout_items(run, data, data_dir, n)
    x = batch[X]
    if tuple(x.shape[1:]) != tuple(model.data_shape):
        raise ArgumentError(f"{source.name} items are {tuple(x.shape[1:])}; {run.path} models {tuple(model.data_shape)}")
    scores: dict[str, torch.Tensor] = {}
    if model.likelihood != "none":
        generator = torch.Generator(model.device).manual_seed(seed)
        try:
            parts = []
            for start in range(0, len(x), batch_size):
                part = {X: x[start : start + batch_size].to(model.device)}
                if LABEL in model.conditions and LABEL in batch:  # a conditional model scores under the true class
                    part[LABEL] = batch[LABEL][start : start + batch_size].to(model.device)
                parts.append(model.bits_per_dim(part, generator).float().cpu())
            scores["elbo"] = torch.cat(parts)
        except TypeError:  # a likelihood this data has none of (bits/dim of point data)
            pass
    try:
        codec = LatentCodec.of(model, batch_size)
    except ArgumentError:
        codec = None
    if codec is not None:
        scores["recon"] = (codec.reconstruct(x) - x).pow(2).flatten(1).mean(1)
    if not scores:
        raise ArgumentError(f"{run.path} (a {run.model_name} run) has neither a likelihood nor a latent space "
                            "to score items with")
    score = score or next(s for s in SCORES if s in scores)
    if score not in SCORES:
        raise ArgumentError(f"--score takes {' or '.join(SCORES)}, got '{score}'")
    if score not in scores:
        raise ArgumentError(f"this {run.model_name} run gives no '{score}' score; use --score {next(iter(scores))}")
    if target_classes is None:
        target_classes = list(run.train_config.exclude_classes) if data in (None, run.train_config.data) else []
    targets = tuple([target_classes] if isinstance(target_classes, int) else target_classes)
    labels = batch.get(LABEL)
    result = AnomalyScores(x, labels, scores, score, targets, class_names=source.class_names)
    if targets:
        if labels is None:
            raise ArgumentError(f"--target-class needs labelled data; {source.name} has no classes")
        is_target = torch.isin(labels, torch.tensor(targets)).numpy()
        if is_target.all() or not is_target.any():
            raise ArgumentError(f"the held-out split has {'only' if is_target.all() else 'no'} items of class(es) "
                                f"{', '.join(map(str, targets))}: no ROC-AUC to measure")
        result.auc = {name: float(roc_auc_score(is_target, s.numpy())) for name, s in scores.items()}
    return result
