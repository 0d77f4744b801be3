"""Sanity on real images: real vs real scores well, noise and collapse score badly, copies are caught.

Digits (embedded) always run; MNIST runs when the shared IDX files are present. Each dataset's training
split is cut in two: the first half is the reference, the second half plays the generator.
"""

from __future__ import annotations

import pytest
import torch

from eval_fixtures import digits, eval_cache, mnist, mnist_features, tiny_features  # noqa: F401
from genlab.data import Dataset
from genlab.eval.detect import detect
from genlab.eval.evaluate import measure
from genlab.eval.protocol import reference_stats


def halves(ds: Dataset, limit: int) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """(dataset whose train split is the reference half, the other half, its labels)."""
    h = min(len(ds.x_train) // 2, limit)
    ref = Dataset(ds.name, ds.x_train[:h], ds.y_train[:h], ds.x_val, ds.y_val, class_names=ds.class_names)
    return ref, ds.x_train[h : 2 * h], ds.y_train[h : 2 * h]


def scores_of(samples, ds, features, **kwargs):
    ref = reference_stats(features, ds, "train", len(ds.x_train))
    return measure(samples, ds, features, ref, kid_subsets=10, **kwargs)["scores"]


def one_class(x: torch.Tensor, y: torch.Tensor, cls: int = 3) -> torch.Tensor:
    chosen = x[y == cls]
    return chosen[torch.arange(len(x)) % len(chosen)]


@pytest.fixture(params=["digits", "mnist"])
def case(request):
    """(reference dataset, held-out real half, its labels, feature network) for each available dataset."""
    if request.param == "digits":
        ds, feats = request.getfixturevalue("digits"), request.getfixturevalue("tiny_features")
    else:
        ds, feats = request.getfixturevalue("mnist"), request.getfixturevalue("mnist_features")
    ref, x, y = halves(ds, 3000)
    return ref, x, y, feats


def test_real_vs_real_is_close_and_noise_is_far(case):
    ref, x, _, feats = case
    real = scores_of(x, ref, feats)
    noise = scores_of(torch.rand_like(x) * 2 - 1, ref, feats)
    assert real["fid"] < 0.5 and noise["fid"] > 50 * real["fid"]
    assert real["precision"] > 0.9 and real["recall"] > 0.9
    assert real["density"] > 0.85 and real["coverage"] > 0.9
    assert real["class_kl"] < 0.02 and real["class_entropy"] > 0.98 * real["class_entropy_max"]
    assert noise["recall"] < 0.15 and noise["coverage"] < 0.15
    assert noise["kid_mean"] > 20 * abs(real["kid_mean"])


def test_one_class_repeated_loses_recall_coverage_and_entropy(case):
    ref, x, y, feats = case
    s = scores_of(one_class(x, y), ref, feats)
    assert s["recall"] < 0.2 and s["coverage"] < 0.2
    assert s["class_entropy"] < 0.3 and s["classes_covered"] <= 2
    assert s["precision"] > 0.8  # each image is still a realistic digit


def test_copies_of_training_images_are_memorised(case):
    ref, x, _, feats = case
    s = scores_of(ref.x_train[: len(x)], ref, feats, memorization=True)
    assert s["memorized_share"] > 0.95
    assert scores_of(x, ref, feats, memorization=True)["memorized_share"] < 0.05


def test_mnist_noise_is_imprecise(mnist, mnist_features):
    ref, x, _ = halves(mnist, 3000)
    assert scores_of(torch.rand_like(x) * 2 - 1, ref, mnist_features)["precision"] < 0.2


def test_detector_cannot_tell_real_from_real_but_spots_noise(case):
    ref, x, _, _ = case
    n = min(len(x), 1200)
    same = detect(ref.x_train[:n], x[:n], epochs=3)
    assert abs(same.auc - 0.5) < 0.08, same.auc  # the null's std is about 0.02 at these sizes
    noise = detect(ref.x_train[:n], torch.rand_like(x[:n]) * 2 - 1, epochs=3)
    assert noise.auc > 0.99
    assert len(noise.most_fake) == 16 and noise.most_fake_scores == sorted(noise.most_fake_scores, reverse=True)
