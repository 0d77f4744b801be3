"""beta-VAE (genlab.models.vae.beta_vae), the `shapes` data (genlab.data.shapes) and MIG (genlab.eval.disentanglement)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from genlab.batch import LABEL, X
from genlab.data import LoadOptions, load_data
from genlab.data import shapes
from genlab.data.base import Dataset
from genlab.eval.disentanglement import disentanglement, entropy, mig, mutual_information
from genlab.models.vae.beta_vae import BetaVAE, BetaVAEConfig

from conftest import tiny_config


def full_grid() -> np.ndarray:
    return np.array(list(itertools.product(*(range(s) for s in shapes.FACTOR_SIZES))))


# ---------------------------------------------------------------------------------------------- the model
def tiny_model(spec, **changes) -> BetaVAE:
    torch.manual_seed(0)
    return BetaVAE(BetaVAEConfig(**tiny_config("beta-vae", **changes)), spec)


@pytest.fixture(scope="module")
def small_shapes():
    return load_data("shapes", LoadOptions(options={"size": 400}, image_size=16))


def test_capacity_grows_linearly_from_zero_to_its_maximum_then_stays(small_shapes):
    model = tiny_model(small_shapes.spec, capacity_max=25.0, capacity_steps=1000)
    assert [model.capacity(s) for s in (0, 250, 500, 1000, 5000)] == pytest.approx([0.0, 6.25, 12.5, 25.0, 25.0])
    assert tiny_model(small_shapes.spec, capacity_max=0.0).capacity(500) == 0.0  # off: plain beta weighting
    assert tiny_model(small_shapes.spec, capacity_max=3.0, capacity_steps=0).capacity(0) == 3.0


def test_the_capacity_loss_is_recon_plus_gamma_times_the_kls_distance_from_c(small_shapes):
    model = tiny_model(small_shapes.spec, capacity_max=20.0, capacity_steps=100, gamma=7.0)
    batch = small_shapes.train_batch(0, 16, seed=0)
    out = model.training_loss(batch, "model", 50, torch.Generator().manual_seed(3))
    nll, kl, _ = model.elbo_terms(batch[X], None, torch.Generator().manual_seed(3))  # the same draws
    expected = (nll.mean() + 7.0 * (kl.mean() - 10.0).abs()) / batch[X][0].numel()
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(out.logs["capacity"]) == pytest.approx(10.0)


def test_beta_weighting_is_the_vae_loss_with_beta_and_active_dims_are_counted(small_shapes):
    # the Gaussian decoder encodes x as it is (the Bernoulli one encodes a binarisation of it)
    model = tiny_model(small_shapes.spec, capacity_max=0.0, beta=4.0, kl_warmup_steps=0, decoder="gaussian")
    batch = small_shapes.train_batch(0, 16, seed=0)
    out = model.training_loss(batch, "model", 10, torch.Generator().manual_seed(1))
    nll, kl, _ = model.elbo_terms(batch[X], None, torch.Generator().manual_seed(1))
    assert float(out.loss.detach()) == pytest.approx(float((nll + 4.0 * kl).detach().mean() / batch[X][0].numel()), rel=1e-5)
    with torch.no_grad():
        mean, log_var = model.encode(batch[X])
    per_dim = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).mean(0)
    assert float(out.logs["active_dims"]) == float((per_dim > 0.01).sum())
    assert float(out.logs["kl_max_dim"]) == pytest.approx(float(per_dim.max()), rel=1e-4)
    assert all(v.dim() == 0 and not v.requires_grad for v in out.logs.values())  # tensors: read by the trainer


# ---------------------------------------------------------------------------------------------- shapes
def test_the_factor_grid_is_every_combination_once():
    grid = shapes.factor_grid(0)
    assert len(grid) == shapes.GRID_SIZE == 3 * 6 * 10 * 16 * 16
    assert len(np.unique(grid, axis=0)) == shapes.GRID_SIZE
    some = shapes.factor_grid(1000)
    assert len(some) == 1000 and len(np.unique(some, axis=0)) == 1000
    np.testing.assert_array_equal(some, shapes.factor_grid(1000))  # fixed seed: always the same items


@pytest.mark.parametrize("x, y", [(0, 0), (15, 3), (7, 12)])
def test_a_square_lands_where_its_factors_put_it_with_the_area_its_scale_gives(x, y):
    size = 32
    image = shapes.render(np.array([[0, 5, 0, x, y]]), size)[0, 0].astype(np.float64) / 255  # coverage per pixel
    rows, cols = np.mgrid[0:size, 0:size]
    # pixel k's centre is at k + 0.5 on an axis where the image spans [0, size]; 2x2 sub-pixel samples
    # put each edge on a half-pixel grid, so the centre is exact to a quarter pixel (positions lie 1.17 apart)
    centre = lambda p: (p + 1) / 2 * size - 0.5  # noqa: E731
    assert (image * cols).sum() / image.sum() == pytest.approx(centre(shapes.POSITIONS[x]), abs=0.26)
    assert (image * rows).sum() / image.sum() == pytest.approx(centre(shapes.POSITIONS[y]), abs=0.26)
    side = 2 * 0.8 * shapes.MAX_HALF_SIZE * 1.0 * size / 2  # in pixels: the unrotated square of scale 1
    assert image.sum() == pytest.approx(side**2, rel=0.03)


def test_shapes_differ_by_their_factors_and_rotation_turns_a_square():
    one = lambda f: shapes.render(np.array([f]), 32)[0, 0]  # noqa: E731
    square, ellipse, heart = one([0, 5, 0, 8, 8]), one([1, 5, 0, 8, 8]), one([2, 5, 0, 8, 8])
    assert (square != ellipse).any() and (square != heart).any() and (ellipse != heart).any()
    ys, xs = np.nonzero(ellipse > 127)
    assert np.ptp(xs) > 1.5 * np.ptp(ys)  # the ellipse at angle 0 lies along x
    turned = one([0, 5, 5, 8, 8])  # 45 degrees: a diamond, wider than the square
    assert np.ptp(np.nonzero(turned > 127)[1]) > np.ptp(np.nonzero(square > 127)[1])
    assert abs(int(turned.astype(int).sum()) - int(square.astype(int).sum())) < 0.05 * square.sum()  # same area


def test_the_data_is_deterministic_and_keeps_each_items_factors(small_shapes):
    again = load_data("shapes", LoadOptions(options={"size": 400}, image_size=16))
    assert torch.equal(small_shapes.stored_train, again.stored_train)
    assert small_shapes.train_size() + len(small_shapes.stored_val) == 400
    factors = small_shapes.items_train["factors"]
    np.testing.assert_array_equal(small_shapes.stored_train.numpy(), shapes.render(factors.numpy(), 16))
    assert torch.equal(small_shapes.y_train, factors[:, 0])  # the class label is the shape
    assert small_shapes.spec.class_names == shapes.SHAPE_NAMES
    assert small_shapes.spec.extras["factor_names"] == list(shapes.FACTOR_NAMES)
    x = small_shapes.x_train
    assert x.min() == -1 and x.max() == 1  # genlab's image range
    batch = small_shapes.train_batch(0, 8, seed=0)
    assert set(batch) == {X, LABEL, "factors"} and batch["factors"].shape == (8, 5)
    assert small_shapes.validation(5)["factors"].shape == (5, 5)


def test_the_whole_grid_and_bad_options():
    from genlab.errors import GenlabError

    with pytest.raises(GenlabError, match="size"):
        load_data("shapes", LoadOptions(options={"size": -1}))
    with pytest.raises(GenlabError, match="unknown"):
        load_data("shapes", LoadOptions(options={"sise": 10}))


# ---------------------------------------------------------------------------------------------- MIG
def test_mutual_information_and_entropy_on_hand_cases():
    a = np.array([0, 0, 1, 1])
    assert entropy(a) == pytest.approx(math.log(2))
    assert mutual_information(a, a) == pytest.approx(math.log(2))
    assert mutual_information(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    # b holds a and a second, independent fair coin: it tells all of a, I(a; b) = H(a)
    b = np.array([0, 1, 2, 3])
    assert mutual_information(a, b) == pytest.approx(math.log(2))


def test_mig_is_one_for_latents_that_are_the_factors():
    grid = full_grid()
    result = mig(grid.astype(float), grid, list(shapes.FACTOR_NAMES))
    assert result["mig"] == pytest.approx(1.0, abs=1e-9)
    assert result["latent_per_factor"] == {name: k for k, name in enumerate(shapes.FACTOR_NAMES)}
    # shuffled, rescaled, shifted and with extra noise latents: still one latent per factor (the noise
    # latents' estimated information is not quite 0 on a finite sample: the gap shrinks by a hair)
    rng = np.random.default_rng(0)
    latents = np.concatenate([grid[:, ::-1] * 0.3 - 5, rng.standard_normal((len(grid), 3))], axis=1)
    result = mig(latents, grid)
    assert result["mig"] > 0.995
    assert result["latent_per_factor"] == {f"factor {k}": 4 - k for k in range(5)}


def test_mig_is_about_zero_for_random_latents_and_low_for_mixed_ones():
    grid = full_grid()[np.random.default_rng(1).choice(shapes.GRID_SIZE, 10_000, replace=False)]
    rng = np.random.default_rng(2)
    assert mig(rng.standard_normal((10_000, 10)), grid)["mig"] < 0.01
    # two latents that each hold half of x and half of y: informative, but not one latent per factor
    xy = grid[:, 3:5].astype(float)
    mixed = np.stack([xy[:, 0] + xy[:, 1], xy[:, 0] - xy[:, 1]], axis=1)
    result = mig(mixed, grid[:, 3:5], ["x", "y"])
    assert result["mig"] < 0.2
    assert mig(xy, grid[:, 3:5])["mig"] > 0.99  # the same information, unmixed


def test_disentanglement_refuses_data_without_factors(small_shapes):
    from genlab.errors import GenlabError

    digits = load_data("digits")
    model = tiny_model(small_shapes.spec)
    with pytest.raises(GenlabError, match="no known factors"):
        disentanglement(model, digits)


def test_a_run_is_scored_on_its_own_held_out_data(train_tiny):
    run = train_tiny("beta-vae", steps=2, data="shapes", data_options={"size": 300}, image_size=16)
    result = disentanglement(run.path)
    assert result["n"] == 30  # the held-out tenth of the run's 300 items
    assert set(result["per_factor"]) == set(shapes.FACTOR_NAMES) and 0 <= result["mig"] <= 1
    assert result == disentanglement(run, load_data("shapes", LoadOptions(options={"size": 300}, image_size=16)))


def square_positions() -> Dataset:
    """Every x, y position of one large unturned square, 16x16: 256 images whose only factors are x and y."""
    factors = torch.tensor([(0, 5, 0, x, y) for x in range(16) for y in range(16)])
    x = torch.from_numpy(shapes.render(factors.numpy(), 16))
    return Dataset("square-positions", x, factors[:, 0], x, factors[:, 0], class_names=["square"],
                   items_train={"factors": factors}, items_val={"factors": factors},
                   extras={"factor_names": list(shapes.FACTOR_NAMES)})


@pytest.mark.slow
def test_a_briefly_trained_beta_vae_disentangles_better_than_an_untrained_one():
    """Within a few hundred steps a heavy beta (8) turns two latents to x and y, one each (MIG 0.25-0.34 over
    seeds 0-2, from 0.03-0.07 untrained; with spare latents some seeds split a factor over two)."""
    data = square_positions()
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(latent_dim=2, base_channels=8, beta=8.0, kl_warmup_steps=0), data.spec)
    untrained = disentanglement(model, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(800):
        out = model.training_loss(data.train_batch(step, 32, seed=0), "model", step, generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    trained = disentanglement(model, data)
    assert set(trained["per_factor"]) == {"x", "y"}  # the constant factors are left out
    assert trained["mig"] > 0.2 and trained["mig"] > untrained["mig"] + 0.15, (untrained, trained)
    assert trained["latent_per_factor"]["x"] != trained["latent_per_factor"]["y"]
