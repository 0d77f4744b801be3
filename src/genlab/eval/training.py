"""Evaluation during training (`genlab train --eval-every N`): same protocol, fewer samples.

The trainer calls `evaluator(ema_model, step)` every `eval_every` steps, writes the scores to
metrics.jsonl and keeps a "best" checkpoint by the key returned with the evaluator (FID, lower is better).
On 2-D data with known modes (8gaussians) the key is `mode_error` instead, the share of modes missed plus
the share of samples off every mode (0 is every mode covered by high-quality samples only): FID on 2-D
coordinates compares their mean and covariance alone, which a blob at the ring's centre matches as well
as the ring, so it would keep an unformed early checkpoint.
The evaluator draws `eval_samples` samples (TrainConfig) from the same seed every time, so successive
scores differ by the model alone, with the model's cheap preview sampler (DDIM 50 for diffusion), and
measures them against the same cached reference as `genlab eval`. Memorisation, likelihood and speed
are left to `genlab eval`: they would cost more than the training step budget is worth.

The evaluator is made before the run exists (the CLI builds it while parsing), so it loads the data and
the feature network on its first call.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from ..config import apply_overrides, from_dict, to_dict
from ..runs import Run, TrainConfig


def planned_train_config(data: str = "digits", resume: str | None = None, overrides: Sequence[str] = (),
                         **options: Any) -> TrainConfig:
    """The TrainConfig that `genlab.train(data=..., resume=..., overrides=..., **options)` will use."""
    from ..api import _split_overrides

    _, train_over = _split_overrides(list(overrides))
    base = to_dict(Run(resume).train_config if resume else TrainConfig(data=data))
    return from_dict(TrainConfig, apply_overrides({**base, **options}, train_over), "train")


def make_training_evaluator(train_config: TrainConfig, *, features: str = "auto", k: int = 5, kid_subsets: int = 10,
                            seed: int = 0, best_key: str = "fid") -> tuple[Callable[[Any, int], dict[str, Any]], str]:
    """(evaluator(model, step) -> scores, the score that picks the best checkpoint, lower is better).

    Images and points are scored by FID and the rest of the sample-based protocol; token streams and
    series by their held-out likelihood (`eval.heldout`, best key "val_loss")."""
    from ..data import load_data
    from ..data.base import LoadOptions

    cfg = train_config
    data = load_data(cfg.data, LoadOptions(cfg.data_dir, cfg.image_size, cfg.download, cfg.seed,
                                           options=dict(cfg.data_options)))
    if data.spec.kind not in ("image", "points"):
        from .heldout import heldout_evaluator

        held_out = heldout_evaluator(data)

        def evaluate_likelihood(model, step: int) -> dict[str, Any]:
            return {} if int(os.environ.get("RANK", "0")) != 0 else held_out(model, step)

        return evaluate_likelihood, "val_loss"
    if data.spec.kind == "points" and "mode_centers" in data.spec.extras and best_key == "fid":
        best_key = "mode_error"
    state: dict[str, Any] = {}

    def setup(device: torch.device) -> None:
        from ..data import load_dataset
        from .features import feature_extractor
        from .protocol import reference_stats

        cfg = train_config
        # the run's data options too: the reference must be the data the run trains on (8gaussians' ring)
        dataset = load_dataset(cfg.data, data_dir=cfg.data_dir, image_size=cfg.image_size, download=cfg.download,
                               seed=cfg.seed, options=cfg.data_options)
        extractor = feature_extractor(dataset, features, device=device)
        state.update(dataset=dataset, extractor=extractor, reference=reference_stats(extractor, dataset))

    def evaluator(model, step: int) -> dict[str, Any]:
        if int(os.environ.get("RANK", "0")) != 0:
            return {}  # the trainer only uses the scores of the main process
        from .evaluate import measure
        from .protocol import Protocol
        from .speed import timed_sampling

        device = model.device
        if not state:
            setup(device)
        n = train_config.eval_samples
        # as `genlab eval` does: real held-out items for the conditions only they can give (an upscaler's inputs)
        conditions = model.evaluation_conditions(n, real={"x": state["dataset"].x_val})
        labels = conditions.get("label") if conditions else None
        options = model.preview_options()
        was_training = model.training
        model.eval()
        try:
            # the training run's precision; never compiled, since the EMA weights keep changing
            samples, speed = timed_sampling(model, n, seed=seed, conditions=conditions, options=options, warmup=0,
                                            precision=train_config.precision, compile=False)
        finally:
            model.train(was_training)
        result = measure(samples, state["dataset"], state["extractor"], state["reference"], requested=labels, k=k,
                         kid_subsets=kid_subsets, seed=seed, memorization=False)
        ex, ref = state["extractor"], state["reference"]
        protocol = Protocol(ex.name, ex.sha256, state["dataset"].name, ref.split, ref.size, n, k, kid_subsets,
                            result["kid_subset_size"], options.get("sampler", "direct"), options.get("steps", 1), seed)
        scores = {key: round(v, 6) if isinstance(v, float) else v for key, v in result["scores"].items()}
        if "modes_covered" in scores:
            scores["mode_error"] = round(1 - scores["modes_covered"] / scores["num_modes"]
                                         + 1 - scores["high_quality_share"], 6)
        return {**scores, "samples_per_sec": round(speed["samples_per_sec"], 2), "protocol": protocol.to_dict()}

    return evaluator, best_key
