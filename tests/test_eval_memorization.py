"""Memorisation: copies of training images are flagged, new images are not."""

from __future__ import annotations

import torch

from eval_fixtures import digits, eval_cache  # noqa: F401
from genlab.eval.memorization import memorization, nearest_neighbours


def test_nearest_neighbours_are_exact():
    bank = torch.randn(50, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = bank[[7, 3]] + 0.01
    d, idx = nearest_neighbours(x, bank, budget_bytes=64)  # one row per chunk
    assert idx.tolist() == [7, 3]
    full = torch.cdist(x.flatten(1), bank.flatten(1))
    assert torch.allclose(d, full.min(1).values, atol=1e-4)


def test_copies_are_memorised_and_held_out_images_are_not(digits):
    train, val = digits.x_train, digits.x_val
    copies = train[:300]
    scores, pairs = memorization(copies, train, val, pairs=8)
    assert scores["memorized_share"] > 0.99
    assert scores["memorized_share_real"] < 0.05  # the false-alarm rate on real held-out images
    assert pairs.shape == (16, *train.shape[1:])
    assert torch.equal(pairs[:8], pairs[8:])  # a copy and its nearest training image are the same picture
    noisy = (train[:300] + 0.05 * torch.randn(300, *train.shape[1:], generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert memorization(noisy, train, val)[0]["memorized_share"] > 0.9  # light edits are still copies
    fresh, _ = memorization(val, train, val)
    assert fresh["memorized_share"] == fresh["memorized_share_real"] < 0.05
