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


# ------------------------------------------------------------------ the papers' rule (VEEGAN, PacGAN)
def test_points_on_seven_centres_cover_seven_modes_at_full_quality():
    centers = torch.from_numpy(eight_gaussians_centers(1.0))
    on_seven = centers[:7].repeat(50, 1)  # 350 points exactly at modes 0..6, none near mode 7
    for rule in (None, 1):
        out = toy_mode_coverage(on_seven, centers, 0.01, min_count=rule)
        assert out["modes_covered"] == 7 and out["high_quality_share"] == 1.0
        assert out["mode_counts"] == [50] * 7 + [0]


def test_points_far_from_every_mode_are_low_quality():
    centers = torch.from_numpy(eight_gaussians_centers(1.0))
    far = torch.tensor([[0.0, 0.0], [3.0, 3.0], [0.5, 0.5]]).repeat(100, 1)
    out = toy_mode_coverage(far, centers, 0.01, min_count=1)
    assert out["high_quality_share"] == 0.0 and out["modes_covered"] == 0


def test_three_sigma_boundary_and_the_one_sample_rule():
    centers = torch.from_numpy(eight_gaussians_centers(1.0))
    std = 0.01
    # 100 points on mode 0, one at 2.9 std from mode 1 (high quality), one at 3.1 std from mode 2 (not)
    inside = centers[1] + torch.tensor([2.9 * std, 0.0], dtype=torch.float64)
    outside = centers[2] + torch.tensor([0.0, 3.1 * std], dtype=torch.float64)
    points = torch.cat([centers[0].repeat(100, 1), inside[None], outside[None]])
    papers = toy_mode_coverage(points, centers, std, min_count=1)
    assert papers["mode_counts"][:3] == [100, 1, 0]
    assert papers["modes_covered"] == 2  # one high-quality sample captures a mode
    assert papers["high_quality_share"] == pytest.approx(101 / 102)
    # genlab's default wants a fifth of the fair share (102 / 8 / 5 = 2.55 samples): the stray one is not enough
    assert toy_mode_coverage(points, centers, std)["modes_covered"] == 1


def test_ring_options_set_the_points_and_the_mode_extras():
    from genlab.data.base import LoadOptions, load_data
    from genlab.errors import GenlabError

    default = load_data("8gaussians", LoadOptions())
    assert default.spec.extras["mode_std"] == EIGHT_GAUSSIANS_STD
    assert np.allclose(default.spec.extras["mode_centers"], eight_gaussians_centers())  # radius 0.8, unchanged
    ring = load_data("8gaussians", LoadOptions(options={"radius": 1.0, "std": 0.01}))
    centers = torch.tensor(ring.spec.extras["mode_centers"], dtype=torch.float64)
    assert ring.spec.extras["mode_std"] == 0.01
    assert torch.allclose(centers.norm(dim=1), torch.ones(8, dtype=torch.float64))
    x = torch.cat([ring.x_train, ring.x_val]).double()
    assert torch.allclose(x.norm(dim=1).mean(), torch.tensor(1.0, dtype=torch.float64), atol=1e-3)
    out = toy_mode_coverage(x, centers, 0.01, min_count=1)
    assert out["modes_covered"] == 8 and out["high_quality_share"] > 0.98  # 3 std in 2-D holds 98.9 %
    # the default ring (radius 0.8) lies 20 std of the narrow ring away from its modes: the extras must follow
    assert toy_mode_coverage(default.x_val.double(), centers, 0.01)["high_quality_share"] < 0.05
    with pytest.raises(GenlabError, match="unknown field"):
        load_data("8gaussians", LoadOptions(options={"radious": 1.0}))
    with pytest.raises(GenlabError, match="std > 0"):
        load_data("8gaussians", LoadOptions(options={"std": 0.0}))
    with pytest.raises(GenlabError, match="takes no data options"):
        load_data("moons", LoadOptions(options={"radius": 1.0}))


def test_a_runs_evaluations_compare_with_the_ring_it_trained_on(train_tiny, monkeypatch):
    """`genlab eval` and the evaluation during training load the run's data with its data options."""
    from genlab.eval.evaluate import dataset_for
    from genlab.eval.training import make_training_evaluator

    ring = {"radius": 0.5, "std": 0.01}
    run = train_tiny("gan", steps=2, data="8gaussians", data_options=ring)
    centers = torch.tensor(dataset_for("run", run, None, None).spec.extras["mode_centers"])
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), 0.5, dtype=centers.dtype))
    model = run.load_model(device="cpu")
    # a generator that puts every sample exactly on a mode of the 0.5 ring covers 8 of 8 at full quality
    monkeypatch.setattr(model, "sample", lambda n, *a, **k: centers.float()[torch.arange(n) % 8])
    evaluator, key = make_training_evaluator(run.train_config)
    scores = evaluator(model, 2)
    # the best checkpoint is the one closest to every mode covered by high-quality samples only, not FID's
    assert key == "mode_error" and scores["modes_covered"] == 8 and scores["high_quality_share"] == 1.0
    assert scores["mode_error"] == 0.0
    monkeypatch.setattr(model, "sample", lambda n, *a, **k: torch.cat([centers.float()[torch.arange(n - n // 4) % 4],
                                                                      torch.zeros(n // 4, 2)]))
    half = evaluator(model, 4)  # 4 of 8 modes, a quarter of the samples at the centre
    assert half["modes_covered"] == 4 and half["mode_error"] == pytest.approx(0.5 + 0.25, abs=0.01)
