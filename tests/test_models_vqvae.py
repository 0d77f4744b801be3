"""genlab.models.vae.vqvae and vqvae_prior: nearest-code quantisation, the straight-through gradient, the
EMA codebook and its dead-code restarts against hand computations, codebook usage after training, and
the prior run over a VQ-VAE run (refusing a changed one, sampling images, learning the codes)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.batch import X
from genlab.data import load_data
from genlab.data.base import DataSpec
from genlab.errors import ArgumentError, CheckpointError
from genlab.models.vae.vqvae import VQVAE, Codebook, VQVAEConfig
from genlab.runs import Run

from conftest import TINY_TRAIN_OPTIONS, tiny_config


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def set_codes(codebook: Codebook, codes: list[list[float]], unused: int = 0) -> None:
    """A hand-made codebook with fresh statistics: one vector per code, at the code."""
    codes = torch.tensor(codes)
    codebook.codes.copy_(codes)
    codebook.code_sum.copy_(codes)
    codebook.cluster_size.fill_(1.0)
    codebook.unused_steps.fill_(unused)


def digits_vqvae(**config) -> VQVAE:
    torch.manual_seed(0)
    settings = {**tiny_config("vqvae"), **config}
    return VQVAE(VQVAEConfig(**settings), DataSpec("image", (1, 8, 8), num_classes=10))


# ------------------------------------------------------------------ the codebook by hand
def test_quantisation_picks_the_nearest_code():
    model = digits_vqvae(num_codes=4, code_dim=2)
    set_codes(model.codebook, [[0, 0], [1, 0], [0, 1], [5, 5]])
    vectors = torch.tensor([[0.1, -0.2], [0.9, 0.3], [0.2, 0.7], [3.0, 2.9], [0.6, 0.45], [-4.0, 0.0]])
    # nearest by hand: 0; 1 (0.1^2 + 0.3^2 < 0.9^2 + 0.3^2); 2; 3 (4 + 4.41 < 9 + 4.41 + ...); 1 (0.16 +
    # 0.2025 < 0.36 + 0.3025); 0
    assert model.codebook.nearest(vectors).tolist() == [0, 1, 2, 3, 1, 0]
    grid = vectors[:4].T.reshape(1, 2, 2, 2)  # (B, D, h, w): the four vectors in raster order
    quantised, index = model.quantise(grid)
    assert index.tolist() == [[[0, 1], [2, 3]]]
    assert torch.equal(quantised[0].permute(1, 2, 0).reshape(4, 2), torch.tensor([[0.0, 0], [1, 0], [0, 1], [5, 5]]))


def test_the_straight_through_gradient_reaches_the_encoder():
    model = digits_vqvae(beta=0.0)  # no commitment term: the reconstruction is the encoder's only gradient
    x = load_data("digits").x_val[:8]
    model.training_loss({X: x}, "model", 0, gen(0)).loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # and it is the decoder's gradient at the codes, passed through unchanged
    model.zero_grad()
    z = model.encode_latent(x).detach().requires_grad_(True)
    quantised, _ = model.quantise(z)
    (model.decoder(z + (quantised - z).detach()) - x).pow(2).mean().backward()
    at_codes = quantised.detach().requires_grad_(True)
    (model.decoder(at_codes) - x).pow(2).mean().backward()
    assert torch.allclose(z.grad, at_codes.grad, rtol=1e-3, atol=1e-7)  # z + (q - z) rounds to q within an ulp


def test_the_ema_update_follows_the_formula_and_moves_a_code_to_the_mean_of_its_vectors():
    vectors = torch.tensor([[1.0, 1.0], [3.0, 3.0], [9.0, 9.0]])
    index = torch.tensor([0, 0, 1])
    eps = 1e-5
    book = Codebook(2, 2, decay=0.5, epsilon=eps, dead_after=100)
    set_codes(book, [[0, 0], [10, 10]])
    book.update(vectors, index, gen(0))
    # N = 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1); m = 0.5 * code + 0.5 * sum = (2, 2), (9.5, 9.5);
    # Laplace smoothing: N_i' = (N_i + eps) / (2.5 + 2 eps) * 2.5
    smoothed = [(n + eps) / (2.5 + 2 * eps) * 2.5 for n in (1.5, 1.0)]
    expected = torch.tensor([[2 / smoothed[0]] * 2, [9.5 / smoothed[1]] * 2])
    assert torch.allclose(book.codes, expected, rtol=1e-6)
    assert torch.allclose(book.cluster_size, torch.tensor([1.5, 1.0]))
    # with no memory, each code lands on the mean of the vectors assigned to it
    book = Codebook(2, 2, decay=0.0, epsilon=eps, dead_after=100)
    set_codes(book, [[0, 0], [10, 10]])
    book.update(vectors, index, gen(0))
    assert torch.allclose(book.codes, torch.tensor([[2.0, 2.0], [9.0, 9.0]]), atol=1e-4)


def test_a_dead_code_is_restarted_at_an_encoder_output_of_the_batch():
    vectors = torch.tensor([[0.1, 0.0], [0.0, 0.1], [1.0, 0.9], [0.9, 1.1]])
    book = Codebook(3, 2, decay=0.99, epsilon=1e-5, dead_after=2)
    set_codes(book, [[0, 0], [1, 1], [100, 100]])
    index = book.nearest(vectors)
    assert book.update(vectors, index, gen(0)) == 0  # one step unused: not dead yet
    assert torch.allclose(book.codes[2], torch.tensor([100.0, 100.0]), rtol=1e-4) and book.unused_steps.tolist() == [0, 0, 1]
    assert book.update(vectors, book.nearest(vectors), gen(0)) == 1
    assert any(torch.equal(book.codes[2], v) for v in vectors), book.codes[2]
    assert book.unused_steps.tolist() == [0, 0, 0] and book.cluster_size[2] == 1.0
    assert (book.codes[:2] - torch.tensor([[0.0, 0.0], [1.0, 1.0]])).abs().max() < 0.1  # the live codes stay
    # the restart draws from the step's generator: the same seed, the same vector
    again = Codebook(3, 2, decay=0.99, epsilon=1e-5, dead_after=2)
    set_codes(again, [[0, 0], [1, 1], [100, 100]], unused=1)
    again.update(vectors, again.nearest(vectors), gen(0))
    assert torch.equal(again.codes[2], book.codes[2])


def test_the_codebook_learns_in_training_steps_only():
    model = digits_vqvae()
    x = load_data("digits").x_val[:8]
    before = {k: v.clone() for k, v in model.codebook.state_dict().items()}
    with torch.no_grad():  # an evaluation of the loss, in train mode
        model.training_loss({X: x}, "model", 0, gen(0))
    model.eval()
    model.training_loss({X: x}, "model", 0, gen(0))
    assert all(torch.equal(before[k], v) for k, v in model.codebook.state_dict().items())
    model.train()
    model.training_loss({X: x}, "model", 0, gen(0))
    assert not torch.equal(before["codes"], model.codebook.codes)


def test_latent_and_code_routes_agree():
    model = digits_vqvae().eval()
    x = load_data("digits").x_val[:4]
    z = model.encode_latent(x)
    assert z.shape == (4, *model.latent_shape) == (4, 4, 4, 4)
    codes = model.encode_codes(x)
    assert codes.shape == (4, 4, 4) and codes.dtype == torch.long and int(codes.max()) < model.num_codes
    assert torch.equal(model.decode_latent(z), model.decode_codes(codes))
    assert model.decode_codes(codes).shape == x.shape


# ------------------------------------------------------------------ trained on digits
@pytest.fixture(scope="module")
def trained_vqvae(tmp_path_factory):
    """A small VQ-VAE with 32 codes on a 4 x 4 grid, trained briefly on digits."""
    import genlab

    config = {"base_channels": 16, "num_codes": 32, "code_dim": 8, "downsample": 1, "dead_after": 20}
    run = genlab.train("vqvae", "digits", out=tmp_path_factory.mktemp("vq") / "run", steps=150, progress=False,
                       model_config=config, **{**TINY_TRAIN_OPTIONS, "batch_size": 32, "lr": 2e-3, "log_every": 50})
    return run


@pytest.mark.slow
def test_codebook_usage_stays_above_a_floor_and_reconstructions_improve(trained_vqvae):
    model = trained_vqvae.load_model()
    x = load_data("digits").x_val[:500]
    codes = model.encode_codes(x)
    used = len(codes.unique())
    assert used > 0.5 * 32, f"{used} of 32 codes used on 500 held-out digits"  # measured: all 32
    fresh = digits_vqvae(base_channels=16, num_codes=32, code_dim=8, dead_after=20).eval()
    with torch.no_grad():
        mse, mse0 = ((model(x) - x).pow(2).mean().item(), (fresh(x) - x).pow(2).mean().item())
    assert mse < 0.5 * mse0, f"held-out reconstruction MSE {mse0:.4f} untrained, {mse:.4f} trained"


def prior_config(autoencoder, **changes):
    return tiny_config("vqvae-prior", autoencoder=str(autoencoder), **changes)


@pytest.mark.slow
def test_the_prior_learns_the_codes_and_samples_images_through_the_autoencoder(trained_vqvae, train_tiny):
    config = prior_config(trained_vqvae.path, num_codes=32, dim=32, depth=2)
    untrained = train_tiny("vqvae-prior", steps=1, model_config=config, lr=1e-9).load_model()
    run = train_tiny("vqvae-prior", steps=150, model_config=config, batch_size=32, lr=3e-3)
    model = run.load_model()
    held_out = {X: load_data("digits").x_val[:300]}
    bits0, bits = untrained.bits_per_code(held_out).mean().item(), model.bits_per_code(held_out).mean().item()
    assert bits < bits0 and bits < 0.8 * math.log2(32), f"held-out bits per code {bits0:.3f} -> {bits:.3f}"
    samples = run.sample(6, seed=1)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    # the samples are the autoencoder's decoding of the prior's codes
    codes = model.sample_codes(6, generator=gen(2))
    assert codes.shape == (6, 4, 4) and codes.max() < 32
    autoencoder = model.referenced("autoencoder")
    assert torch.equal(model.sample(6, generator=gen(2)), autoencoder.decode_codes(codes))


def test_a_class_conditional_prior_samples_each_class(train_tiny):
    run = train_tiny("vqvae-prior", steps=3, condition="label", lr=1e-2)
    nines, zeros = run.sample(4, labels=[9] * 4), run.sample(4, labels=[0] * 4)
    assert nines.shape == (4, 1, 8, 8) and not torch.equal(nines, zeros)
    with pytest.raises(ArgumentError, match="give the classes"):
        run.load_model().sample(2, generator=gen(0))


def test_the_prior_refuses_a_changed_or_unfit_autoencoder(train_tiny, tmp_path):
    vq = train_tiny("vqvae", steps=2, out=tmp_path / "vq")
    run = train_tiny("vqvae-prior", steps=2, model_config=prior_config(vq.path))
    assert run.references["autoencoder"]["model"] == "vqvae"
    step = run.references["autoencoder"]["checkpoint"]
    weights = vq.path / "checkpoints" / step / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="weights changed since"):
        Run(run.path).load_model()
    other = train_tiny("vqvae", steps=1, out=tmp_path / "vq8", model_config=tiny_config("vqvae", num_codes=8))
    with pytest.raises(ArgumentError, match=r"has 8 codes on a \(4, 4\) grid; this prior expects 16 on \(4, 4\)"):
        train_tiny("vqvae-prior", steps=1, model_config=prior_config(other.path))
    kl = train_tiny("autoencoder", steps=1, out=tmp_path / "kl")
    with pytest.raises(ArgumentError, match="has no codebook"):
        train_tiny("vqvae-prior", steps=1, model_config=prior_config(kl.path))
