"""Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020) on features.

Each real point owns a ball reaching its k-th nearest real neighbour (itself excluded); likewise each
generated point among the generated.
- precision: share of generated points inside some real ball (are samples realistic?)
- recall: share of real points inside some generated ball (is the data's variety produced?)
- density: balls containing each generated point, averaged, divided by k (about 1 for matching sets;
  it rewards samples in dense real regions and is not capped at 1)
- coverage: share of real points whose ball holds at least one generated point (recall without the
  generated balls, which outliers inflate)

The definitions and comparisons (strict `<` on Euclidean distances) are those of the `prdc` package,
the authors' reference. Instead of one full N x M distance matrix it walks over row chunks in torch,
which keeps 10,000 x 10,000 within memory and a few seconds: in float64, so that boundary decisions match
the reference, and on squared distances (the same order, without 10^8 square roots).
"""

from __future__ import annotations

import torch

from ..errors import EvalInputError


def _sq_distances(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a), len(b)) by |a|^2 + |b|^2 - 2 a.b, as scikit-learn computes them."""
    d2 = a @ b.T
    d2.mul_(-2).add_(a.pow(2).sum(1, keepdim=True)).add_(b_sq)
    return d2.clamp_(min=0)


def _chunk_rows(n_cols: int, budget_bytes: int = 256 << 20) -> int:
    return max(1, min(4096, budget_bytes // (8 * max(1, n_cols))))


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each row of x to its k-th nearest other row (float64, (N,))."""
    if len(x) <= k:
        raise EvalInputError(f"k={k} nearest neighbours need more than {k} items; got {len(x)}. Lower k or add samples.")
    x = x.double()
    x_sq = x.pow(2).sum(1)
    chunk = _chunk_rows(len(x))
    out = []
    for start in range(0, len(x), chunk):
        d = _sq_distances(x[start : start + chunk], x, x_sq)
        # k + 1: the point itself is its own nearest, at 0. (topk is ~15x faster than kthvalue here.)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, real_radii_sq: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` (M, D) against `real` (N, D) with k neighbours.

    `real_radii_sq` (from `knn_radii(real, k)`) may be passed in when it is cached with the reference.
    """
    if real.shape[1:] != fake.shape[1:]:
        raise EvalInputError(f"real features {tuple(real.shape)} and generated {tuple(fake.shape)} differ in size")
    real, fake = real.double(), fake.double()
    r_real = knn_radii(real, k) if real_radii_sq is None else real_radii_sq.double()
    r_fake = knn_radii(fake, k)
    fake_sq = fake.pow(2).sum(1)
    inside_count = torch.zeros(len(fake), dtype=torch.float64)  # real balls holding each generated point
    recalled = torch.zeros(len(real), dtype=torch.bool)
    covered = torch.zeros(len(real), dtype=torch.bool)
    chunk = _chunk_rows(len(fake))
    for start in range(0, len(real), chunk):
        d = _sq_distances(real[start : start + chunk], fake, fake_sq)  # (chunk, M)
        radii = r_real[start : start + chunk, None]
        inside_count += (d < radii).sum(0)
        recalled[start : start + chunk] = (d < r_fake[None, :]).any(1)
        covered[start : start + chunk] = d.min(1).values < radii[:, 0]
    return {
        "precision": float((inside_count > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(inside_count.mean() / k),
        "coverage": float(covered.double().mean()),
    }
