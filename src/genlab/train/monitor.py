"""A watch over a training run for the two failures adversarial training is known for: mode collapse
and a discriminator that wins outright. The trainer runs it for models that ask (`watch_collapse`);
it knows nothing of GANs beyond that flag and the model's own `health(logs)` reading of its logs.

Collapse: every `collapse_every` steps the live model (not the EMA, which lags a collapse by hundreds
of steps) samples a fixed probe batch from fixed noise. Its diversity is the mean pairwise distance
between the probe's items over that of held-out real items: 1 is the data's spread, 0 one item
repeated. Where genlab ships a feature network for the data (its classifier), the probe's class
coverage is measured too: the number of classes predicted for at least a fifth of their share. The
alarm rings when diversity falls below half of the best the run has reached (after it first reached a
quarter of the data's: an untrained generator is not "collapsed", only unformed), or when classes
covered fall below half of the best. A sudden fall is what collapse looks like; a slowly narrowing
model is left to the evaluation's recall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..batch import X

PROBE_SIZE = 256
FORMED = 0.25  # diversity (share of the data's) at which a generator counts as having spread out
DROP = 0.5  # an alarm below this share of the best diversity or class coverage


def diversity(x: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the flattened items of x (N, ...)."""
    flat = x.flatten(1).float()
    d = torch.cdist(flat, flat)
    n = len(flat)
    return float(d.sum() / max(n * (n - 1), 1))


@dataclass
class Reading:
    step: int
    diversity: float  # share of the real data's
    classes: int | None = None
    alarm: str | None = None

    def to_dict(self) -> dict:
        out = {"probe_diversity": round(self.diversity, 4)}
        if self.classes is not None:
            out["probe_classes"] = self.classes
        return out


@dataclass
class CollapseWatch:
    real: torch.Tensor  # held-out real items
    seed: int
    # probe -> the number of classes (or known modes) it covers; None where the data gives no way to tell
    count_classes: Callable[[torch.Tensor], int] | None = None
    num_classes: int = 0
    best_diversity: float = 0.0
    best_classes: int = 0
    history: list[Reading] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.real_diversity = max(diversity(self.real[:PROBE_SIZE]), 1e-12)

    @classmethod
    def for_data(cls, data, seed: int) -> "CollapseWatch | None":
        """A watch over `data`'s held-out items, with its pinned classifier when genlab ships one."""
        real = data.validation(PROBE_SIZE).get(X)
        if real is None or not real.is_floating_point() or len(real) < 2:
            return None
        from ..data.base import Dataset
        from ..eval.coverage import MIN_SHARE, toy_mode_coverage

        count, num_classes = None, 0
        extras = data.spec.extras
        if "mode_centers" in extras:  # toy data with known modes (8gaussians)
            centers, std = torch.tensor(extras["mode_centers"]), float(extras["mode_std"])
            count, num_classes = (lambda p: toy_mode_coverage(p, centers, std)["modes_covered"]), len(centers)
        elif isinstance(data, Dataset) and data.kind == "image" and data.num_classes:
            from ..eval.features import FeatureNetConfig, pinned_features

            fx, _ = pinned_features(data, FeatureNetConfig(), device="cpu")
            if fx is not None and fx.num_classes:
                def count(p: torch.Tensor, fx=fx) -> int:
                    counts = torch.bincount(fx(p.clamp(-1, 1))[1].argmax(1), minlength=fx.num_classes)
                    return int((counts >= MIN_SHARE * len(p) / fx.num_classes).sum())

                num_classes = fx.num_classes
        return cls(real.float().cpu(), seed, count, num_classes)

    def state(self) -> dict:
        return {"best_diversity": self.best_diversity, "best_classes": self.best_classes}

    def load_state(self, state: dict) -> None:
        self.best_diversity = float(state.get("best_diversity", 0.0))
        self.best_classes = int(state.get("best_classes", 0))

    @torch.no_grad()
    def check(self, model, step: int) -> Reading:
        was_training = model.training
        model.eval()
        try:
            gen = torch.Generator(model.device).manual_seed(self.seed)
            conditions = model.evaluation_conditions(PROBE_SIZE, real=None)
            probe = model.sample(PROBE_SIZE, conditions, generator=gen, **model.preview_options())
        finally:
            model.train(was_training)
        probe = probe.float().cpu()
        if not torch.isfinite(probe).all():
            return self._note(Reading(step, 0.0, None, "the generator's samples are not finite"))
        reading = Reading(step, diversity(probe) / self.real_diversity)
        if self.count_classes is not None:
            reading.classes = self.count_classes(probe)
        alarms = []
        if self.best_diversity >= FORMED and reading.diversity < DROP * self.best_diversity:
            alarms.append(f"probe diversity fell to {reading.diversity:.2f} of the data's "
                          f"(best {self.best_diversity:.2f})")
        if reading.classes is not None and reading.classes < DROP * self.best_classes:
            alarms.append(f"the probe covers {reading.classes} of {self.num_classes} classes (best {self.best_classes})")
        reading.alarm = "; ".join(alarms) or None
        return self._note(reading)

    def _note(self, reading: Reading) -> Reading:
        if reading.alarm is None:  # only healthy readings raise the bar
            self.best_diversity = max(self.best_diversity, reading.diversity)
            self.best_classes = max(self.best_classes, reading.classes or 0)
        self.history.append(reading)
        return reading
