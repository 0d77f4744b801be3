"""CycleGAN: its losses against hand computations, its two directions, training on two domains, and
`genlab translate --direction` from the command line."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import genlab
from genlab.batch import SOURCE, X, X_B
from genlab.config import from_dict
from genlab.data import load_data
from genlab.errors import ArgumentError
from genlab.models.gan.cyclegan import CycleGAN, CycleGANConfig
from genlab.imageio import load_samples
from genlab.outputs import save_samples
from genlab.train import checkpoint as ckpt

from conftest import TINY_TRAIN_OPTIONS, tiny_config


def build(**changes) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(from_dict(CycleGANConfig, tiny_config("cyclegan", **changes), "cyclegan"),
                    load_data("domains:digits+digits").spec)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Negate(nn.Module):
    def forward(self, x):
        return -x


class MeanScore(nn.Module):
    """A stand-in discriminator: each image's mean as its one patch score (B, 1, 1, 1)."""

    def forward(self, x):
        return x.mean((1, 2, 3), keepdim=True)


def images(seed: int, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=gen(seed)) * 2 - 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny CycleGAN trained 3 steps on two (here equal) domains."""
    out = tmp_path_factory.mktemp("cyclegan") / "run"
    return genlab.train("cyclegan", "domains:digits+digits", out=out, steps=3, model_config=tiny_config("cyclegan"),
                        progress=False, **TINY_TRAIN_OPTIONS)


def test_cycle_and_identity_terms_by_hand():
    model = build()
    a, b = images(1), images(2)
    # identity translators: every reconstruction and every identity mapping is exact
    model.generator = nn.ModuleDict({"a2b": nn.Identity(), "b2a": nn.Identity()})
    terms = model.cycle_terms(a, b)
    assert float(terms["cycle"]) == 0.0 and float(terms["identity"]) == 0.0
    # G = F = negation: the cycle closes (-(-a) = a), but the identity term sees |-b - b| + |-a - a|
    model.generator = nn.ModuleDict({"a2b": Negate(), "b2a": Negate()})
    terms = model.cycle_terms(a, b)
    assert float(terms["cycle"]) == 0.0
    assert float(terms["identity"]) == pytest.approx(float(2 * a.abs().mean() + 2 * b.abs().mean()), rel=1e-6)
    # G negates, F keeps: the cycle does not close, F(G(a)) = -a
    model.generator = nn.ModuleDict({"a2b": Negate(), "b2a": nn.Identity()})
    cycle = float(model.cycle_terms(a, b)["cycle"])
    assert cycle == pytest.approx(float(2 * a.abs().mean() + 2 * b.abs().mean()), rel=1e-6)


def test_untrained_generators_have_a_positive_cycle_loss_and_the_weights_of_the_paper():
    model = build()
    assert model.config.cycle_weight == 10.0 and model.config.identity_weight == 0.5
    assert model.config.loss == "least-squares"
    a, b = images(1), images(2)
    out = model.training_loss({X: a, X_B: b}, "generator", 0, gen())
    logs = {k: float(v) for k, v in out.logs.items()}
    assert logs["cycle"] > 0.05 and logs["identity"] > 0.05
    # the total is adversarial + lambda * cycle + 0.5 * lambda * identity
    expected = logs["g_adv"] + 10 * logs["cycle"] + 5 * logs["identity"]
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    no_identity = build(identity_weight=0.0).training_loss({X: a, X_B: b}, "generator", 0, gen())
    assert "identity" not in no_identity.logs


def test_least_squares_discriminator_loss_is_halved_per_domain():
    model = build()
    model.generator = nn.ModuleDict({"a2b": nn.Identity(), "b2a": nn.Identity()})
    model.discriminator = nn.ModuleDict({"a": MeanScore(), "b": MeanScore()})
    a, b = torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8)
    logs = model.training_loss({X: a, X_B: b}, "discriminator", 0, gen()).logs
    # D_A: real a scores 1, fake F(b) = b scores -1 -> 0.5 * ((1 - 1)^2 + (-1)^2)
    assert float(logs["d_loss_a"]) == pytest.approx(0.5)
    # D_B: real b scores -1, fake G(a) = a scores 1 -> 0.5 * ((-1 - 1)^2 + 1^2)
    assert float(logs["d_loss_b"]) == pytest.approx(2.5)
    assert float(logs["d_loss"]) == pytest.approx(3.0)
    # the generators' least-squares term: (D_B(G(a)) - 1)^2 + (D_A(F(b)) - 1)^2 = 0 + 4
    assert float(model.training_loss({X: a, X_B: b}, "generator", 0, gen()).logs["g_adv"]) == pytest.approx(4.0)


def test_the_two_directions_use_the_two_generators():
    model = build().eval()
    source = images(3)
    a2b = model.sample(4, {SOURCE: source}, direction="a2b")
    b2a = model.sample(4, {SOURCE: source}, direction="b2a")
    assert torch.allclose(a2b, model.generator["a2b"](source).clamp(-1, 1))
    assert torch.allclose(b2a, model.generator["b2a"](source).clamp(-1, 1))
    assert not torch.allclose(a2b, b2a, atol=1e-3)
    assert torch.equal(model.sample(4, {SOURCE: source}), a2b)  # a2b is the default
    with torch.no_grad():  # changing F changes b2a only
        for p in model.generator["b2a"].parameters():
            p.add_(0.1)
    assert torch.equal(model.sample(4, {SOURCE: source}, direction="a2b"), a2b)
    assert not torch.allclose(model.sample(4, {SOURCE: source}, direction="b2a"), b2a, atol=1e-3)
    with pytest.raises(ArgumentError, match="a2b .* or b2a"):
        model.sample(4, {SOURCE: source}, direction="a2c")
    with pytest.raises(ArgumentError, match="resize them"):
        model.sample(1, {SOURCE: torch.zeros(1, 1, 16, 16)})


def test_evaluation_translates_held_out_images_of_the_source_domain():
    model = build()
    real = {X: images(4, n=3), X_B: images(5, n=3)}
    cond = model.evaluation_conditions(5, real=real)
    assert torch.equal(cond[SOURCE], real[X][[0, 1, 2, 0, 1]])  # cycled to n
    assert torch.equal(model.evaluation_conditions(2, real=real, direction="b2a")[SOURCE], real[X_B][:2])
    assert model.evaluation_conditions(2, real={X: real[X]}, direction="b2a") is None
    assert model.evaluation_conditions(2) is None
    # without a source it still samples (noise in, translations out), reproducibly from the generator
    noise = model.sample(3, generator=gen(0))
    assert noise.shape == (3, 1, 8, 8) and torch.equal(model.sample(3, generator=gen(0)), noise)


def test_trains_on_two_domains_with_one_optimizer_per_side(run):
    assert run.info()["step"] == 3
    state = torch.load(ckpt.resolve(run.checkpoints) / "state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"discriminator", "generator"}
    assert all(int(s["state"][0]["step"]) == 3 for s in state["optimizers"].values())
    model = run.load_model()
    specs = {s.name: {id(p) for p in s.parameters()} for s in model.optimizers()}
    assert specs["generator"] == {id(p) for p in model.generator.parameters()}  # G and F together
    assert specs["discriminator"] == {id(p) for p in model.discriminator.parameters()}  # D_A and D_B
    rows = [r for r in run.metrics() if "cycle" in r]
    assert rows and all(r["cycle"] > 0 and "d_loss" in r for r in rows)
    source = load_data("domains:digits+digits").validation(4)[X_B]
    assert run.sample(4, {SOURCE: source}, direction="b2a").shape == (4, 1, 8, 8)
    with pytest.raises(ArgumentError, match="needs data with x_b"):
        genlab.train("cyclegan", "digits", out=run.path.parent / "one-domain", steps=1, progress=False,
                     model_config=tiny_config("cyclegan"), **TINY_TRAIN_OPTIONS)


@pytest.mark.slow  # a subprocess that imports torch: ~8 s
def test_translate_from_the_command_line_in_both_directions(run, tmp_path, genlab_cli):
    source = load_data("domains:digits+digits").validation(6)[X]
    save_samples(source, tmp_path / "in.npz", "image")
    done = genlab_cli("translate", run.path, "--input", "in.npz", "--direction", "b2a", "--out", "out.npz",
                      "--precision", "fp32")
    assert done.returncode == 0, done.stderr[-2000:]
    out, _ = load_samples(tmp_path / "out.npz")
    x, _ = load_samples(tmp_path / "in.npz")  # the input as the command read it (quantised to 8 bits)
    b2a = run.sample(6, {SOURCE: x}, direction="b2a", precision="fp32")
    a2b = run.sample(6, {SOURCE: x}, direction="a2b", precision="fp32")
    assert out.shape == (6, 1, 8, 8)
    assert (out - b2a).abs().max() <= 2 / 127.5  # up to the 8-bit rounding of the written images
    assert (out - a2b).abs().max() > 4 / 127.5


def test_direction_is_refused_where_it_means_nothing(run, tmp_path, monkeypatch, capsys):
    from genlab.cli import main

    save_samples(torch.zeros(1, 1, 8, 8), tmp_path / "in.npz", "image")

    def genlab_main(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["genlab", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            main()
        return exit_.value.code or 0, capsys.readouterr().err

    code, err = genlab_main("translate", run.path, "--input", tmp_path / "in.npz", "--direction", "sideways",
                            "--out", tmp_path / "o.npz")
    assert code == 2 and "direction must be a2b (domain A to B) or b2a, got 'sideways'" in err, err
    code, err = genlab_main("img2img", run.path, "--input", tmp_path / "in.npz", "--direction", "b2a")
    assert code == 2 and "takes no --direction" in err, err
