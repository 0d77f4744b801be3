"""`shapes`: procedural dSprites-style images with known generative factors, for disentanglement.

After dSprites (Matthey et al. 2017, used by Higgins et al. 2017 and Chen et al. 2018): one white shape
on black, drawn from five independent factors on a full grid,

    shape (square, ellipse, heart) x scale (6) x rotation (10) x x position (16) x y position (16)

= 46,080 combinations. Unlike dSprites the 10 angles span a quarter turn, not a full one: a square
repeats every 90 degrees, so over a full turn several angles draw the same image and no model could
tell them apart. The images are rendered here, deterministically, with no files: each pixel is the
coverage of 2x2 sub-pixel samples (5 grey levels, stored as uint8, [-1, 1] as every genlab image).

`size` items (data option, `--set train.data_options.size=N`; 0 = the whole grid) are drawn without
replacement from the grid with a fixed seed, so every run sees the same items. Every item keeps its
factor indices in `factors` (N, 5) int64, ordered as `FACTOR_NAMES`; its class label is its shape.
x runs left to right and y top to bottom, as image columns and rows do.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import from_dict
from ..errors import ArgumentError
from .base import Dataset, DatasetInfo, LoadOptions, register, split

FACTORS = "factors"  # the batch entry holding each item's factor indices (B, 5)
SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
SCALES = np.linspace(0.5, 1.0, 6)  # as dSprites
ROTATIONS = np.linspace(0.0, math.pi / 2, 10, endpoint=False)
POSITIONS = np.linspace(-0.55, 0.55, 16)  # shape centres in image coordinates [-1, 1]; the largest stays inside
FACTOR_SIZES = (len(SHAPE_NAMES), len(SCALES), len(ROTATIONS), len(POSITIONS), len(POSITIONS))
GRID_SIZE = int(np.prod(FACTOR_SIZES))
MAX_HALF_SIZE = 0.35  # half-extent of a scale-1 shape, in image coordinates
DEFAULT_SIZE = 20_000
DEFAULT_IMAGE_SIZE = 32  # trains in minutes on a CPU; --image-size 64 for dSprites' resolution
SUBSAMPLES = 2  # per side: anti-aliased edges let half-pixel moves and small turns show
SUBSET_SEED = 20_170_000  # fixed: the same items whatever the run's --seed (which only splits them)


@dataclass(frozen=True)
class ShapesOptions:
    size: int = DEFAULT_SIZE  # items drawn from the factor grid; 0: all of it


def factor_grid(size: int = 0) -> np.ndarray:
    """Factor indices (size, 5) of `size` grid points drawn with the fixed seed, in grid order (0: all)."""
    if size <= 0 or size >= GRID_SIZE:
        flat = np.arange(GRID_SIZE)
    else:
        flat = np.sort(np.random.default_rng(SUBSET_SEED).choice(GRID_SIZE, size, replace=False))
    return np.stack(np.unravel_index(flat, FACTOR_SIZES), axis=1).astype(np.int64)


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) of a shape's own frame (extent about 1) lie inside shape number `shape`."""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == 1:  # ellipse, twice as wide as high (dSprites' is elongated too)
        return u * u + 4 * v * v <= 1.0
    # the heart curve (a^2 + b^2 - 1)^3 = a^2 b^3, spanning |a| <= 1.14, -1 <= b <= 1.24: scaled to fit
    # and shifted to its centre, tip pointing down the image (b grows upwards, rows downwards)
    a, b = 1.2 * u, 0.12 - 1.2 * v
    a2 = a * a
    return (a2 + b * b - 1) ** 3 <= a2 * b**3


# every shape lies within this radius of its centre (a square's corner: 0.8 * sqrt(2)), in frame units
FRAME_RADIUS = 1.14


def render(factors: np.ndarray, image_size: int = DEFAULT_IMAGE_SIZE, chunk: int = 1024) -> np.ndarray:
    """uint8 images (N, 1, S, S), 0 = background, of the items with factor indices `factors` (N, 5)."""
    factors = np.asarray(factors, dtype=np.int64).reshape(-1, len(FACTOR_NAMES))
    size = image_size
    out = np.zeros((len(factors), 1, size, size), dtype=np.uint8)
    # only a box around each shape is drawn (a fifth of the image at the largest scale), then pasted in
    box = min(size, math.ceil(FRAME_RADIUS * MAX_HALF_SIZE * size) + 2)
    sub = (np.arange(box * SUBSAMPLES, dtype=np.float32) + 0.5) / SUBSAMPLES  # sub-pixel centres in box pixels
    for shape in range(len(SHAPE_NAMES)):
        items = np.flatnonzero(factors[:, 0] == shape)
        for start in range(0, len(items), chunk):
            idx = items[start : start + chunk]
            f = factors[idx]
            n = len(idx)
            # centres in pixels (pixel k spans [k, k + 1)), and each box's first pixel
            cx = ((POSITIONS[f[:, 3]] + 1) * size / 2).astype(np.float32)
            cy = ((POSITIONS[f[:, 4]] + 1) * size / 2).astype(np.float32)
            x0 = np.clip(np.floor(cx).astype(np.int64) - box // 2, 0, size - box)
            y0 = np.clip(np.floor(cy).astype(np.int64) - box // 2, 0, size - box)
            half = (MAX_HALF_SIZE * SCALES[f[:, 1]] * size / 2).astype(np.float32)[:, None, None]  # in pixels
            angle = ROTATIONS[f[:, 2]].astype(np.float32)[:, None, None]
            dx = (x0 - cx)[:, None, None] + sub[None, None, :]  # (n, 1, s) offsets from the centre
            dy = (y0 - cy)[:, None, None] + sub[None, :, None]  # (n, s, 1)
            cos, sin = np.cos(angle), np.sin(angle)
            # into the shape's frame: undo the turn, then the scale
            inside = _inside(shape, (cos * dx + sin * dy) / half, (cos * dy - sin * dx) / half)  # (n, s, s)
            cover = inside.reshape(n, box, SUBSAMPLES, box, SUBSAMPLES).mean(axis=(2, 4))
            rows = (y0[:, None] + np.arange(box))[:, :, None]
            cols = (x0[:, None] + np.arange(box))[:, None, :]
            out[idx[:, None, None], 0, rows, cols] = np.rint(cover * 255).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=2)
def _rendered(size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    factors = factor_grid(size)
    return torch.from_numpy(render(factors, image_size)), torch.from_numpy(factors)


def load_shapes(name: str, opts: LoadOptions) -> Dataset:
    o = from_dict(ShapesOptions, opts.options, "shapes options")
    if o.size < 0:
        raise ArgumentError(f"shapes needs size >= 0 (0: the whole grid of {GRID_SIZE}), got {o.size}")
    image_size = opts.image_size or DEFAULT_IMAGE_SIZE
    if image_size < 16:
        raise ArgumentError(f"shapes are drawn at 16x16 or larger (positions 1 pixel apart), not {image_size}")
    x, factors = _rendered(o.size, image_size)
    # split item numbers, so the factors follow their images
    it, yt, iv, yv = split(torch.arange(len(x)), factors[:, 0].clone(), opts.val_fraction, opts.seed)
    extras = {"factor_names": list(FACTOR_NAMES), "factor_sizes": list(FACTOR_SIZES)}
    return Dataset(name, x[it], yt, x[iv], yv, class_names=list(SHAPE_NAMES),
                   source=f"generated: {len(x)} of the {GRID_SIZE} factor combinations (fixed seed)",
                   extras=extras, items_train={FACTORS: factors[it]}, items_val={FACTORS: factors[iv]})


register(DatasetInfo("shapes", "dSprites-style shapes with known factors (shape, scale, rotation, x, y), generated",
                     "generated", f"1x{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}", "3 (square, ellipse, heart)",
                     load_shapes, options={"size": f"items drawn from the {GRID_SIZE}-item factor grid "
                                                   f"(default {DEFAULT_SIZE}; 0: all)"}))
