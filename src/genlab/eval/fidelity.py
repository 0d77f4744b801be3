"""Per-image fidelity of a reconstruction to its original: PSNR and SSIM.

For super-resolution and denoising, where there is one right answer per input. SSIM follows Wang et
al. 2004: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the image, on
images in [-1, 1] (data range 2) and channel by channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0  # genlab's images lie in [-1, 1]


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (B,), of x against reference, both (B, C, H, W)."""
    mse = (x.float() - reference.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, reference: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (B,) of x against reference, both (B, C, H, W); 1 means identical.

    The window shrinks to the image for images smaller than it (8x8 digits), staying odd."""
    x, y = x.float(), reference.float()
    channels, side = x.shape[1], min(x.shape[-2:])
    window = min(window, side - (1 - side % 2))
    w = _gaussian_window(window, sigma, channels).to(x.device)

    def blur(t):
        return F.conv2d(t, w, groups=channels)  # valid windows only, as Wang et al.

    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)
