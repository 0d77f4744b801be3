"""genlab.schedulers: prediction conversions, ODE samplers against an exact solution, guidance."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import ArgumentError
from genlab.schedulers import NoiseSchedule
from genlab.schedulers.guidance import classifier_free
from genlab.schedulers.ode import ODE_SAMPLERS, flow_sigmas, heun_sample, karras_sigmas, ode_network_calls
from genlab.schedulers.prediction import PREDICTIONS, min_snr_weight, to_x0_and_eps, training_target


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scales(t: torch.Tensor, schedule: NoiseSchedule, ndim: int):
    return schedule.scales(t, ndim)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_each_prediction_type_converts_back_to_the_same_x0_and_noise(prediction):
    schedule = NoiseSchedule(1000, "cosine")
    x0, eps = torch.rand(6, 3, 4, 4, generator=gen(0)) * 2 - 1, torch.randn(6, 3, 4, 4, generator=gen(1))
    t = torch.tensor([0, 10, 250, 500, 900, 999])
    a, s = scales(t, schedule, 4)
    x_t = a * x0 + s * eps
    x0_back, eps_back = to_x0_and_eps(prediction, x_t, training_target(prediction, x0, eps, a, s), a, s)
    # away from both ends the round trip is exact to float32; at t = 0 (x0) and t = T-1 (eps) dividing by
    # a tiny scale amplifies rounding, so compare the well-conditioned middle tightly and the ends loosely
    assert torch.allclose(x0_back[1:5], x0[1:5], atol=1e-4) and torch.allclose(eps_back[1:5], eps[1:5], atol=1e-4)
    assert torch.allclose(x_t, a * x0_back + s * eps_back, atol=1e-5)


def test_v_prediction_is_the_published_definition():
    a, s = torch.tensor(0.6), torch.tensor(0.8)
    x0, eps = torch.tensor([1.0, -0.5]), torch.tensor([0.3, 2.0])
    assert torch.allclose(training_target("v", x0, eps, a, s), a * eps - s * x0)  # Salimans & Ho 2022, eq. 8
    with pytest.raises(ValueError, match="unknown prediction type 'score'"):
        training_target("score", x0, eps, a, s)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_min_snr_weights_give_every_prediction_type_the_same_loss_in_x0(prediction):
    """An x0 error delta costs min(snr, gamma) * delta^2 whatever the network predicts."""
    schedule, gamma = NoiseSchedule(1000, "cosine"), 5.0
    t = torch.tensor([5, 100, 400, 800])
    a, s = scales(t, schedule, 2)
    x0, eps = torch.randn(4, 8, generator=gen(0)), torch.randn(4, 8, generator=gen(1))
    x_t = a * x0 + s * eps
    delta = 0.01 * torch.randn(4, 8, generator=gen(2))
    x0_hat = x0 + delta
    eps_hat = (x_t - a * x0_hat) / s  # the noise estimate the same x_t implies
    output = training_target(prediction, x0_hat, eps_hat, a, s)
    weighted = min_snr_weight(prediction, schedule.snr(t), gamma) * (output - training_target(prediction, x0, eps, a, s)).pow(2).mean(1)
    expected = schedule.snr(t).clamp(max=gamma) * delta.pow(2).mean(1)
    assert torch.allclose(weighted, expected, rtol=1e-3)


# ------------------------------------------------------------------ ODE samplers
MU, C = 0.5, 0.3  # data ~ N(MU, C^2): the exact denoiser and the exact ODE solution are known


class GaussianDenoiser:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return MU + C**2 / (C**2 + sigma**2) * (x - MU)


def exact_solution(start: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """The probability-flow ODE of N(MU, C^2) data from `start` at sigma_max down to sigma = 0."""
    return MU + C / math.sqrt(C**2 + sigma_max**2) * (start - MU)


def _errors(steps: int) -> dict[str, float]:
    """Largest distance to the exact solution of each ODE sampler with `steps` Karras steps from sigma 80."""
    sigmas = karras_sigmas(0.002, 80.0, steps)
    exact = exact_solution(80.0 * torch.randn(2000, generator=gen(0)), 80.0)  # the samplers' own start
    errors = {}
    for name, run in ODE_SAMPLERS.items():
        denoiser = GaussianDenoiser()
        x = run(denoiser, sigmas, (2000,), generator=gen(0))
        assert denoiser.calls == ode_network_calls(name, steps)
        errors[name] = (x - exact).abs().max().item()
    return errors


def test_ode_samplers_converge_to_the_exact_solution_at_their_order():
    coarse, fine = _errors(20), _errors(50)  # the solution's values reach about 1.7
    assert all(e < 0.2 for e in coarse.values()), coarse
    assert coarse["heun"] < 0.5 * coarse["euler"] and coarse["dpm++"] < 0.5 * coarse["euler"], coarse
    # first order: 2.5x the steps, 2.5x less error; second order: about 6x less
    assert coarse["euler"] / fine["euler"] > 1.8, (coarse, fine)
    assert coarse["euler"] / fine["euler"] < 3.5, (coarse, fine)  # not second order
    assert coarse["heun"] / fine["heun"] > 4 and coarse["dpm++"] / fine["dpm++"] > 4, (coarse, fine)


def two_mode_denoiser(x, sigma, c=0.1):
    """The exact denoiser of data at -1 or +1 (each with spread c): nonlinear in x, as real data's is."""
    var = c**2 + sigma**2
    weights = torch.softmax(torch.stack([-(x + 1) ** 2, -(x - 1) ** 2]) / (2 * var), 0)
    means = torch.stack([-1 + c**2 / var * (x + 1), 1 + c**2 / var * (x - 1)])
    return (weights * means).sum(0)


def test_heun_on_a_flow_grid_integrates_in_the_flows_coordinates():
    # a flow's grid starts at sigma ~1000 (t = 0.999): Heun's trapezoid in sigma over its first step goes
    # wrong, in the flow's own (x_t, t) it does not; Euler and DPM++ do not depend on the coordinates
    sigmas = flow_sigmas(5)
    exact = ODE_SAMPLERS["dpm++"](two_mode_denoiser, flow_sigmas(1000), (4000,), generator=gen(0))
    error = {path: (heun_sample(two_mode_denoiser, sigmas, (4000,), generator=gen(0), path=path) - exact).abs().mean().item()
             for path in ("ve", "flow")}
    assert error["flow"] < 0.08 and error["ve"] > 3 * error["flow"], error
    for name in ("euler", "dpm++"):
        a = ODE_SAMPLERS[name](two_mode_denoiser, sigmas, (50,), generator=gen(3), path="ve")
        assert torch.allclose(a, ODE_SAMPLERS[name](two_mode_denoiser, sigmas, (50,), generator=gen(3), path="flow"))


@pytest.mark.parametrize("sampler", sorted(ODE_SAMPLERS))
def test_ode_samplers_give_the_data_distribution(sampler):
    x = ODE_SAMPLERS[sampler](GaussianDenoiser(), karras_sigmas(0.002, 80.0, 40), (4000,), generator=gen(1))
    assert abs(x.mean().item() - MU) < 0.03 and abs(x.std().item() - C) < 0.03


@pytest.mark.parametrize("sampler", sorted(ODE_SAMPLERS))
def test_ode_samplers_are_reproducible_with_a_seed(sampler):
    sigmas = flow_sigmas(5)
    a = ODE_SAMPLERS[sampler](GaussianDenoiser(), sigmas, (3, 4), generator=gen(7))
    assert torch.equal(a, ODE_SAMPLERS[sampler](GaussianDenoiser(), sigmas, (3, 4), generator=gen(7)))
    assert not torch.equal(a, ODE_SAMPLERS[sampler](GaussianDenoiser(), sigmas, (3, 4), generator=gen(8)))


def test_sigma_grids():
    k = karras_sigmas(0.01, 80.0, 6)
    assert len(k) == 7 and k[0] == pytest.approx(80.0) and k[-2] == pytest.approx(0.01) and k[-1] == 0.0
    assert all(a > b for a, b in zip(k, k[1:]))
    f = flow_sigmas(4, t_max=0.8)
    assert [s / (1 + s) for s in f] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    shifted = flow_sigmas(4, t_max=0.8, shift=3.0)
    assert all(a >= b for a, b in zip(shifted, f))  # a shift moves every step towards noise
    with pytest.raises(ArgumentError, match="at least 1"):
        karras_sigmas(0.01, 80.0, 0)


def test_a_schedule_maps_its_own_noise_levels_back_to_their_timesteps():
    schedule = NoiseSchedule(1000, "cosine")
    for t in (0, 1, 37, 500, 998):
        assert schedule.timestep_of(float(schedule.sigmas[t])) == pytest.approx(t, abs=1e-6)
    between = schedule.timestep_of(float((schedule.sigmas[10] * schedule.sigmas[11]).sqrt()))
    assert 10 < between < 11


# ------------------------------------------------------------------ guidance
def test_guidance_scale_zero_is_unconditional_and_one_is_conditional():
    def network(x, t, labels=None):
        shift = torch.zeros(x.shape[0]) if labels is None else (labels.float() - 10.0 * (labels == 3))
        return x * 2 + shift[:, None]

    x, t, labels = torch.randn(4, 5, generator=gen(0)), torch.zeros(4), torch.tensor([0, 1, 2, 3])
    given, null = {"labels": labels}, {"labels": torch.full_like(labels, 3)}
    assert torch.equal(classifier_free(network, {}, {}, 3.0)(x, t), network(x, t))
    assert torch.allclose(classifier_free(network, given, null, 0.0)(x, t), network(x, t, null["labels"]))
    assert torch.allclose(classifier_free(network, given, null, 1.0)(x, t), network(x, t, labels))
    guided = classifier_free(network, given, null, 2.0)(x, t)
    cond, uncond = network(x, t, labels), network(x, t, null["labels"])
    assert torch.allclose(guided, uncond + 2.0 * (cond - uncond))
    assert guided.dtype == torch.float32
