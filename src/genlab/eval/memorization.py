"""Memorisation: samples that are near-copies of training images.

For every sample, the Euclidean distance to its nearest training item, in pixel space (values in [-1, 1]).
The yardstick is how close real images come to the training set without being copies: the same distance
for the held-out validation images. A sample counts as memorised when its distance is below
THRESHOLD_RATIO (one third) of the median distance of the held-out images. Held-out images rarely fall
below that (their share is reported too, as the false-alarm rate), exact or lightly edited copies do.

Pixel space rather than features: copying is about pixels, and a classifier's features put every "1"
near every other "1". The search is exact (chunked float32 matrix products, no index), so it costs
samples x training items x pixels multiply-adds: a few seconds for 10,000 MNIST samples.
"""

from __future__ import annotations

import torch

THRESHOLD_RATIO = 1 / 3


def nearest_neighbours(x: torch.Tensor, bank: torch.Tensor,
                       budget_bytes: int = 256 << 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance from each item of x to its nearest item of `bank`, and that item's index."""
    x, bank = x.flatten(1).float(), bank.flatten(1).float()
    bank_sq = bank.pow(2).sum(1)
    chunk = max(1, budget_bytes // (4 * len(bank)))
    dists, idx = [], []
    for start in range(0, len(x), chunk):
        a = x[start : start + chunk]
        d2 = (a @ bank.T).mul_(-2).add_(a.pow(2).sum(1, keepdim=True)).add_(bank_sq)  # (chunk, len(bank))
        best, where = d2.min(1)
        dists.append(best.clamp(min=0).sqrt())
        idx.append(where)
    return torch.cat(dists), torch.cat(idx)


def memorization(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                 ratio: float = THRESHOLD_RATIO, pairs: int = 16) -> tuple[dict, torch.Tensor]:
    """Scores, and the `pairs` closest (sample, training item) pairs stacked as (2 * pairs, *item_shape):
    the samples first, then their nearest training items in the same order."""
    d_samples, nn_idx = nearest_neighbours(samples, train)
    d_real, _ = nearest_neighbours(held_out, train)
    median_real = float(d_real.median())
    threshold = ratio * median_real
    order = d_samples.argsort()[:pairs]
    scores = {
        "memorized_share": float((d_samples < threshold).double().mean()),
        "memorized_share_real": float((d_real < threshold).double().mean()),
        "threshold": threshold,
        "median_nn_distance_real": median_real,
        "median_nn_distance_samples": float(d_samples.median()),
        "rule": f"nearest training item closer than {ratio:.3g} x the median nearest-training distance of "
                f"{len(held_out)} held-out real items (pixel L2)",
        "closest_pairs": [{"sample": int(i), "train_index": int(nn_idx[i]), "distance": round(float(d_samples[i]), 4)}
                          for i in order],
    }
    return scores, torch.cat([samples[order], train[nn_idx[order]]])
