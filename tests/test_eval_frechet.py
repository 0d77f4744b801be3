"""FID and KID against reference code on the same fixed features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from sklearn.metrics.pairwise import polynomial_kernel

from genlab.errors import EvalInputError
from genlab.eval.frechet import feature_statistics, fid, frechet_distance, kid


def reference_fid(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm), on features (N, D)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_kid(fake: np.ndarray, real: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """Binkowski et al.'s unbiased MMD^2 with scikit-learn's polynomial kernel, torch-fidelity's subset draws."""
    rng = np.random.RandomState(seed)
    d = fake.shape[1]
    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        k_xx = polynomial_kernel(x, degree=3, gamma=1 / d, coef0=1)
        k_yy = polynomial_kernel(y, degree=3, gamma=1 / d, coef0=1)
        k_xy = polynomial_kernel(x, y, degree=3, gamma=1 / d, coef0=1)
        m = size
        values.append((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                      - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def features(seed: int, n: int, d: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)  # correlated dimensions, like real features
    return np.maximum(rng.normal(size=(n, d)) @ mix * scale + shift, 0) + 0.1 * rng.normal(size=(n, d))


@pytest.mark.parametrize("n,d,shift,scale", [(500, 16, 0.3, 1.0), (2000, 64, 0.05, 1.2), (800, 128, 1.0, 0.5)])
def test_fid_matches_scipy_reference(n, d, shift, scale):
    a, b = features(0, n, d), features(1, n + 37, d, shift, scale)
    ours = fid(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(reference_fid(a, b), rel=1e-4)


def test_fid_accepts_float32_features_and_matches_float64():
    a, b = features(2, 1000, 32), features(3, 1000, 32, 0.2)
    ours32 = fid(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert ours32 == pytest.approx(reference_fid(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)), rel=1e-4)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = torch.from_numpy(features(4, 600, 24))
    assert abs(fid(a, a)) < 1e-8
    assert fid(a, a + 0.1) == pytest.approx(24 * 0.01, rel=1e-6)  # only the means differ: |mu1 - mu2|^2


def test_frechet_distance_handles_singular_covariances():
    # fewer items than dimensions: both covariances are rank-deficient; scipy needs its eps fix-up here
    a, b = features(5, 20, 64), features(6, 20, 64, 0.3)
    ours = fid(torch.from_numpy(a), torch.from_numpy(b))
    assert np.isfinite(ours) and ours > 0
    assert ours == pytest.approx(reference_fid(a, b), rel=1e-3)


def test_feature_statistics_match_numpy():
    a = features(7, 300, 10)
    mu, sigma = feature_statistics(torch.from_numpy(a))
    np.testing.assert_allclose(mu.numpy(), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(a, rowvar=False), rtol=1e-10, atol=1e-14)


def test_fid_rejects_mismatched_or_tiny_inputs():
    with pytest.raises(EvalInputError, match="different feature networks"):
        mu, s = feature_statistics(torch.randn(10, 4))
        mu2, s2 = feature_statistics(torch.randn(10, 5))
        frechet_distance(mu, s, mu2, s2)
    with pytest.raises(EvalInputError, match="at least 2"):
        feature_statistics(torch.randn(1, 4))


@pytest.mark.parametrize("n_fake,n_real,size", [(600, 700, 200), (300, 300, 1000)])
def test_kid_matches_reference(n_fake, n_real, size):
    fake, real = features(8, n_fake, 32, 0.2, 1.1), features(9, n_real, 32)
    mean, std, m = kid(torch.from_numpy(real), torch.from_numpy(fake), subsets=20, subset_size=size, seed=3)
    assert m == min(size, n_fake, n_real)
    ref_mean, ref_std = reference_kid(fake, real, 20, m, 3)
    assert mean == pytest.approx(ref_mean, rel=1e-4)
    assert std == pytest.approx(ref_std, rel=1e-4)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    both = features(10, 4000, 16)  # one distribution, split in two
    a, b = both[:2000], both[2000:]
    same, same_std, _ = kid(torch.from_numpy(a), torch.from_numpy(b), subsets=20, subset_size=500)
    shifted, _, _ = kid(torch.from_numpy(a), torch.from_numpy(b + 0.5), subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-4
    assert shifted > 20 * abs(same)


def test_kid_needs_two_items():
    with pytest.raises(EvalInputError, match="at least 2"):
        kid(torch.randn(1, 3), torch.randn(5, 3))


def test_kid_of_float32_features_matches_the_float64_reference():
    fake, real = features(12, 1500, 128, 0.1, 1.05), features(13, 1500, 128)
    mean, std, m = kid(torch.from_numpy(real).float(), torch.from_numpy(fake).float(), subsets=10, subset_size=1000)
    ref_mean, ref_std = reference_kid(fake.astype(np.float32).astype(np.float64), real.astype(np.float32).astype(np.float64), 10, m, 0)
    assert mean == pytest.approx(ref_mean, rel=1e-4) and std == pytest.approx(ref_std, rel=1e-3)
