"""2-D toy distributions for fast visual checks of density and mode coverage. Points lie within about [-1, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Dataset, DatasetInfo, LoadOptions, register, split

N_POINTS = 20000


def eight_gaussians_centers() -> np.ndarray:
    angles = np.arange(8) * 2 * math.pi / 8
    return 0.8 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


EIGHT_GAUSSIANS_STD = 0.04


def sample_points(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(n, noise=0.05, random_state=int(rng.integers(1 << 31)))
        return (x - [0.5, 0.25]) / 1.6, y
    if name == "8gaussians":
        y = rng.integers(0, 8, n)
        return eight_gaussians_centers()[y] + EIGHT_GAUSSIANS_STD * rng.standard_normal((n, 2)), y
    if name == "swissroll":
        from sklearn.datasets import make_swiss_roll

        x, _ = make_swiss_roll(n, noise=0.3, random_state=int(rng.integers(1 << 31)))
        return x[:, [0, 2]] / 13.0, None
    if name == "checkerboard":
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0
        x2 = x2 + np.floor(x1) % 2
        return np.stack([x1, x2], axis=1) / 2.0, None
    raise KeyError(name)


def load_points(name: str, opts: LoadOptions) -> Dataset:
    """N_POINTS float32 points of toy set `name`, always the same ones (drawn from a fixed seed)."""
    x, y = sample_points(name, N_POINTS, np.random.default_rng(1234))
    labels = None if y is None else torch.tensor(y, dtype=torch.int64)
    xt, yt, xv, yv = split(torch.tensor(x, dtype=torch.float32), labels, opts.val_fraction, opts.seed)
    names = [str(i) for i in range(int(y.max()) + 1)] if y is not None else None
    # data with known modes says so, so that evaluation can count the modes covered without knowing its name
    extras = {"mode_centers": eight_gaussians_centers().tolist(), "mode_std": EIGHT_GAUSSIANS_STD} if name == "8gaussians" else {}
    return Dataset(name, xt, yt, xv, yv, kind="points", class_names=names, source="generated (fixed seed)",
                   extras=extras)


for _name, _desc, _classes in [
    ("moons", "two interleaving half circles", "2 (moon)"),
    ("8gaussians", "eight Gaussians on a circle: the usual mode-coverage check", "8 (mode)"),
    ("swissroll", "a 2-D swiss roll", "none"),
    ("checkerboard", "a 4x4 checkerboard of uniform squares", "none"),
]:
    register(DatasetInfo(_name, f"2-D toy: {_desc}", "generated", "2", _classes, load_points))
