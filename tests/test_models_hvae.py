"""genlab.models.vae.hvae and genlab.nn.nvae_cells: the NVAE-style hierarchical VAE."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.config import from_dict
from genlab.data import load_data
from genlab.models.vae.hvae import HVAE, HVAEConfig, kl_balance
from genlab.nn.nvae_cells import Gaussian, SpectralRegulariser

from conftest import tiny_config


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(**changes) -> tuple[HVAE, object]:
    ds = load_data("digits")
    torch.manual_seed(0)
    return HVAE(from_dict(HVAEConfig, tiny_config("hvae", **changes), "hvae"), ds.spec), ds


def test_latent_groups_have_the_shapes_of_their_scales():
    model, ds = build(groups_per_scale=2, latent_channels=3)
    # 8x8 digits: halved once before the latents, then groups at 4x4 and 2x2, the top (smallest) first
    assert model.latent_shapes == [(3, 2, 2), (3, 2, 2), (3, 4, 4), (3, 4, 4)]
    x = ds.x_train[:5]
    feats = model._encode(x)
    assert [f.shape[2:] for f in feats] == [(2, 2), (2, 2), (4, 4), (4, 4)]
    out, kls, zs = model._top_down(5, feats, gen(0))
    assert [tuple(z.shape) for z in zs] == [(5, *s) for s in model.latent_shapes]
    assert [k.shape for k in kls] == [(5,)] * 4 and out.shape == (5, 1, 8, 8)
    _, none, prior_zs = model._top_down(5, None, gen(0))  # the prior, top-down: the same shapes, no KL
    assert not none and [z.shape for z in prior_zs] == [z.shape for z in zs]


def test_gaussian_kl_against_the_closed_form():
    q = Gaussian(torch.full((1, 2), 0.5), torch.full((1, 2), -0.3))
    p = Gaussian(torch.zeros(1, 2), torch.zeros(1, 2))
    # NVAE's parameterisation: mean and log-sigma soft-clamped to 5 tanh(./5), sigma = exp(log_sigma) + 0.01
    m = 5 * torch.tanh(torch.tensor(0.5 / 5))
    sq, sp = torch.exp(5 * torch.tanh(torch.tensor(-0.3 / 5))) + 0.01, 1.01
    expected = 2 * (torch.log(sp / sq) + (sq**2 + m**2) / (2 * sp**2) - 0.5)  # two dimensions
    assert torch.allclose(q.kl(p), expected.expand(1), atol=1e-6)


def test_kl_is_zero_where_the_residual_posterior_delta_is_zero():
    model, ds = build(groups_per_scale=2)
    x = ds.x_train[:6]
    _, kl_all = model.elbo_terms(x, gen(0))
    assert (kl_all > 1e-3).all()  # an untrained encoder moves every group's posterior off its prior
    with torch.no_grad():
        for sampler in model.enc_samplers[1:]:  # every group but the top: delta = 0, so q = p
            sampler.weight.zero_()
            sampler.bias.zero_()
    _, kl_all = model.elbo_terms(x, gen(0))
    assert (kl_all[:, 0] > 1e-3).all() and torch.equal(kl_all[:, 1:], torch.zeros_like(kl_all[:, 1:]))
    with torch.no_grad():  # the top group's prior is N(0, I) under the same parameterisation: zero too
        model.enc_samplers[0].weight.zero_()
        model.enc_samplers[0].bias.zero_()
    assert torch.equal(model.elbo_terms(x, gen(0))[1], torch.zeros_like(kl_all))


def test_kl_balancing_coefficients():
    kl_all = torch.tensor([[1.0, 3.0, 8.0, 0.0], [3.0, 1.0, 8.0, 4.0]])  # (B, L): group means 2, 2, 8, 2
    alpha = torch.tensor([1.0, 1.0, 4.0, 4.0])  # the bottom scale's groups are 4x larger
    balanced, coeff = kl_balance(kl_all, alpha)
    raw = torch.tensor([2.01, 2.01, 8.01 / 4, 2.01 / 4])  # (mean |KL| + 0.01) / alpha
    assert torch.allclose(coeff, raw / raw.mean()) and torch.isclose(coeff.sum(), torch.tensor(4.0))
    assert torch.allclose(balanced, (kl_all * coeff).sum(1))
    # the model: NVAE's "square" alpha; balancing while the KL weight warms up, every coefficient 1 after
    model, ds = build(groups_per_scale=2, kl_warmup_steps=10)
    assert model.kl_alpha.tolist() == [1.0, 1.0, 4.0, 4.0]
    model.train()
    x = ds.x_train[:16]
    warm = model.training_loss({"x": x}, "model", 2, gen(1)).logs
    warm_coeffs = torch.stack([warm[f"kl_balance{k}"] for k in range(4)])
    assert torch.isclose(warm_coeffs.sum(), torch.tensor(4.0)) and not torch.allclose(warm_coeffs, torch.ones(4))
    assert float(warm["kl_coeff"]) == pytest.approx(0.2)
    done = model.training_loss({"x": x}, "model", 10, gen(1)).logs
    assert [float(done[f"kl_balance{k}"]) for k in range(4)] == [1.0] * 4 and float(done["kl_coeff"]) == 1.0


def test_spectral_regulariser_finds_the_largest_singular_value_and_shrinks_with_the_weights():
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 2, 1)]
    reg = SpectralRegulariser(convs, iterations=4)
    exact = sum(torch.linalg.matrix_norm(c.weight.flatten(1), ord=2) for c in convs)
    value = reg.spectral(convs)
    assert value > 0 and torch.isclose(value, exact, rtol=1e-3)
    value.backward()  # the gradient of sigma_max is u v^T, on every kernel
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    with torch.no_grad():
        for c in convs:
            c.weight.mul_(0.5)
    assert torch.isclose(reg.spectral(convs), 0.5 * value.detach(), rtol=1e-3)
    # the vectors advance only in gradient-enabled training calls: the same number twice otherwise
    reg.eval()
    assert torch.equal(reg.spectral(convs), reg.spectral(convs))
    bns = [torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(2)]
    with torch.no_grad():
        bns[0].weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    assert SpectralRegulariser.batchnorm(bns).item() == pytest.approx(2.0 + 1.0)


def train(model: HVAE, ds, steps: int) -> HVAE:
    opt = torch.optim.Adamax(model.parameters(), lr=1e-2, eps=1e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(ds.x_train), (32,), generator=gen(100 + step))
        opt.zero_grad(set_to_none=True)
        model.training_loss({"x": ds.x_train[idx]}, "model", step, gen(step)).loss.backward()
        opt.step()
    return model.eval()


def held_out_nelbo(model: HVAE, ds) -> float:
    model.eval()
    with torch.no_grad():
        return model.training_loss({"x": ds.x_val[:64]}, "model", 10_000, gen(5)).logs["nelbo_nats"].item()


@pytest.fixture(scope="module")
def trained() -> tuple[HVAE, object, float]:
    """A model trained 30 steps on digits, with its held-out negative ELBO before training."""
    model, ds = build()
    before = held_out_nelbo(model, ds)
    return train(model, ds, 30), ds, before


@pytest.mark.slow  # 30 steps and two held-out passes: ~5-10 s on a shared CPU
def test_loss_goes_down_on_digits(trained):
    model, ds, before = trained
    after = held_out_nelbo(model, ds)
    assert after < 0.8 * before, f"held-out negative ELBO {before:.1f} -> {after:.1f} nats"


@pytest.mark.slow  # shares the trained model
def test_iwae_bound_over_the_hierarchy_tightens_as_k_grows_and_k1_is_the_elbo_in_expectation(trained):
    model, ds, _ = trained
    x = ds.x_val[:64]
    # one binarisation for every k (drawn first from the same seed), fresh posterior draws for each
    bounds = {k: model.iwae_nll(x, k, gen(0), chunk=4096).mean().item() for k in (1, 10, 50)}
    assert bounds[1] > bounds[10] > bounds[50], bounds
    assert bounds[1] - bounds[50] > 0.5, bounds  # nats per image: a real gain, not noise
    # k = 1: one draw of log p(x|z) + sum_l log p(z_l|z_<l) - log q(z_l|x,z_<l), the ELBO with a Monte Carlo KL
    one = torch.stack([model.iwae_nll(x, 1, gen(100 + i)) for i in range(30)])
    elbo = torch.stack([sum(t.sum(1) if t.dim() > 1 else t for t in model.elbo_terms(x, gen(200 + i)))
                        for i in range(30)])
    per_item = (one - elbo).mean(0)  # paired on the same images: only the draws' noise is left
    error = per_item.std() / len(per_item) ** 0.5
    assert abs(per_item.mean()) < 4 * error, (per_item.mean(), error)
    assert one.std(0).mean() > 0.5  # draws do differ: the agreement is not one draw seen twice
    # bits_per_dim passes k through (chunking reorders the groups' draws, so only the same chunk repeats exactly)
    bpd = model.bits_per_dim({"x": x[:8]}, gen(5), k=12)
    assert torch.allclose(bpd, model.iwae_nll(x[:8], 12, gen(5)) / (64 * math.log(2)))
    assert model.likelihood_details(k=12)["bound"] == "IWAE k=12" and model.likelihood_details()["bound"] == "ELBO"
    model.train()
    model.bits_per_dim({"x": x[:8]}, gen(5), k=2)  # measured with the running statistics, and back to training
    assert model.training
    model.eval()


def test_temperature_zero_samples_are_the_prior_means_whatever_the_seed():
    model, _ = build(groups_per_scale=2)
    model.train()  # sampling switches to the running statistics itself, and back
    a = model.sample(3, generator=gen(0), temperature=0.0)
    b = model.sample(3, generator=gen(1), temperature=0.0)
    assert model.training and torch.equal(a, b) and torch.equal(a[0], a[2])
    assert not torch.equal(model.sample(3, generator=gen(0)), model.sample(3, generator=gen(1)))
    cooler = model.sample(64, generator=gen(0), temperature=0.5).std(0).mean()
    assert cooler < model.sample(64, generator=gen(0), temperature=1.0).std(0).mean()
    assert model.sample_options() == {"temperature": 1.0}
    with pytest.raises(ValueError, match="takes temperature"):
        model.sample(2, generator=gen(0), truncation=0.5)


def test_bernoulli_bound_is_per_binary_pixel_and_logistic_per_8_bit_dimension():
    model, ds = build()
    model.eval()
    x = ds.x_val[:8]
    recon, kl_all = model.elbo_terms(x, gen(3))
    bpd = model.bits_per_dim({"x": x}, gen(3))  # the same binarisation and posterior draw from the same seed
    assert torch.allclose(bpd, (recon + kl_all.sum(1)) / (64 * torch.log(torch.tensor(2.0))))
    # an untrained Bernoulli decoder is near a fair coin per pixel: about 1 bit each, plus the KL
    assert (bpd > 0.8).all() and (bpd < 2).all()
    logistic, _ = build(decoder="logistic")
    logistic.eval()
    assert (logistic.bits_per_dim({"x": x}, gen(3)) > 2).all()  # 8-bit levels: far more bits per pixel untrained
