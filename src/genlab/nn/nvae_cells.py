"""The building blocks of NVAE (Vahdat & Kautz 2020, "NVAE: A Deep Hierarchical Variational Autoencoder").

- `SqueezeExcitation`: channel gates from the spatial mean (Hu et al. 2018), NVAE's hidden width max(C/16, 4).
- `EncoderCell`: BN-Swish-conv3x3 twice, then SE (NVAE's "res_bnswish"); stride 2 halves the size and
  doubles the width, its skip a space-to-depth 1x1 conv (a dense form of NVAE's FactorizedReduce).
- `GenerativeCell`: BN, 1x1 expand, BN-Swish, 5x5 depthwise, BN-Swish, 1x1 project, BN, then SE (NVAE's
  "mconv_e6k5g0", an inverted residual: a large receptive field for few parameters); `upsample=True`
  doubles the size and halves the width (expanding the output width, not NVAE's input width), its skip
  nearest upsampling + 1x1 conv.
- Both add 0.1 x the branch to the skip (NVAE's Cell), so a deep tower starts close to the identity.
- `Gaussian`: NVAE's Normal, mean and log-scale soft-clamped to +-5 and sigma = exp(log_sigma) + 0.01,
  with the analytic KL; `SpectralRegulariser`: NVAE's spectral_norm_parallel (sum of the largest
  singular values of every conv kernel by warm-started power iteration) and its batchnorm_loss.
Batch norm uses NVAE's momentum 0.05.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.05


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 16, 4)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean((2, 3)))[:, :, None, None]  # (B, C, 1, 1) gates


class EncoderCell(nn.Module):
    """(B, C, H, W) -> (B, C, H, W), or (B, 2C, H/2, W/2) with stride 2."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        out = channels * stride
        self.branch = nn.Sequential(_bn(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, stride, 1),
                                    _bn(out), nn.SiLU(), nn.Conv2d(out, out, 3, 1, 1), SqueezeExcitation(out))
        # space-to-depth then 1x1: every input pixel reaches the halved skip, as in FactorizedReduce
        self.skip = (nn.Sequential(nn.SiLU(), nn.PixelUnshuffle(2), nn.Conv2d(4 * channels, out, 1))
                     if stride == 2 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + 0.1 * self.branch(x)


class GenerativeCell(nn.Module):
    """(B, C, H, W) -> (B, C, H, W), or (B, C/2, 2H, 2W) with upsample=True."""

    def __init__(self, channels: int, expand: int = 6, upsample: bool = False):
        super().__init__()
        out = channels // 2 if upsample else channels
        # NVAE expands the input width; an upsampling cell expands its (halved) output width instead, which
        # halves the cost of the most expensive cell, the one at the doubled size
        hidden = out * expand
        up = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        self.branch = nn.Sequential(*up, _bn(channels),
                                    nn.Conv2d(channels, hidden, 1, bias=False), _bn(hidden), nn.SiLU(),
                                    nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=False), _bn(hidden), nn.SiLU(),
                                    nn.Conv2d(hidden, out, 1, bias=False), _bn(out), SqueezeExcitation(out))
        self.skip = nn.Sequential(*up, nn.Conv2d(channels, out, 1)) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + 0.1 * self.branch(x)


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    return bound * torch.tanh(x / bound)


class Gaussian:
    """A diagonal Gaussian parameterised as NVAE's Normal; float32 whatever the network computed in."""

    def __init__(self, mean: torch.Tensor, log_sigma: torch.Tensor):
        self.mean = soft_clamp(mean.float())
        self.sigma = soft_clamp(log_sigma.float()).exp() + 1e-2  # the floor keeps the KL and its gradients finite

    def sample(self, generator: torch.Generator | None, temperature: float = 1.0) -> torch.Tensor:
        if temperature == 0:
            return self.mean
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + temperature * self.sigma * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mean, sigma) per item (B,), summed over the group's dimensions."""
        eps = (z - self.mean) / self.sigma
        return (-0.5 * eps.pow(2) - self.sigma.log() - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def kl(self, prior: "Gaussian") -> torch.Tensor:
        """KL(self || prior) per item (B,), summed over the group's dimensions."""
        term1 = (self.mean - prior.mean) / prior.sigma
        ratio = self.sigma / prior.sigma
        return (0.5 * (term1.pow(2) + ratio.pow(2)) - 0.5 - ratio.log()).flatten(1).sum(1)


class SpectralRegulariser(nn.Module):
    """lambda-free NVAE smoothness terms over a model's convolutions and batch norms.

    `spectral(convs)`: the sum over conv kernels (as (out, in*k*k) matrices) of u^T W v, u and v the
    leading singular vectors found by power iteration. Kernels of one shape are stacked and iterated
    together; the vectors are buffers, warm-started from the previous step (NVAE: 4 iterations a step,
    here `iterations`, and 10x that at construction) and advanced only by gradient-enabled training
    calls, so a loss evaluated twice gives the same number. The gradient flows through W alone.
    `batchnorm(bns)`: NVAE's batchnorm_loss, the sum of max |gamma| over the batch norms.
    """

    def __init__(self, convs: list[nn.Conv2d], iterations: int = 4, seed: int = 0):
        super().__init__()
        self.iterations = iterations
        self.shapes: list[tuple[int, int]] = []
        for conv in convs:
            shape = (conv.weight.shape[0], conv.weight[0].numel())
            if shape not in self.shapes:
                self.shapes.append(shape)
        g = torch.Generator().manual_seed(seed)
        for i, (rows, cols) in enumerate(self.shapes):
            count = sum(1 for c in convs if (c.weight.shape[0], c.weight[0].numel()) == (rows, cols))
            self.register_buffer(f"u{i}", F.normalize(torch.randn(count, rows, generator=g), dim=1, eps=1e-3))
            self.register_buffer(f"v{i}", F.normalize(torch.randn(count, cols, generator=g), dim=1, eps=1e-3))
        with torch.no_grad():
            self._iterate(self._stacks(convs), 10 * iterations)

    def _stacks(self, convs: list[nn.Conv2d]) -> list[torch.Tensor]:
        by_shape: dict[tuple[int, int], list[torch.Tensor]] = {s: [] for s in self.shapes}
        for conv in convs:
            w = conv.weight.float()
            by_shape[(w.shape[0], w[0].numel())].append(w.flatten(1))
        return [torch.stack(by_shape[s]) for s in self.shapes]  # (count, rows, cols) each

    @torch.no_grad()
    def _iterate(self, stacks: list[torch.Tensor], iterations: int) -> None:
        for i, w in enumerate(stacks):
            u, v = getattr(self, f"u{i}"), getattr(self, f"v{i}")
            w = w.detach()
            for _ in range(iterations):
                v = F.normalize(torch.bmm(u.unsqueeze(1), w).squeeze(1), dim=1, eps=1e-3)  # (count, cols)
                u = F.normalize(torch.bmm(w, v.unsqueeze(2)).squeeze(2), dim=1, eps=1e-3)  # (count, rows)
            getattr(self, f"u{i}").copy_(u)
            getattr(self, f"v{i}").copy_(v)

    def spectral(self, convs: list[nn.Conv2d]) -> torch.Tensor:
        stacks = self._stacks(convs)
        if self.training and torch.is_grad_enabled():
            self._iterate(stacks, self.iterations)
        total = stacks[0].new_zeros(())
        for i, w in enumerate(stacks):
            u, v = getattr(self, f"u{i}"), getattr(self, f"v{i}")
            total = total + torch.bmm(u.unsqueeze(1), torch.bmm(w, v.unsqueeze(2))).sum()  # sum of sigma estimates
        return total

    @staticmethod
    def batchnorm(bns: list[nn.BatchNorm2d]) -> torch.Tensor:
        return torch.stack([bn.weight.abs().max() for bn in bns]).sum()
