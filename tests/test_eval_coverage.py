"""Class histograms, entropy, KL, conditional accuracy, and the 8-Gaussians mode measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.data.toy import EIGHT_GAUSSIANS_STD, eight_gaussians_centers, sample_points
from genlab.eval.coverage import class_coverage, class_histogram, entropy, kl_divergence, toy_mode_coverage


def test_histogram_entropy_and_kl_known_values():
    p = class_histogram(torch.tensor([0, 0, 1, 3]), 4)
    assert p.tolist() == [0.5, 0.25, 0.0, 0.25]
    assert entropy(p) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    uniform = torch.full((4,), 0.25)
    assert entropy(uniform) == pytest.approx(math.log(4))
    assert kl_divergence(uniform, uniform) == pytest.approx(0.0, abs=1e-12)
    q = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)
    assert kl_divergence(q, uniform.double()) == pytest.approx(float((q * (q / 0.25).log()).sum()), rel=1e-4)


def test_class_coverage_of_balanced_and_collapsed_samples():
    data = torch.arange(1000) % 10
    balanced = class_coverage(torch.arange(500) % 10, data, 10)
    assert balanced["class_entropy"] == pytest.approx(math.log(10))
    assert balanced["class_kl"] < 1e-6 and balanced["classes_covered"] == 10
    collapsed = class_coverage(torch.full((500,), 3), data, 10)
    assert collapsed["class_entropy"] == 0.0 and collapsed["classes_covered"] == 1
    assert collapsed["class_kl"] > 2.0  # log(10) = 2.30 for a single class out of ten


def test_conditional_accuracy_counts_requested_classes():
    requested = torch.arange(100) % 10
    predicted = requested.clone()
    predicted[:25] = (predicted[:25] + 1) % 10
    out = class_coverage(predicted, requested, 10, requested=requested)
    assert out["conditional_accuracy"] == pytest.approx(0.75)


def test_eight_gaussians_data_covers_every_mode():
    x, _ = sample_points("8gaussians", 4000, np.random.default_rng(0))
    out = toy_mode_coverage(torch.from_numpy(x), torch.from_numpy(eight_gaussians_centers()), EIGHT_GAUSSIANS_STD)
    assert out["modes_covered"] == 8 and out["high_quality_share"] > 0.98


def test_one_mode_and_noise_are_caught():
    centers = torch.from_numpy(eight_gaussians_centers())
    one = centers[2] + EIGHT_GAUSSIANS_STD * torch.randn(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = toy_mode_coverage(one, centers, EIGHT_GAUSSIANS_STD)
    assert out["modes_covered"] == 1 and out["high_quality_share"] > 0.98
    noise = torch.rand(1000, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert toy_mode_coverage(noise, centers, EIGHT_GAUSSIANS_STD)["high_quality_share"] < 0.2
