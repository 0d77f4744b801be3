"""PSNR and SSIM: exact values where the formulas give them, and the orderings they must respect."""

from __future__ import annotations

import math

import torch

from genlab.eval.fidelity import psnr, ssim


def test_psnr_of_a_known_error():
    x = torch.zeros(2, 1, 8, 8)
    y = x + 0.1  # MSE 0.01 on a data range of 2: 10 log10(4 / 0.01)
    assert torch.allclose(psnr(y, x), torch.full((2,), 10 * math.log10(400)), atol=1e-4)


def test_ssim_is_one_for_identical_images_and_matches_the_formula_on_flat_ones():
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    a, b = 0.2, -0.3  # flat images: no variance, only the luminance term (2ab + c1) / (a^2 + b^2 + c1)
    c1 = (0.01 * 2) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert torch.allclose(ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)), torch.tensor([expected]),
                          atol=1e-4)


def test_ssim_falls_with_noise_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    slightly, badly = x + 0.05 * torch.randn(x.shape, generator=g), x + 0.5 * torch.randn(x.shape, generator=g)
    assert (ssim(slightly, x) > ssim(badly, x)).all() and (ssim(badly, x) < 0.9).all()
    assert torch.allclose(ssim(badly, x), ssim(x, badly), atol=1e-6)
    small = torch.rand(2, 1, 8, 8, generator=g)  # smaller than the 11x11 window: the window shrinks
    assert torch.allclose(ssim(small, small), torch.ones(2), atol=1e-5)
