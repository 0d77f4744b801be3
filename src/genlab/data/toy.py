"""2-D toy distributions for fast visual checks of density and mode coverage. Points lie within about [-1, 1].

`8gaussians` takes the ring's geometry as data options (`--set train.data_options.radius=1.0` and `std`);
the default (radius 0.8, std 0.04) is a wide, easy ring. The ring of the mode-collapse papers is radius 1,
std 0.01 (PacGAN's released 2D-ring config; VEEGAN's 2D ring): see benchmarks/gan_modes.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import from_dict
from ..errors import ArgumentError
from .base import Dataset, DatasetInfo, LoadOptions, register, split

N_POINTS = 20000
EIGHT_GAUSSIANS_RADIUS = 0.8
EIGHT_GAUSSIANS_STD = 0.04


@dataclass(frozen=True)
class EightGaussiansOptions:
    radius: float = EIGHT_GAUSSIANS_RADIUS  # distance of every mode centre from the origin
    std: float = EIGHT_GAUSSIANS_STD  # per-coordinate standard deviation of each mode


def eight_gaussians_centers(radius: float = EIGHT_GAUSSIANS_RADIUS) -> np.ndarray:
    """The 8 mode centres (8, 2), the first on the positive x axis, 45 degrees apart."""
    angles = np.arange(8) * 2 * math.pi / 8
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def toy_options(name: str, options: dict) -> EightGaussiansOptions | None:
    """The checked data options of toy set `name` (only 8gaussians takes any)."""
    if name == "8gaussians":
        o = from_dict(EightGaussiansOptions, options, "8gaussians options")
        if not (o.radius > 0 and o.std > 0):
            raise ArgumentError(f"8gaussians needs radius > 0 and std > 0, got radius={o.radius}, std={o.std}")
        return o
    if options:
        raise ArgumentError(f"{name} takes no data options, got {sorted(options)}")
    return None


def sample_points(name: str, n: int, rng: np.random.Generator,
                  options: EightGaussiansOptions | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(n, noise=0.05, random_state=int(rng.integers(1 << 31)))
        return (x - [0.5, 0.25]) / 1.6, y
    if name == "8gaussians":
        o = options or EightGaussiansOptions()
        y = rng.integers(0, 8, n)
        return eight_gaussians_centers(o.radius)[y] + o.std * rng.standard_normal((n, 2)), y
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
    o = toy_options(name, opts.options)
    x, y = sample_points(name, N_POINTS, np.random.default_rng(1234), o)
    labels = None if y is None else torch.tensor(y, dtype=torch.int64)
    xt, yt, xv, yv = split(torch.tensor(x, dtype=torch.float32), labels, opts.val_fraction, opts.seed)
    names = [str(i) for i in range(int(y.max()) + 1)] if y is not None else None
    # data with known modes says so, so that evaluation can count the modes covered without knowing its name
    extras = {"mode_centers": eight_gaussians_centers(o.radius).tolist(), "mode_std": o.std} if o is not None else {}
    return Dataset(name, xt, yt, xv, yv, kind="points", class_names=names, source="generated (fixed seed)",
                   extras=extras)


EIGHT_GAUSSIANS_OPTIONS = {"radius": f"distance of the modes from the origin (default {EIGHT_GAUSSIANS_RADIUS})",
                           "std": f"standard deviation of each mode (default {EIGHT_GAUSSIANS_STD})"}

for _name, _desc, _classes in [
    ("moons", "two interleaving half circles", "2 (moon)"),
    ("8gaussians", "eight Gaussians on a circle: the usual mode-coverage check", "8 (mode)"),
    ("swissroll", "a 2-D swiss roll", "none"),
    ("checkerboard", "a 4x4 checkerboard of uniform squares", "none"),
]:
    register(DatasetInfo(_name, f"2-D toy: {_desc}", "generated", "2", _classes, load_points,
                         options=EIGHT_GAUSSIANS_OPTIONS if _name == "8gaussians" else {}))
