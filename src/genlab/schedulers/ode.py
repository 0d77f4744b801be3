"""Probability-flow ODE samplers in the sigma parametrisation of Karras et al. 2022 (EDM).

Every diffusion or flow model can be written as x = x0 + sigma * eps (a variance-preserving x_t is this
x divided by sqrt(1 + sigma^2); a rectified-flow x_t is it divided by 1 + sigma). A sampler here takes
`denoised(x, sigma) -> x0 estimate` and a decreasing list of sigmas that ends at 0, and never sees the
network, its prediction type or its time variable: the model converts once, in its `denoised`. Each
starts from sigma_max * noise, or from `start` (an image-to-image edit's noised input).

- `euler`: Euler steps on dx/dsigma = (x - x0) / sigma (with no churn it is DDIM, eta 0);
- `heun`: Heun's second-order correction (Karras et al. 2022, Algorithm 1), 2 network calls a step
  except the last. Unlike the other two it depends on the coordinates it integrates in: `path="ve"`
  steps x against sigma, `path="flow"` steps a flow's x_t = x / (1 + sigma) against its time
  t = sigma / (1 + sigma), where the trajectories are nearly straight. On a flow's grid, whose first
  sigma is about 1000, the trapezoid in sigma averages two slopes over a step of ~1000 and fails;
  in t the same step has length 0.2;
- `dpm++`: DPM-Solver++(2M) (Lu et al. 2022): multistep second order in the data prediction, one call
  a step, the usual choice for 10-20 steps.
Grids: `karras_sigmas` (rho = 7, dense at low noise) for discrete-time models, `flow_sigmas` (even in
a flow's time t = sigma / (1 + sigma)) for flow models.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from ..errors import ArgumentError

Denoised = Callable[[torch.Tensor, float], torch.Tensor]  # (x = x0 + sigma eps, sigma) -> x0 estimate
Path = Literal["ve", "flow"]
# the scale s(sigma) of each path's own coordinates y = s x, integrated against s(sigma) * sigma
_PATH_SCALE = {"ve": lambda sigma: 1.0, "flow": lambda sigma: 1.0 / (1.0 + sigma)}


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> list[float]:
    """`steps` sigmas from sigma_max down to sigma_min, spaced evenly in sigma^(1/rho), then 0."""
    if steps < 1:
        raise ArgumentError(f"sampler steps must be at least 1, got {steps}")
    if steps == 1:
        return [sigma_max, 0.0]
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


def flow_sigmas(steps: int, t_max: float = 0.999, shift: float = 1.0) -> list[float]:
    """`steps` times evenly spaced from t_max down to 0 on a flow's time axis, as sigmas (ending at 0).

    `shift` > 1 moves the steps towards high noise (t -> shift t / (1 + (shift - 1) t), Esser et al. 2024).
    """
    if steps < 1:
        raise ArgumentError(f"sampler steps must be at least 1, got {steps}")
    times = [t_max * (1 - i / steps) for i in range(steps)]
    times = [shift * t / (1 + (shift - 1) * t) for t in times]
    return [t / (1 - t) for t in times] + [0.0]


def _start(sigmas, shape, generator, device, dtype) -> torch.Tensor:
    return sigmas[0] * torch.randn(shape, generator=generator, device=device, dtype=dtype)


def euler_sample(denoised: Denoised, sigmas: list[float], shape: tuple[int, ...], *,
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                 progress: Callable[[int], None] | None = None, start: torch.Tensor | None = None,
                 path: Path = "ve") -> torch.Tensor:
    # Euler's step is the same in any path's coordinates (it is exact for a constant x0 estimate): `path`
    # is accepted so that every ODE sampler takes the same arguments
    x = _start(sigmas, shape, generator, device, dtype) if start is None else start
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = denoised(x, sigma)
        x = x0 + (sigma_next / sigma) * (x - x0)  # = x + (sigma_next - sigma) * (x - x0) / sigma
        if progress:
            progress(1)
    return x


def heun_sample(denoised: Denoised, sigmas: list[float], shape: tuple[int, ...], *,
                generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                progress: Callable[[int], None] | None = None, start: torch.Tensor | None = None,
                path: Path = "ve") -> torch.Tensor:
    scale = _PATH_SCALE[path]
    x = _start(sigmas, shape, generator, device, dtype) if start is None else start
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        s, s_next = scale(sigma), scale(sigma_next)
        tau, tau_next = s * sigma, s_next * sigma_next  # the path's time
        y = s * x
        d = (y - denoised(x, sigma)) / tau  # dy/dtau: on the flow path, the velocity
        euler = y + (tau_next - tau) * d
        if sigma_next == 0:  # the last step is Euler's: the slope at sigma = 0 is undefined
            y = euler
        else:
            d_next = (euler - denoised(euler / s_next, sigma_next)) / tau_next
            y = y + (tau_next - tau) * 0.5 * (d + d_next)
        x = y / s_next
        if progress:
            progress(1)
    return x


def dpmpp_2m_sample(denoised: Denoised, sigmas: list[float], shape: tuple[int, ...], *,
                    generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                    progress: Callable[[int], None] | None = None, start: torch.Tensor | None = None,
                    path: Path = "ve") -> torch.Tensor:
    # exact for a locally linear x0 estimate in log-SNR, which no change of the path's scale alters: `path`
    # does not change the steps
    x = _start(sigmas, shape, generator, device, dtype) if start is None else start
    previous = None  # the last step's data prediction and its log-SNR step
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = denoised(x, sigma)
        if sigma_next == 0:
            x = x0
        else:
            # lambda = -log(sigma) is half the log-SNR; h is this step's length in it
            h = math.log(sigma / sigma_next)
            estimate = x0
            if previous is not None:
                r = previous[1] / h
                estimate = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
            x = (sigma_next / sigma) * x - math.expm1(-h) * estimate
            previous = (x0, h)
        if progress:
            progress(1)
    return x


ODE_SAMPLERS = {"euler": euler_sample, "heun": heun_sample, "dpm++": dpmpp_2m_sample}


def ode_network_calls(sampler: str, steps: int) -> int:
    """Network evaluations of `steps` steps of an ODE sampler (Heun's last step is a single call)."""
    return 2 * steps - 1 if sampler == "heun" else steps
