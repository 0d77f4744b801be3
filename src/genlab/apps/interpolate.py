"""Interpolation in a run's latent space: between two real images (encoded) or two random codes.

Linear interpolation cuts through the inside of the Gaussian shell where a high-dimensional N(0, I)
code almost never lies (its norm concentrates near sqrt(d)), so midpoints decode to washed-out items;
spherical interpolation (slerp; Shoemake 1985, proposed for generative latents by White 2016,
"Sampling Generative Networks") walks the great circle between the two codes instead, keeping the
norm between theirs. Any run whose model encodes and decodes works (genlab.apps.latents).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import ArgumentError
from .latents import Images, open_codec, read_images

Mode = Literal["linear", "slerp"]
MODES = ("linear", "slerp")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(T, *shape): (1 - t) z0 + t z1 for each weight in t (T,)."""
    t = t.view(-1, *[1] * z0.dim()).to(z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(T, *shape): spherical interpolation from z0 (t = 0) to z1 (t = 1) over the angle between them.

    sin((1 - t) w) / sin w * z0 + sin(t w) / sin w * z1, w the angle between the flattened codes; nearly
    parallel codes (sin w ~ 0) fall back to linear interpolation, which is then the same path.
    """
    a, b = z0.flatten().double(), z1.flatten().double()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(eps)
    omega = torch.arccos(cos.clamp(-1, 1))
    if torch.sin(omega).abs() < 1e-6:
        return lerp(z0, z1, t)
    t = t.double().view(-1, 1)
    out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)  # (T, D)
    return out.to(z0.dtype).view(len(t), *z0.shape)


def latent_path(z0: torch.Tensor, z1: torch.Tensor, frames: int, mode: Mode = "linear") -> torch.Tensor:
    """(frames, *shape) codes from z0 to z1 inclusive, evenly spaced in t."""
    if mode not in MODES:
        raise ArgumentError(f"--mode takes {' or '.join(MODES)}, got '{mode}'")
    if frames < 2:
        raise ArgumentError(f"--frames must be at least 2 (the two ends), got {frames}")
    t = torch.linspace(0, 1, frames)
    return (slerp if mode == "slerp" else lerp)(z0, z1, t)


@dataclass
class Interpolation:
    """The codes of an interpolation, their decodings, and the real images at its ends if there were any."""

    latents: torch.Tensor  # (frames, *latent shape)
    images: torch.Tensor  # (frames, C, H, W) in [-1, 1]
    weights: torch.Tensor  # (frames,) t from 0 to 1
    mode: str
    endpoints: torch.Tensor | None = None  # (2, C, H, W): a and b as given

    def strip(self) -> torch.Tensor:
        """(k, C, H, W) one row: a, the decoded frames, b (without real ends: the frames alone)."""
        if self.endpoints is None:
            return self.images
        return torch.cat([self.endpoints[:1], self.images, self.endpoints[1:]])

    def save_strip(self, path: str | Path) -> Path:
        """The strip as one image row (PNG or any format Pillow writes by suffix)."""
        from ..imageio import save_grid

        strip = self.strip()
        return save_grid(strip, path, nrow=len(strip))

    def save_gif(self, path: str | Path, frame_ms: int = 120, size: int = 128) -> Path:
        """An animated GIF of the frames (enlarged to about `size` pixels), looped. Pillow merges
        consecutive frames that are identical pixel for pixel into one shown as long, which plays the same."""
        from PIL import Image

        from ..imageio import make_grid

        h, w = self.images.shape[-2:]
        scale = max(1, size // max(h, w))
        pictures = []
        for image in self.images:
            grid = make_grid(image[None], nrow=1, padding=0, scale=scale)
            pictures.append(Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
        return path

    def save(self, path: str | Path) -> Path:
        """A GIF for a .gif suffix, else the strip."""
        return self.save_gif(path) if Path(path).suffix.lower() == ".gif" else self.save_strip(path)


def interpolate(run: Any, a: Images | None = None, b: Images | None = None, *, frames: int = 10,
                mode: Mode = "linear", seed: int = 0, checkpoint: str = "latest",
                device: str | None = None) -> Interpolation:
    """Interpolate between two images' codes, or two random codes: `interpolate(run, a, b).save("strip.png")`.

    Args:
        run: A run directory (or `Run`) whose model encodes and decodes.
        a, b: The two ends: (C, H, W) tensors in [-1, 1] or files (the first image of a file, folder or
            .npz). Both None: two random codes from the model's prior, drawn from `seed`.
        frames: Decoded items from a to b inclusive; the first and last are a's and b's reconstructions.
        mode: "linear", or "slerp" (spherical, for Gaussian codes).

    Returns:
        An `Interpolation` (codes, images, weights; `save_strip`, `save_gif`).

    Raises:
        ArgumentError: The model has no latent space, only one end was given, or frames < 2.
    """
    _, codec = open_codec(run, checkpoint, device)
    if (a is None) != (b is None):
        raise ArgumentError("give both ends (--a IMG --b IMG), or neither for two random codes")
    endpoints = None
    if a is None:
        z = codec.prior(2, codec.generator(seed))
    else:
        shape = codec.model.data_shape
        endpoints = torch.cat([read_images(a, shape, "--a")[:1], read_images(b, shape, "--b")[:1]])
        z = codec.encode(endpoints)
    latents = latent_path(z[0], z[1], frames, mode)
    return Interpolation(latents, codec.decode(latents), torch.linspace(0, 1, frames), mode, endpoints)
