"""Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): the same random colour, translation and cutout transforms applied to real and generated
images before the discriminator sees them, differentiable so the generator learns through them. With
small data sets this keeps the discriminator from memorising the training images.

Policies (comma-separated, as in the paper's code): "color" (brightness +-0.5, saturation x[0, 2],
contrast x[0.5, 1.5]), "translation" (shifts up to 1/8 of the side, zero padded), "cutout" (one square
of half the side zeroed). Images are in [-1, 1]. All draws come from the given generator.
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in parts if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; choose from {', '.join(POLICIES)}")
    return parts


def _uniform(x: torch.Tensor, generator, low: float, high: float) -> torch.Tensor:
    u = torch.rand((len(x), 1, 1, 1), generator=generator, device=x.device, dtype=torch.float32)
    return (low + (high - low) * u).to(x.dtype)


def _color(x: torch.Tensor, generator) -> torch.Tensor:
    x = x + _uniform(x, generator, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, generator, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, generator, 0.5, 1.5) + mean


def _shifted_index(size: int, shift: torch.Tensor) -> torch.Tensor:
    """(B, size) source index of each output position after shifting by `shift` (B,); -1 off the edge."""
    index = torch.arange(size, device=shift.device)[None, :] - shift[:, None]
    return torch.where((index >= 0) & (index < size), index, torch.full_like(index, -1))


def _translation(x: torch.Tensor, generator, ratio: float = 0.125) -> torch.Tensor:
    b, c, h, w = x.shape
    limit_h, limit_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-limit_h, limit_h + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(-limit_w, limit_w + 1, (b,), generator=generator, device=x.device)
    rows, cols = _shifted_index(h, dy), _shifted_index(w, dx)  # (B, H), (B, W)
    # pad one zero row and column at the end: index -1 reads it, which zero-pads the shifted-in border
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, generator, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b,), generator=generator, device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b,), generator=generator, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :] - (cy[:, None] - ch // 2)
    xs = torch.arange(w, device=x.device)[None, :] - (cx[:, None] - cw // 2)
    inside = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]  # (B, H, W)
    return x * (~inside)[:, None].to(x.dtype)


_TRANSFORMS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...] | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """x (B, C, H, W) in [-1, 1] -> the same shape, transformed by each policy in turn (differentiably)."""
    for name in parse_policy(policy) if isinstance(policy, str) else policy:
        x = _TRANSFORMS[name](x, generator)
    return x
