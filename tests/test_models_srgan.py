"""genlab.models.gan.srgan: shapes at x2 and x4, the pre-training stage before the adversarial phases,
the content + adversarial loss, held-out inputs for previews and evaluation, learning to beat bicubic,
and `genlab upscale` from the command line."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from genlab.batch import LOW_RES
from genlab.config import from_dict
from genlab.data import load_data
from genlab.errors import ArgumentError
from genlab.eval.fidelity import psnr
from genlab.models.gan.losses import generator_loss
from genlab.models.gan.srgan import SRGAN, SRGANConfig

from conftest import REPO_ROOT, tiny_config, tiny_set_args

DIGITS = load_data("digits")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(spec=DIGITS.spec, **changes) -> SRGAN:
    torch.manual_seed(0)
    return SRGAN(from_dict(SRGANConfig, tiny_config("srgan", **changes), "srgan"), spec)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("side", [8, 28])
def test_the_generator_upscales_scale_times_and_the_discriminator_scores_each_item(scale, side):
    model = build(replace(DIGITS.spec, shape=(1, side, side)), scale=scale).eval()
    assert model.low_res_size == side // scale and model.conditions == (LOW_RES,)  # no --condition needed
    low = torch.rand(3, 1, side // scale, side // scale) * 2 - 1
    up = model.sample(3, {LOW_RES: low}, generator=gen(0))
    assert up.shape == (3, 1, side, side) and up.abs().max() <= 1
    with torch.no_grad():
        logits, features = model.discriminator(up.clone(), features=True)
    assert logits.shape == (3, 1) and features[0].shape[-1] == side // 2
    # one output per input, whatever the seed: the upscaler is deterministic
    assert torch.equal(model.sample(3, {LOW_RES: low}, generator=gen(1)), up)
    # an input of another size is brought to the run's low-resolution side first
    assert model.sample(3, {LOW_RES: F.interpolate(low, scale_factor=2.0)}, generator=gen(0)).shape == up.shape


def test_settings_it_cannot_build_are_refused_with_the_setting_named():
    for bad in ({"scale": 3}, {"scale": 16}, {"output_kernel": 4}):
        with pytest.raises(ArgumentError, match=next(iter(bad))):
            build(**bad)


# ------------------------------------------------------------------ the stages
def test_pixel_pretraining_runs_only_before_pretrain_steps_and_the_adversarial_phases_only_after():
    phases = {p.name: p for p in build(pretrain_steps=5, n_critic=2).phases()}
    assert list(phases) == ["pretrain", "discriminator", "generator"]
    assert phases["pretrain"].optimizer == "generator"  # the same Adam carries on into the GAN stage
    assert [s for s in range(10) if phases["pretrain"].active(s)] == [0, 1, 2, 3, 4]
    for name in ("discriminator", "generator"):
        assert [s for s in range(10) if phases[name].active(s)] == [5, 6, 7, 8, 9]
    assert phases["discriminator"].repeats == 2  # the shared GAN options still apply
    assert [p.name for p in build(pretrain_steps=0).phases()] == ["discriminator", "generator"]


def test_a_run_logs_the_pixel_loss_alone_then_the_adversarial_losses(train_tiny):
    run = train_tiny("srgan", steps=4, model_config=tiny_config("srgan", pretrain_steps=2))
    rows = [r for r in run.metrics() if "mse" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all("d_loss" not in r and "feature" not in r for r in rows[:2])
    assert all("d_loss" in r and "feature" in r and "g_adv" in r for r in rows[2:])


def test_the_losses_match_a_hand_computation():
    model = build(pixel_weight=0.5, feature_weight=2.0)
    x = DIGITS.x_train[:8].float()
    low = F.avg_pool2d(x, 2)  # the area average the run trains with (4x4 from 8x8)
    torch.manual_seed(1)
    pre = model.training_loss({"x": x}, "pretrain", 0, gen(0)).loss
    up = model.generator(low)
    assert torch.allclose(pre, ((up - x) ** 2).mean(), rtol=1e-5)
    out = model.training_loss({"x": x}, "generator", 10, gen(0))
    logits, fake = model.discriminator(up, features=True)
    _, real = model.discriminator(x, features=True)
    feature = sum(((f - r) ** 2).mean() for f, r in zip(fake, real)) / len(fake)
    expected = 0.5 * ((up - x) ** 2).mean() + 2.0 * feature + 1e-3 * generator_loss("non-saturating", logits)
    assert torch.allclose(out.loss, expected, rtol=1e-4), (out.loss, expected)
    # a batch that carries its own low-resolution images is upscaled from those
    other = model.training_loss({"x": x, LOW_RES: low.flip(0)}, "pretrain", 0, gen(0)).loss
    assert not torch.allclose(other, pre)


def test_evaluation_upscales_the_held_out_images_shrunk():
    model = build()
    real = DIGITS.x_val[:3].float()
    conditions = model.evaluation_conditions(5, real={"x": real})
    assert torch.allclose(conditions[LOW_RES], F.avg_pool2d(real, 2)[[0, 1, 2, 0, 1]])
    with pytest.raises(ArgumentError, match="low-resolution inputs"):
        model.evaluation_conditions(5)


# ------------------------------------------------------------------ it learns
@pytest.mark.slow
def test_after_100_steps_of_pixel_pretraining_it_beats_bicubic_on_held_out_digits(train_tiny):
    config = tiny_config("srgan", channels=16, blocks=2, pretrain_steps=10_000)  # the MSE stage only
    run = train_tiny("srgan", steps=100, model_config=config, batch_size=32, lr=2e-3)
    x = DIGITS.x_val[:200].float()
    low = F.avg_pool2d(x, 2)  # 4x4
    bicubic = F.interpolate(low, size=(8, 8), mode="bicubic", align_corners=False).clamp(-1, 1)
    up = run.sample(len(x), {LOW_RES: low}, precision="fp32")
    ours, theirs = psnr(up, x).mean(), psnr(bicubic, x).mean()
    assert ours > theirs + 2.0, (ours, theirs)  # 17.3 dB vs 13.5 when written


# ------------------------------------------------------------------ from the command line
@pytest.mark.slow
def test_upscale_from_the_cli_and_the_benchmark_on_a_run_trained_without_condition_flags(train_tiny, tmp_path,
                                                                                      genlab_cli, monkeypatch, capsys):
    import runpy

    from PIL import Image
    from typer.testing import CliRunner

    from genlab.cli import app
    from genlab.imageio import load_samples
    from genlab.outputs import save_samples

    run = train_tiny("srgan", steps=3, sample_every=3)
    assert run.conditions == (LOW_RES,)
    assert list((run.path / "samples").glob("step-00000003.*"))  # previews upscale held-out digits
    small = F.avg_pool2d(DIGITS.x_val[:3].float(), 2)  # (3, 1, 4, 4)
    save_samples(small, tmp_path / "small.npz", "image")
    done = genlab_cli("upscale", run.path, "--input", tmp_path / "small.npz", "--out", tmp_path / "up.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    up = load_samples(tmp_path / "up.npz")[0]
    assert up.shape == (3, 1, 8, 8)
    assert (up - run.sample(3, {LOW_RES: small})).abs().max() < 0.02  # the same upscaling, through the file
    Image.fromarray(((small[0, 0] + 1) * 127.5).round().byte().numpy()).save(tmp_path / "one.png")
    done = CliRunner().invoke(app, ["upscale", str(run.path), "--input", str(tmp_path / "one.png"),
                                    "--out", str(tmp_path / "one-up.png")])
    assert done.exit_code == 0, done.output
    assert Image.open(tmp_path / "one-up.png").size[0] >= 8
    # the benchmark scores it once: a deterministic upscaler has nothing to average
    monkeypatch.setattr(sys, "argv", ["upscale.py", str(run.path), "-n", "20"])
    runpy.run_path(str(REPO_ROOT / "benchmarks" / "upscale.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "upscaled (deterministic)" in out and "mean of" not in out and (run.path / "upscale-grid.png").exists()
