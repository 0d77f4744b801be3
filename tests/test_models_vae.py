"""genlab.models.vae.vae and the likelihoods it uses (genlab.nn.distributions): the ELBO terms on cases
with known answers, the IWAE bound, dynamic binarisation, the three decoders, spatial latents under
latent diffusion, and the IWAE option of the held-out likelihood (genlab.eval.likelihood)."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from genlab.data.base import DataSpec
from genlab.errors import ArgumentError, EvalInputError
from genlab.eval.likelihood import held_out_bits_per_dim
from genlab.models.vae.vae import VAE, VAEConfig
from genlab.nn.distributions import (discretized_logistic_log_likelihood, discretized_logistic_mixture_log_likelihood,
                                     dynamic_binarization)

from conftest import tiny_config

DIGITS = DataSpec("image", (1, 8, 8), num_classes=10)
LEVELS = torch.arange(256) * (2 / 255) - 1  # the 256 values of an 8-bit image in [-1, 1]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(spec: DataSpec = DIGITS, seed: int = 0, **config) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(**{"latent_dim": 4, "base_channels": 8, **config}), spec)


@functools.lru_cache(maxsize=None)
def _digits():
    from genlab.data import load_dataset

    return load_dataset("digits")


def digits(n: int, split: str = "train") -> torch.Tensor:
    ds = _digits()
    return (ds.x_train if split == "train" else ds.x_val)[:n]


def train(model: VAE, steps: int, n: int = 256, lr: float = 3e-3) -> VAE:
    """Adam on the first n digits, batches of 64, the KL fully on (no warm-up): a briefly trained model."""
    x = digits(n)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        batch = x[torch.randint(0, n, (64,), generator=gen(step))]
        opt.zero_grad(set_to_none=True)
        model.training_loss({"x": batch}, "model", 10_000, gen(1000 + step)).loss.backward()
        opt.step()
    return model.eval()


# ------------------------------------------------------------------ the ELBO terms, by hand
def test_kl_is_zero_for_the_prior_posterior_and_half_the_squared_mean_otherwise(monkeypatch):
    model = make().eval()
    x = digits(5)
    with torch.no_grad():  # mean 0, log-variance 0: q(z | x) is the prior
        model.encoder.head.weight.zero_()
        model.encoder.head.bias.zero_()
    _, kl, decoded = model.elbo_terms(x, None, gen(0))
    assert kl.shape == (5,) and torch.equal(kl, torch.zeros(5)) and decoded.shape == x.shape
    mean = torch.tensor([[1.0, -2.0, 0.0, 0.5]]).expand(5, 4)
    log_var = torch.tensor([[0.0, 0.0, math.log(2.0), 0.0]]).expand(5, 4)
    monkeypatch.setattr(model, "encode", lambda x: (mean, log_var))
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per dimension
    expected = 0.5 * (1 + 4 + 0.25) + 0.5 * (2 - 1 - math.log(2))
    assert torch.allclose(model.elbo_terms(x, None, gen(0))[1], torch.full((5,), expected))


def test_bernoulli_nll_is_the_hand_computed_cross_entropy_of_the_binarised_image():
    model = make(decoder="bernoulli").eval()
    logit = 0.7
    last = model.decoder.body[-1]  # every pixel's logit is the last convolution's bias
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(logit)
    x = -torch.ones(2, 1, 8, 8)  # all off, whatever is drawn ...
    x[0, 0, :3] = 1.0  # ... but for 24 pixels, always on: binarisation draws on with probability (x + 1) / 2
    nll, _, decoded = model.elbo_terms(x, None, gen(0))
    p = 1 / (1 + math.exp(-logit))
    assert nll[0].item() == pytest.approx(-(24 * math.log(p) + 40 * math.log(1 - p)), rel=1e-5)
    assert nll[1].item() == pytest.approx(-64 * math.log(1 - p), rel=1e-5)
    assert torch.allclose(decoded, torch.full_like(x, 2 * p - 1))  # the probabilities as grey levels


@pytest.mark.parametrize("mean,log_scale", [(0.0, -1.0), (0.93, -4.0), (-1.3, 0.5), (0.2, -7.0), (3.0, -2.0)])
def test_discretised_logistic_sums_to_one_over_the_256_bins(mean, log_scale):
    log_p = discretized_logistic_log_likelihood(LEVELS, torch.tensor(mean), torch.tensor(log_scale))
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    # an interior bin by hand: the logistic CDF's difference across the bin's edges
    s, v = math.exp(log_scale), LEVELS[100].item()
    cdf = lambda t: 1 / (1 + math.exp(-(t - mean) / s))
    if cdf(v + 1 / 255) - cdf(v - 1 / 255) > 1e-5:
        assert log_p[100].exp().item() == pytest.approx(cdf(v + 1 / 255) - cdf(v - 1 / 255), rel=1e-4)


def test_the_logistic_mixture_in_nn_is_a_drop_in_for_pixelcnns():
    from genlab.models.autoregressive.pixelcnn import logistic_mixture_log_prob

    x = LEVELS[torch.randint(0, 256, (2, 3, 4, 4), generator=gen(0))]
    params = torch.randn(2, 3, 3 * 5, 4, 4, generator=gen(1)) * 2
    logits, means, log_scales = params.chunk(3, dim=2)
    ours = discretized_logistic_mixture_log_likelihood(x, logits, means, log_scales.clamp(min=-7.0), dim=2)
    assert torch.allclose(ours, logistic_mixture_log_prob(x, params), atol=1e-5)


# ------------------------------------------------------------------ dynamic binarisation
def test_dynamic_binarisation_draws_its_bits_from_the_generator():
    x = digits(64)
    a, b, c = (dynamic_binarization(x, gen(s)) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c) and set(a.unique().tolist()) <= {0.0, 1.0}
    # each pixel on with probability (x + 1) / 2: the mean over many draws
    draws = torch.stack([dynamic_binarization(x, gen(s)) for s in range(200)]).mean(0)
    assert (draws - (x + 1) / 2).abs().mean() < 0.03
    model = make(decoder="bernoulli").eval()
    same = [model.elbo_terms(x, None, gen(9))[0] for _ in range(2)]
    assert torch.equal(*same) and not torch.equal(same[0], model.elbo_terms(x, None, gen(10))[0])


# ------------------------------------------------------------------ the IWAE bound
@pytest.fixture(scope="module")
def trained() -> VAE:
    return train(make(latent_dim=8), steps=150)


@pytest.mark.slow  # 150 training steps: 3-10 s
@torch.no_grad()
def test_iwae_bound_tightens_as_k_grows_and_k1_is_the_elbo_in_expectation(trained):
    x = digits(100, "val")
    bounds = {k: trained.iwae_nll(x, k, gen(k), chunk=2000).mean().item() for k in (1, 10, 100)}
    assert bounds[1] > bounds[10] > bounds[100], bounds
    assert bounds[1] - bounds[100] > 0.5  # nats per image: a real gain, not noise
    # k = 1: log p(x|z) + log p(z) - log q(z|x) at one z is the ELBO with a Monte Carlo KL
    one = torch.stack([trained.iwae_nll(x, 1, gen(100 + i)) for i in range(30)])
    elbo = torch.stack([sum(trained.elbo_terms(x, None, gen(200 + i))[:2]) for i in range(30)])
    per_item = (one - elbo).mean(0)  # (100,): paired on the same images, so only the draws' noise is left
    error = per_item.std() / math.sqrt(len(per_item))  # ~0.07 nats
    assert abs(per_item.mean()) < 4 * error, (per_item.mean(), error)
    assert one.std(0).mean() > 1.0  # draws do differ: the agreement is not one draw seen twice
    # chunking the k samples changes the memory, not the draws
    assert torch.allclose(trained.iwae_nll(x[:8], 12, gen(5), chunk=8), trained.iwae_nll(x[:8], 12, gen(5), chunk=96))


@pytest.mark.slow  # shares the trained model
def test_bits_per_dim_uses_the_iwae_bound_and_the_held_out_likelihood_passes_k(trained):
    x = digits(50, "val")
    bpd = trained.bits_per_dim({"x": x}, gen(0), k=20)
    assert torch.allclose(bpd, trained.iwae_nll(x, 20, gen(0)) / (64 * math.log(2)))
    entry = held_out_bits_per_dim(trained, x, n=50, options={"k": 20})
    assert entry["bound"] == "IWAE k=20" and entry["options"] == {"k": 20} and entry["data"] == "256-level images"
    assert entry["bits_per_dim"] < held_out_bits_per_dim(trained, x, n=50)["bits_per_dim"]  # below the ELBO
    with pytest.raises(EvalInputError, match="takes no option temperature"):
        held_out_bits_per_dim(trained, x, n=50, options={"temperature": 2})
    bernoulli = make(decoder="bernoulli").eval()
    assert held_out_bits_per_dim(bernoulli, x, n=50)["data"] == "dynamically binarised images"


# ------------------------------------------------------------------ each decoder learns
@pytest.mark.parametrize("decoder", ["gaussian", "bernoulli", "logistic"])
@pytest.mark.parametrize("latent", ["flat", "spatial"])
def test_each_decoder_and_latent_lowers_the_held_out_negative_elbo(decoder, latent):
    model = make(decoder=decoder, latent=latent, latent_channels=2, downsample=1).eval()
    held_out = {"x": digits(128, "val")}

    def loss() -> float:
        with torch.no_grad():
            return model.training_loss(held_out, "model", 10_000, gen(7)).loss.item()

    before = loss()
    train(model, steps=25)
    after = loss()
    assert after < 0.9 * before, (before, after)
    samples = model.sample(6, generator=gen(0))
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1


def test_the_gaussian_decoder_tracks_its_optimal_scale_and_evaluates_with_the_running_one():
    model = make(decoder="gaussian", min_log_scale=-5.0)
    x = digits(64)
    model.train()
    for _ in range(150):  # the same draw each time: the batch optimum stays put and the average reaches it
        model.elbo_terms(x, None, gen(0))
    with torch.no_grad():  # the optimum by hand: log of the RMSE of that draw's (clamped) decoder mean
        mean, log_var = model.encode(x)
        z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=gen(0))
        rmse = (x - model._decoder_output(z).clamp(-1, 1)).pow(2).mean().sqrt()
    assert model.log_scale.item() == pytest.approx(rmse.log().item(), abs=0.01)
    model.eval()
    before = model.log_scale.clone()
    nll = model.elbo_terms(x, None, gen(0))[0]
    assert torch.equal(model.log_scale, before) and torch.isfinite(nll).all()  # eval mode changes nothing


# ------------------------------------------------------------------ latents
def test_latents_round_trip_their_shapes_and_spatial_ones_are_4x7x7_on_mnist():
    mnist = DataSpec("image", (1, 28, 28), num_classes=10)
    spatial = VAE(VAEConfig(base_channels=8, latent="spatial"), mnist).eval()
    flat = VAE(VAEConfig(base_channels=8), mnist).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert spatial.latent_shape == (4, 7, 7) and flat.latent_shape == (16,)
    for model in (spatial, flat):
        z = model.encode_latent(x)
        assert z.shape == (3, *model.latent_shape) and torch.equal(z, model.encode(x)[0])
        back = model.decode_latent(z)
        assert back.shape == x.shape and back.abs().max() <= 1
        assert model.sample(2, generator=gen(0)).shape == (2, 1, 28, 28)
    with pytest.raises(ArgumentError, match="cannot be halved 3 times"):
        VAE(VAEConfig(latent="spatial", downsample=3), DataSpec("image", (1, 28, 28)))
    with pytest.raises(ArgumentError, match="point data takes the gaussian decoder"):
        VAE(VAEConfig(decoder="bernoulli"), DataSpec("points", (2,)))


def test_truncation_pulls_prior_draws_to_the_mean():
    model = make()
    zero = model.sample(4, generator=gen(0), truncation=0.0)
    assert torch.allclose(zero, zero[:1].expand_as(zero))  # every draw at z = 0
    assert not torch.allclose(model.sample(4, generator=gen(0)), zero)
    assert model.sample_options() == {"truncation": 1.0}


def test_old_runs_load_as_gaussian_and_new_ones_default_to_logistic_on_images():
    assert VAE.migrate_config({"latent_dim": 4})["decoder"] == "gaussian"
    assert VAE.migrate_config({"decoder": "bernoulli"})["decoder"] == "bernoulli"
    assert make().decoder_kind == "logistic" and VAE(VAEConfig(), DataSpec("points", (2,))).decoder_kind == "gaussian"


def test_latent_diffusion_trains_on_a_spatial_vae_run_and_refuses_a_flat_one(train_tiny, tmp_path):
    spatial = train_tiny("vae", steps=2, out=tmp_path / "spatial",
                         model_config=tiny_config("vae", latent="spatial", latent_channels=2, downsample=1))
    diffusion = train_tiny("latent-diffusion", steps=2,
                           model_config=tiny_config("latent-diffusion", autoencoder=str(spatial.path)))
    assert diffusion.references["autoencoder"]["model"] == "vae"
    model = diffusion.load_model()
    assert model.referenced("autoencoder").latent_shape == (2, 4, 4)
    assert diffusion.sample(2, seed=0).shape == (2, 1, 8, 8)
    flat = train_tiny("vae", steps=1, out=tmp_path / "flat")
    with pytest.raises(ArgumentError, match=r"latents are \(4,\)"):
        train_tiny("latent-diffusion", steps=1,
                   model_config=tiny_config("latent-diffusion", autoencoder=str(flat.path)))
