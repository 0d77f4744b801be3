"""Precision, recall, density and coverage against the authors' `prdc` package on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prdc import compute_prdc

import genlab.eval.prdc as prdc_module
from genlab.errors import EvalInputError
from genlab.eval.prdc import knn_radii, prdc


def clouds(n_real: int, n_fake: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, d))
    fake = rng.normal(size=(n_fake, d)) * 1.3 + 0.4  # wider and shifted: every measure lands strictly inside (0, 1)
    return real, fake


@pytest.mark.parametrize("n_real,n_fake,d,k", [(400, 400, 8, 5), (500, 350, 16, 3), (300, 600, 32, 10)])
def test_matches_reference_package(n_real, n_fake, d, k):
    real, fake = clouds(n_real, n_fake, d, seed=k)
    ref = compute_prdc(real, fake, nearest_k=k)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), k)
    for key in ("precision", "recall", "density", "coverage"):
        assert 0 < ref[key] < 1.5
        assert ours[key] == pytest.approx(float(ref[key]), rel=1e-4), key


def test_chunked_walk_gives_the_same_answer(monkeypatch):
    real, fake = clouds(300, 250, 8, seed=1)
    whole = prdc(torch.from_numpy(real), torch.from_numpy(fake), 5)
    monkeypatch.setattr(prdc_module, "_chunk_rows", lambda n_cols, budget_bytes=0: 7)  # many ragged chunks
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake), 5) == whole


def test_cached_radii_give_the_same_answer():
    real, fake = clouds(300, 300, 8, seed=2)
    r = torch.from_numpy(real)
    assert prdc(r, torch.from_numpy(fake), 4, real_radii_sq=knn_radii(r, 4)) == prdc(r, torch.from_numpy(fake), 4)


def test_knn_radii_are_the_kth_neighbour_excluding_self():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # 2nd nearest other point: of 0 is 3 (distance 3), of 1 is 3 (2), of 3 is 0 (3), of 7 is 1 (6); squared
    assert knn_radii(x, 2).tolist() == [9.0, 4.0, 9.0, 36.0]


def test_identical_sets_score_one():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    s = prdc(x, x.clone(), 5)
    assert s["precision"] == 1.0 and s["recall"] == 1.0 and s["coverage"] == 1.0
    assert s["density"] > 0.9


def test_one_point_repeated_has_low_recall_and_coverage():
    real = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    fake = real[:1].repeat(500, 1) + 1e-3 * torch.randn(500, 6, generator=torch.Generator().manual_seed(2))
    s = prdc(real, fake, 5)
    assert s["precision"] == 1.0  # every sample is realistic...
    assert s["recall"] < 0.02 and s["coverage"] < 0.02  # ...but the variety is gone


def test_errors_name_the_problem():
    with pytest.raises(EvalInputError, match="k=5 nearest neighbours"):
        prdc(torch.randn(5, 3), torch.randn(10, 3), 5)
    with pytest.raises(EvalInputError, match="differ in size"):
        prdc(torch.randn(10, 3), torch.randn(10, 4), 2)
