"""Denoising through a run's latent space: noisy images encoded and decoded, PSNR before and after.

An autoencoder trained on clean images maps a noisy one to the code of a nearby clean one and decodes
that: the noise, which its code has no room for, is dropped along with the detail it also has no room
for (Vincent et al. 2008 train for this on purpose; any encoder that compresses does some of it). The
noise is Gaussian of standard deviation `noise` on the [-1, 1] scale, drawn from a seeded generator,
and the noisy images are clipped to [-1, 1] as a stored image would be. PSNR (genlab.eval.fidelity)
is measured against the clean input; the reconstruction of the clean input itself bounds what the
model can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ArgumentError
from .latents import Images, open_codec, read_images


@dataclass
class Denoising:
    """Clean inputs, their noisy versions, the model's denoisings, and reconstructions of the clean ones."""

    clean: torch.Tensor  # (N, C, H, W) in [-1, 1]
    noisy: torch.Tensor  # (N, C, H, W) clean + noise, clipped
    denoised: torch.Tensor  # (N, C, H, W) decode(encode(noisy))
    reconstructed: torch.Tensor  # (N, C, H, W) decode(encode(clean)): the model's best
    noise: float

    def psnr(self) -> dict[str, torch.Tensor]:
        """PSNR in dB per image (N,) against the clean input, for noisy, denoised and reconstructed."""
        from ..eval.fidelity import psnr

        return {name: psnr(getattr(self, name), self.clean) for name in ("noisy", "denoised", "reconstructed")}

    def grid_rows(self, max_items: int = 16) -> torch.Tensor:
        """(3 * k, C, H, W): a row of clean inputs, a row of noisy ones, a row of denoised ones."""
        k = min(max_items, len(self.clean))
        return torch.cat([self.clean[:k], self.noisy[:k], self.denoised[:k]])

    def save_grid(self, path: str | Path, max_items: int = 16) -> Path:
        """Rows clean / noisy / denoised of the first `max_items` images."""
        from ..imageio import save_grid

        return save_grid(self.grid_rows(max_items), path, nrow=min(max_items, len(self.clean)))


def add_noise(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, noise^2) per pixel, drawn from `generator` (a CPU generator: x is on the CPU), clipped to [-1, 1]."""
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * eps).clamp(-1, 1)


def denoise(run: Any, images: Images, *, noise: float = 0.3, seed: int = 0, checkpoint: str = "latest",
            device: str | None = None, batch_size: int = 500) -> Denoising:
    """Add noise to images and reconstruct them: `denoise("runs/vae-mnist", "digits.npz", noise=0.3)`.

    Args:
        run: A run directory (or `Run`) whose model encodes and decodes images.
        images: (N, C, H, W) in [-1, 1], or an image file, a folder of them or an .npz.
        noise: Standard deviation of the Gaussian noise on the [-1, 1] scale (0.3: a strong grain).
        seed: Seeds the noise; the same seed draws the same noise.

    Returns:
        A `Denoising` (clean, noisy, denoised, reconstructed; `psnr()`, `save_grid`).

    Raises:
        ArgumentError: The model has no latent space, the images do not fit it, or noise < 0.
    """
    if noise < 0:
        raise ArgumentError(f"--noise is a standard deviation and cannot be negative, got {noise}")
    _, codec = open_codec(run, checkpoint, device, batch_size)
    clean = read_images(images, codec.model.data_shape, "the --input images")
    noisy = add_noise(clean, noise, torch.Generator().manual_seed(seed))
    return Denoising(clean, noisy, codec.reconstruct(noisy), codec.reconstruct(clean), noise)
