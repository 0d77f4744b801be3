"""The denoising diffusion GAN: its chain, its pair discriminator, its latent noise, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.schedulers import NoiseSchedule

from test_models import build, gen, make_trainer


def test_the_vp_schedule_ends_in_noise_whatever_the_step_count():
    for steps in (1, 2, 4, 8):
        ab = NoiseSchedule(steps, "vp").alpha_bars
        assert len(ab) == steps and bool((ab[1:] < ab[:-1]).all())
        # alpha_bar(1) = exp(-0.1 - 19.9 / 2) of the continuous VP SDE, at any step count
        assert ab[-1].item() == pytest.approx(math.exp(-0.1 - 9.95), rel=1e-2)
    assert NoiseSchedule(4, "vp").alpha_bars[0].item() == pytest.approx(math.exp(-0.1 * 0.25 - 9.95 * 0.0625), rel=1e-2)


def test_real_pairs_and_the_posterior_follow_the_forward_chain():
    model, _ = build("ddgan", "digits", num_steps=4)
    x0 = torch.full((100000, 1, 1, 1), 0.5)
    k, x_prev, x_t = model._pairs(x0, gen(0))
    ab = model.schedule.alpha_bars.float()
    ab_prev = torch.cat([torch.ones(1), ab[:-1]])
    for step in range(4):
        sel = k == step
        assert sel.sum() > 20000  # steps drawn uniformly
        # q(x_k | x0) and q(x_{k-1} | x0): means sqrt(ab) x0, variances 1 - ab
        assert x_t[sel].mean().item() == pytest.approx(0.5 * ab[step].sqrt().item(), abs=0.02)
        assert x_t[sel].var().item() == pytest.approx(1 - ab[step].item(), abs=0.02)
        assert x_prev[sel].mean().item() == pytest.approx(0.5 * ab_prev[step].sqrt().item(), abs=0.02)
    # a posterior draw given the true x0 has q(x_{k-1} | x0) as its marginal again
    noise = torch.randn(x_t.shape, generator=gen(1))
    again = model._posterior(x0, x_t, k, noise)
    for step in range(1, 4):
        sel = k == step
        assert again[sel].mean().item() == pytest.approx(0.5 * ab_prev[step].sqrt().item(), abs=0.02)
        assert again[sel].var().item() == pytest.approx(1 - ab_prev[step].item(), abs=0.02)
    # the last step returns the clean estimate itself, with no noise added
    last = k == 0
    assert torch.allclose(again[last], x0[last], atol=1e-5)


def test_the_discriminator_sees_the_less_noisy_item_the_noisy_item_and_the_step():
    model, ds = build("ddgan", "digits")
    x_prev, x_t = ds.x_train[:8], torch.randn(8, *ds.shape, generator=gen(0))
    k = torch.ones(8, dtype=torch.long)
    base = model.discriminator(x_prev, x_t, model.network_time(k))
    assert base.shape == (8, 1)
    changed = [model.discriminator(ds.x_train[8:16], x_t, model.network_time(k)),
               model.discriminator(x_prev, torch.randn(8, *ds.shape, generator=gen(1)), model.network_time(k)),
               model.discriminator(x_prev, x_t, model.network_time(k - 1))]
    for other in changed:
        assert (other - base).abs().max() > 1e-4


def test_the_latent_noise_changes_the_denoised_item_and_sampling_follows_the_seed():
    model, ds = build("ddgan", "digits")
    model.eval()
    x_t = torch.randn(4, *ds.shape, generator=gen(0))
    k = torch.ones(4, dtype=torch.long)
    a = model.denoise(x_t, torch.randn(4, model.config.latent_dim, generator=gen(1)), k)
    b = model.denoise(x_t, torch.randn(4, model.config.latent_dim, generator=gen(2)), k)
    assert (a - b).abs().mean() > 2e-3  # untrained: z acts from the start (2e-5 with zero-initialised blocks)
    assert torch.equal(model.sample(4, generator=gen(3)), model.sample(4, generator=gen(3)))
    assert model.network_calls() == model.config.num_steps


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(GenlabError, match="at least one step"):
        build("ddgan", "digits", num_steps=0)
    with pytest.raises(GenlabError, match="diffaugment"):
        build("ddgan", "digits", diffaugment="translation")
    model, _ = build("ddgan", "digits", num_steps=2)
    assert model.sample_options() == {"steps": 2}  # what an evaluation records
    with pytest.raises(GenlabError, match="num_steps=4"):
        model.sample(2, steps=4)


@pytest.mark.slow
def test_a_trained_ddgan_moves_its_samples_onto_the_ring(tmp_path):
    from genlab.data.toy import eight_gaussians_centers

    model, ds = build("ddgan", "8gaussians", num_steps=2, mlp_hidden=64)
    radius = float(torch.tensor(eight_gaussians_centers()).norm(dim=1)[0])

    def radial_error(net) -> float:
        x = net.sample(1000, generator=gen(3))
        return (x.norm(dim=1) - radius).abs().mean().item()

    before = radial_error(model)
    # about 25 s: half of its steps are spent on the noisiest pairs, which carry little signal
    trainer = make_trainer("ddgan", model, ds, tmp_path / "run", batch_size=128, lr=5e-4, ema_decay=0.99)
    trainer.fit(steps=1200)
    after = radial_error(trainer.ema.model)
    assert after < 0.8 * before, f"mean distance to the circle of modes {before:.3f} -> {after:.3f}"
