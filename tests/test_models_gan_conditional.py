"""cgan (projection discriminator, label-embedding generator) and sagan (spectral norm, self-attention,
conditional batch norm): training, sampling, the label reaching D, spectral norm, attention at init."""

from __future__ import annotations

import pytest
import torch

from genlab.config import from_dict
from genlab.data import load_data
from genlab.data.base import DataSpec
from genlab.errors import ArgumentError
from genlab.nn.self_attention import SelfAttention2d
from genlab.registry import get_model_class

from conftest import tiny_config


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(name: str, conditions: tuple[str, ...] = (), spec: DataSpec | None = None, **changes):
    torch.manual_seed(0)
    cls = get_model_class(name)
    return cls(from_dict(cls.config_class, tiny_config(name, **changes), name), spec or load_data("digits").spec,
               conditions)


# ------------------------------------------------------------------ training and sampling
@pytest.mark.parametrize("name, condition", [("cgan", "label"), ("sagan", "label"), ("sagan", None)])
def test_trains_a_few_steps_and_samples_the_right_shape(name, condition, train_tiny):
    run = train_tiny(name, steps=3, condition=condition)
    assert run.info()["step"] == 3
    rows = [r for r in run.metrics() if "d_loss" in r]
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(r["d_loss"])) for r in rows)
    if condition:
        x = run.sample(6, labels=[7] * 6, seed=0)
        assert not torch.equal(x, run.sample(6, labels=[1] * 6, seed=0)), "the labels are ignored"
    else:
        x = run.sample(6, seed=0)
    assert x.shape == (6, 1, 8, 8) and x.min() >= -1 and x.max() <= 1


@pytest.mark.slow  # a subprocess: the CLI's start-up
def test_sample_class_through_the_cli(train_tiny, genlab_cli, tmp_path):
    from genlab.imageio import load_samples

    run = train_tiny("cgan", steps=2, condition="label")
    done = genlab_cli("sample", run.path, "-n", "4", "--class", "7", "--out", tmp_path / "sevens.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    x, _ = load_samples(tmp_path / "sevens.npz")
    assert x.shape[0] == 4
    assert torch.allclose(x.float().reshape(4, -1), run.sample(4, labels=[7] * 4, seed=0).reshape(4, -1), atol=0.02)


# ------------------------------------------------------------------ cgan
def test_cgan_needs_labelled_data_and_says_so():
    unlabelled = DataSpec("image", (1, 8, 8))
    with pytest.raises(ArgumentError, match="--condition label"):
        build("cgan", spec=unlabelled)
    with pytest.raises(ArgumentError, match="--condition label"):
        build("cgan", ("label",), spec=unlabelled)
    # on labelled data the label is implied: a cgan is never unconditional
    assert build("cgan").conditions == ("label",)


def test_cgan_without_labels_samples_every_class_in_turn():
    model = build("cgan", ("label",)).eval()
    every = model.sample(12, generator=gen(0))
    assert torch.equal(every, model.sample(12, {"label": torch.arange(12) % 10}, generator=gen(0)))


@pytest.mark.parametrize("name", ["cgan", "sagan"])
def test_projection_term_depends_on_the_label(name):
    model = build(name, ("label",)).eval()
    x = load_data("digits").x_val[:4]
    with torch.no_grad():
        threes = model.discriminate(x, {"label": torch.full((4,), 3)})
        sevens = model.discriminate(x, {"label": torch.full((4,), 7)})
        assert threes.shape == (4, 1) and (threes - sevens).abs().min() > 1e-4
        # D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, by hand
        d = model.discriminator
        phi = d.phi(x)
        by_hand = d.psi(phi) + (d.embed.weight[7] * phi).sum(1, keepdim=True)
        assert torch.allclose(sevens, by_hand, atol=1e-5)


@pytest.mark.slow
def test_cgan_samples_are_recognised_as_the_requested_class(train_tiny):
    """A logistic regression on the real digits (in genlab's [-1, 1] scaling) recognises the classes asked for."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    images = digits.images / 16.0 * 2 - 1  # as genlab.data.images scales digits
    classifier = LogisticRegression(max_iter=2000).fit(images.reshape(len(images), -1), digits.target)
    run = train_tiny("cgan", steps=200, condition="label", batch_size=64,
                     model_config=tiny_config("cgan", latent_dim=64, label_dim=32, generator_channels=16,
                                              discriminator_channels=16))
    labels = torch.arange(300) % 10
    x = run.sample(300, labels=labels.tolist(), seed=0)
    predicted = torch.as_tensor(classifier.predict(x.reshape(300, -1).double().numpy()))
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy > 0.3, f"the classifier agrees with the requested class for {accuracy:.0%} (chance 10%)"


# ------------------------------------------------------------------ sagan
def _normalised_layers(module):
    return [m for m in module.modules() if hasattr(m, "parametrizations")]


def test_sagan_spectral_norm_on_every_conv_and_linear():
    model = build("sagan", ("label",))
    for net in (model.generator, model.discriminator):
        layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert hasattr(model.discriminator.embed, "parametrizations")  # the projection too, as in Miyato & Koyama


def test_sagan_discriminator_weights_have_largest_singular_value_one():
    model = build("sagan", ("label",), discriminator_channels=16).train()
    x, y = load_data("digits").x_train[:8], torch.arange(8)
    conv = model.discriminator.phi.features[0].conv2  # a 16 x (16*3*3) matrix
    raw = conv.parametrizations.weight.original.flatten(1)
    assert abs(torch.linalg.matrix_norm(raw, ord=2).item() - 1) > 0.2, "the raw weight is already normalised"
    for _ in range(5):  # each training call runs one power iteration
        model.discriminate(x, {"label": y})
    with torch.no_grad():
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item()
    assert sigma == pytest.approx(1.0, abs=0.03)


def test_sagan_power_iteration_only_on_gradient_steps():
    """Measuring a loss without gradients leaves the normalisation (and so the next loss) unchanged."""
    model = build("sagan").train()
    x = load_data("digits").x_train[:8]
    conv_u = model.discriminator.phi.features[0].conv1.parametrizations.weight[0]._u
    before = conv_u.clone()
    with torch.no_grad():
        model.discriminate(x, {})
    assert torch.equal(conv_u, before)
    model.discriminate(x, {})
    assert not torch.equal(conv_u, before)


def test_sagan_attention_sits_in_both_networks_and_starts_as_the_identity():
    model = build("sagan", ("label",))
    blocks = [m for net in (model.generator, model.discriminator) for m in net.modules()
              if isinstance(m, SelfAttention2d)]
    assert len(blocks) == 2 and all(b.gamma.detach().item() == 0.0 for b in blocks)
    assert not any(isinstance(m, SelfAttention2d) for m in build("sagan", attention=False).modules())


def test_self_attention_is_the_identity_at_init_and_the_papers_attention_after():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 5, 4)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    y = block(x)
    assert not torch.allclose(y, x)
    # o_j = v(sum_i softmax_i(f(x_i) . g(x_j)) h(x_i)), written out per position
    f, g, h = (conv(x).flatten(2) for conv in (block.f, block.g, block.h))  # (B, 2, N)
    scores = torch.einsum("bci,bcj->bji", f, g)  # (B, N_j, N_i)
    beta = scores.softmax(-1)
    assert torch.allclose(beta.sum(-1), torch.ones(2, 20))
    o = torch.einsum("bji,bci->bcj", beta, h).reshape(2, 2, 5, 4)
    assert torch.allclose(y, x + 0.5 * block.v(o), atol=1e-5)


def test_sagan_defaults_follow_the_paper():
    cls = get_model_class("sagan")
    config = cls.config_class()
    assert config.loss == "hinge" and config.discriminator_lr_scale == 4.0
    assert cls.train_defaults["lr"] == 1e-4 and cls.train_defaults["betas"] == (0.0, 0.9)
    model = build("sagan")
    lrs = {spec.name: spec.lr_scale for spec in model.optimizers()}
    assert lrs == {"discriminator": 4.0, "generator": 1.0}


def test_sagan_conditional_batch_norm_only_with_labels():
    from genlab.models.gan.sagan import ConditionalBatchNorm2d

    conditional, plain = build("sagan", ("label",)), build("sagan")
    norms = [m for m in conditional.generator.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert norms and all(m.gain is not None and torch.equal(m.gain.weight, torch.ones_like(m.gain.weight))
                         for m in norms)
    assert all(m.gain is None for m in plain.generator.modules() if isinstance(m, ConditionalBatchNorm2d))
    assert plain.discriminator.embed is None
