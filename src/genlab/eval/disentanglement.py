"""How disentangled a model's latents are, on data whose generative factors are known (`shapes`).

The mutual information gap (MIG; Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"),
estimated as disentanglement_lib does (Locatello et al. 2019): each latent's posterior mean is cut into
20 equal-width bins over its range; for every factor v_k, the mutual information I(z_j; v_k) of each
latent with it is computed from the counts, and the gap between the most and the second most informative
latent is divided by the factor's entropy H(v_k):

    MIG = 1/K sum_k (I(z_a(k); v_k) - max_{j != a(k)} I(z_j; v_k)) / H(v_k)

1 when every factor lives in one latent of its own and is fully recovered, 0 when no latent tells a
factor better than another does (random or entangled latents). Factors with a single value are left out.

The data says which factors it knows: a batch entry `factors` (N, K) of discrete indices and
`spec.extras["factor_names"]`. The latents are the model's codes as `genlab.apps.latents` reads them
(`encode_latent(x)`, else the first output of `encode(x)`): a VAE's posterior means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..batch import X
from ..data.shapes import FACTORS  # the batch entry any data with known factors fills
from ..errors import ArgumentError

DEFAULT_BINS = 20  # as Chen et al. and disentanglement_lib
DEFAULT_N = 10_000


def discretize(latents: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """(N, D) floats -> (N, D) bin indices in [0, bins), equal-width bins over each column's range."""
    latents = np.asarray(latents, dtype=np.float64)
    out = np.empty(latents.shape, dtype=np.int64)
    for j in range(latents.shape[1]):
        edges = np.histogram_bin_edges(latents[:, j], bins)
        out[:, j] = np.clip(np.digitize(latents[:, j], edges[1:-1]), 0, bins - 1)
    return out


def entropy(v: np.ndarray) -> float:
    """Entropy in nats of the empirical distribution of discrete values `v` (N,)."""
    p = np.unique(v, return_counts=True)[1] / len(v)
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information in nats of two discrete variables from their joint counts (plug-in estimate)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    joint /= len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def mig(latents: np.ndarray, factors: np.ndarray, names: list[str] | None = None,
        bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """MIG of latents (N, D) against discrete factors (N, K).

    Returns {"mig": mean normalised gap, "per_factor": {name: gap}, "latent_per_factor": {name: the index
    of the most informative latent}, "mutual_information": (K, D) nats}.
    """
    latents, factors = np.asarray(latents), np.asarray(factors)
    if latents.ndim != 2 or factors.ndim != 2 or len(latents) != len(factors):
        raise ArgumentError(f"need latents (N, D) and factors (N, K) of the same N, got {latents.shape} and {factors.shape}")
    if latents.shape[1] < 2:
        raise ArgumentError("the gap between the two most informative latents needs at least 2 latent dimensions")
    names = list(names) if names else [f"factor {k}" for k in range(factors.shape[1])]
    z = discretize(latents, bins)
    mi = np.array([[mutual_information(z[:, j], factors[:, k]) for j in range(z.shape[1])]
                   for k in range(factors.shape[1])])  # (K, D)
    per_factor, best = {}, {}
    for k, name in enumerate(names):
        h = entropy(factors[:, k])
        if h <= 0:  # a factor that never changes tells nothing
            continue
        top = np.sort(mi[k])[::-1]
        per_factor[name] = float((top[0] - top[1]) / h)
        best[name] = int(np.argmax(mi[k]))
    if not per_factor:
        raise ArgumentError("every factor takes a single value in these items: MIG is undefined")
    return {"mig": float(np.mean(list(per_factor.values()))), "per_factor": per_factor,
            "latent_per_factor": best, "mutual_information": mi}


def disentanglement(run_or_model, data=None, n: int = DEFAULT_N, bins: int = DEFAULT_BINS,
                    checkpoint: str = "latest") -> dict[str, Any]:
    """MIG of a run's (or a model's) latents on n held-out items of data with known factors.

    Args:
        run_or_model: a run directory, a `Run`, or a model with `encode_latent`/`encode`.
        data: a loaded data source with a `factors` entry (e.g. `load_dataset("shapes")`), or its name;
            None: the run's own data, read as it trained on it (its held-out split).
        n: held-out items to encode (all of them if fewer).
        bins: bins per latent for the mutual-information estimate.
        checkpoint: the run's checkpoint to load ("latest", "best", "step-N").

    Returns:
        {"mig": float, "per_factor": {factor: normalised gap}, "latent_per_factor": {factor: latent index},
        "n": items used}.
    """
    from ..apps.latents import LatentCodec
    from ..runs import Run

    if isinstance(run_or_model, (str, Path)):
        run_or_model = Run(run_or_model)
    if data is None:
        if not isinstance(run_or_model, Run):
            raise ArgumentError("name the data with known factors to score a model on, e.g. data='shapes'")
        from ..api import load_run_data

        data = load_run_data(run_or_model)
    elif isinstance(data, str):
        from ..data import load_dataset

        data = load_dataset(data)
    model = run_or_model.load_model(checkpoint) if isinstance(run_or_model, Run) else run_or_model
    held_out = data.validation(n)
    if FACTORS not in held_out:
        raise ArgumentError(f"{data.name} has no known factors (no '{FACTORS}' entry); disentanglement needs data "
                            "that keeps them, such as `shapes`")
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        z = LatentCodec.of(model, what=type(model).__name__).encode(held_out[X]).flatten(1)  # posterior means (N, D)
    finally:
        model.train(was_training)
    result = mig(z.numpy(), held_out[FACTORS].numpy(), data.spec.extras.get("factor_names"), bins)
    result.pop("mutual_information")
    return {**result, "n": len(z)}
