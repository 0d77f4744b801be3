"""Images in and out: uint8 conversion, grids (PNG via Pillow), and reading samples back from .npz.

Writing samples of every kind (images, points, tokens, series, audio) lives in `genlab.outputs`;
`save_samples` here is the old entry point that guessed the kind from the tensor's rank.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import GenlabError


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int | None = None) -> np.ndarray:
    """Tile (N, C, H, W) images into one (rows*H, cols*W, C) uint8 array with a dark border.

    Small images are enlarged by an integer factor (nearest neighbour) so 8x8 digits stay visible.
    """
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = scale or max(1, 64 // max(h, w)) if max(h, w) < 32 else (scale or 1)
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), 40, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write `make_grid(images, nrow)` as an image file; Pillow picks the format from the suffix."""
    from PIL import Image

    grid = make_grid(images, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def save_samples(samples: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None,
                 reference: torch.Tensor | None = None) -> Path:
    """Deprecated: use `genlab.outputs.save_samples(samples, path, kind)` with the model's `output_kind`.

    Guesses the kind from the tensor: (N, C, H, W) images, (N, T) integer ids as tokens, anything else
    as points. A guess by rank is what drew token arrays as scatter plots; callers name the kind instead.
    """
    import warnings

    from . import outputs

    warnings.warn("genlab.imageio.save_samples guesses the kind of samples from their shape; call "
                  "genlab.outputs.save_samples(samples, path, kind=model.output_kind)", DeprecationWarning,
                  stacklevel=2)
    if samples.dim() == 4:
        kind = "image"
    elif samples.dim() == 2 and not samples.is_floating_point():
        kind = "tokens"
    else:
        kind = "points"
    return outputs.save_samples(samples, path, kind, labels=labels, reference=reference)


# .npz keys written by genlab.outputs for kinds other than images -> the dtype they are read back as
_ARRAY_KEYS = {"points": torch.float32, "tokens": torch.long, "series": torch.float32, "audio": torch.float32}


def load_samples(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read an .npz written by genlab or another tool -> (samples in the data range, labels or None).

    Accepts uint8 images (N, H, W, C) or (N, C, H, W), float images in [-1, 1] or [0, 1], and the arrays
    `genlab.outputs` writes for the other kinds: `points`, `tokens` (int64), `series`, `audio` (float32,
    as saved; an audio file's `sample_rate` is not returned).
    """
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"no such file: {path}")
    try:
        data = np.load(path)
        keys = list(data.keys())
    except (OSError, ValueError) as e:
        raise GenlabError(f"{path} is not a readable .npz file ({e})") from None
    labels = torch.from_numpy(data["labels"]).long() if "labels" in keys else None
    for key, dtype in _ARRAY_KEYS.items():
        if key in keys:
            return torch.from_numpy(np.asarray(data[key])).to(dtype), labels
    key = "images" if "images" in keys else ("arr_0" if "arr_0" in keys else None)
    if key is None:
        raise GenlabError(f"{path} holds {keys}; expected an 'images' (or 'arr_0') array, or one of "
                          f"{', '.join(repr(k) for k in _ARRAY_KEYS)}")
    arr = np.asarray(data[key])
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise GenlabError(f"{path}: images must be (N, H, W, C) or (N, C, H, W), got shape {arr.shape}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    x = torch.from_numpy(arr.astype(np.float32))
    if arr.dtype == np.uint8:
        x = x / 127.5 - 1
    elif x.min() >= 0 and x.max() <= 1:
        x = x * 2 - 1
    return x, labels
