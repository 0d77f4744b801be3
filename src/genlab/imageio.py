"""Saving samples: image grids (PNG via Pillow), arrays (.npz), and scatter plots for 2-D points."""

from __future__ import annotations

import math
import os
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
    from PIL import Image

    grid = make_grid(images, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*reference[:, :2].T.numpy(), s=2, c="#bbbbbb", label="data")
    ax.scatter(*points[:, :2].detach().cpu().T.numpy(), s=2, c="#1f77b4", label="samples")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_samples(samples: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None,
                 reference: torch.Tensor | None = None) -> Path:
    """Write samples by the file's extension: .png (grid or scatter) or .npz (arrays for evaluation).

    The .npz holds `images` as uint8 (N, H, W, C), the layout of most tools (e.g. the ADM/guided-diffusion
    reference batches), or `points` float32 (N, D), plus `labels` if given.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = {"images": to_uint8(samples)} if samples.dim() == 4 else {"points": samples.float().cpu().numpy()}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        return path
    if suffix in (".png", ".jpg", ".jpeg"):
        if samples.dim() == 4:
            return save_grid(samples, path)
        return save_scatter(samples, path, reference if reference is not None and reference.dim() == 2 else None)
    raise GenlabError(f"cannot write samples to '{path}': use a .png (grid) or .npz (arrays) file name")


def load_samples(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read an .npz written by genlab or another tool -> (samples in the data range, labels or None).

    Accepts uint8 images (N, H, W, C) or (N, C, H, W), float images in [-1, 1] or [0, 1], or `points`.
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
    if "points" in keys:
        return torch.from_numpy(np.asarray(data["points"], dtype=np.float32)), labels
    key = "images" if "images" in keys else ("arr_0" if "arr_0" in keys else None)
    if key is None:
        raise GenlabError(f"{path} holds {keys}; expected an 'images' (or 'arr_0') array, or 'points'")
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
