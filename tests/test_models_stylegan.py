"""genlab.models.gan.stylegan and genlab.nn.modulated_conv: demodulation, truncation, style mixing, the
mapping network's learning rate, lazy R1, and a short training through the API and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.config import from_dict
from genlab.data import load_data
from genlab.models.gan.stylegan import StyleGAN, StyleGANConfig
from genlab.nn.modulated_conv import MinibatchStdDev, ModulatedConv2d, blur, modulated_conv2d
from genlab.train import checkpoint as ckpt
from genlab.train.optim import Defaults, build

from conftest import tiny_config


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def model(**changes) -> StyleGAN:
    torch.manual_seed(0)
    config = from_dict(StyleGANConfig, tiny_config("stylegan", **changes), "stylegan")
    return StyleGAN(config, load_data("digits").spec).eval()


# ------------------------------------------------------------------ the layers
def test_demodulation_gives_each_output_channel_a_unit_norm_kernel():
    conv = ModulatedConv2d(6, 5, 3, w_dim=4)
    w = torch.randn(3, 4) * 3
    kernels = conv.modulated_weight(w)  # (B, O, I, k, k)
    assert kernels.shape == (3, 5, 6, 3, 3)
    torch.testing.assert_close(kernels.flatten(2).norm(dim=2), torch.ones(3, 5))
    # without demodulation (toRGB) the styles' scale stays in the kernel
    plain = ModulatedConv2d(6, 5, 3, w_dim=4, demodulate=False).modulated_weight(w)
    assert not torch.allclose(plain.flatten(2).norm(dim=2), torch.ones(3, 5), atol=0.1)


def test_modulated_conv_applies_each_items_own_kernel():
    conv = ModulatedConv2d(4, 3, 3, w_dim=2)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 2)
    kernels = conv.modulated_weight(w)
    expected = torch.cat([F.conv2d(x[i : i + 1], kernels[i], padding=1) for i in range(2)])
    torch.testing.assert_close(conv(x, w), expected)


def test_upsampling_modulated_conv_is_zero_insertion_the_kernel_and_the_blur():
    weight, styles, x = torch.randn(3, 4, 3, 3), torch.rand(2, 4) + 0.5, torch.randn(2, 4, 5, 5)
    out = modulated_conv2d(x, weight, styles, up=True)
    assert out.shape == (2, 3, 10, 10)
    kernels = weight * styles[:, None, :, None, None]
    kernels = kernels / kernels.flatten(2).norm(dim=2)[..., None, None, None]
    zeros = torch.zeros(2, 4, 9, 9)
    zeros[..., ::2, ::2] = x  # a zero between every two pixels
    expected = torch.cat([F.conv2d(zeros[i : i + 1], kernels[i], padding=2) for i in range(2)])
    torch.testing.assert_close(out, blur(expected, padding=1, gain=4.0), rtol=1e-4, atol=1e-5)


def test_the_bias_and_gain_ride_on_the_demodulation_and_the_synthesis_layer_is_the_papers():
    from genlab.models.gan.stylegan import SynthesisLayer

    weight, styles, x, bias = torch.randn(3, 4, 3, 3), torch.rand(2, 4) + 0.5, torch.randn(2, 4, 5, 5), torch.randn(3)
    for demodulate in (True, False):
        for up in (False, True):
            plain = modulated_conv2d(x, weight, styles, demodulate, up)
            torch.testing.assert_close(modulated_conv2d(x, weight, styles, demodulate, up, bias, 1.5),
                                       1.5 * (plain + bias[:, None, None]))
    layer = SynthesisLayer(4, 3, w_dim=2, up=True)
    with torch.no_grad():
        layer.noise_strength.uniform_(0.5, 1.0)
        layer.bias.normal_()
    w = torch.randn(2, 2)
    out = layer(x, w, gen(5))
    noise = torch.randn((2, 1, 10, 10), generator=gen(5))
    y = layer.conv(x, w) + noise * layer.noise_strength[:, None, None] + layer.bias[:, None, None]
    torch.testing.assert_close(out, F.leaky_relu(y, 0.2) * 2**0.5)
    out.sum().backward()  # the in-place steps keep what autograd needs
    assert layer.noise_strength.grad is not None and layer.conv.weight.grad.abs().sum() > 0


def test_minibatch_stddev_appends_the_groups_mean_std():
    x = torch.randn(8, 3, 2, 2)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], x)
    group = x[[1, 3, 5, 7]]  # with 8 items in groups of 4, item i is in group i % 2
    expected = group.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
    torch.testing.assert_close(out[3, 3], torch.full((2, 2), float(expected)))
    same = MinibatchStdDev(group_size=4)(x[:1].expand(6, -1, -1, -1))  # 6 items: groups of 3
    assert same[:, 3].max() < 1e-3  # identical items: no spread to see


# ------------------------------------------------------------------ the generator
def test_truncation_zero_gives_every_item_the_mean_style():
    m = model()
    G = m.generator
    G.w_avg.copy_(torch.randn(G.w_avg.shape))
    seen = []
    synthesize = G.synthesize
    G.synthesize = lambda ws, generator: seen.append(ws) or synthesize(ws, generator)
    with torch.no_grad():
        for layer in G.convs:
            layer.noise_strength.fill_(0.5)
    noisy = m.sample(4, generator=gen(0), truncation=0.0)
    assert torch.equal(seen[-1], G.w_avg.expand(4, G.num_ws, -1))
    assert not torch.allclose(noisy[0], noisy[1])  # only the per-pixel noise tells them apart
    with torch.no_grad():
        for layer in G.convs:
            layer.noise_strength.zero_()
    quiet = m.sample(4, generator=gen(0), truncation=0.0)
    assert torch.equal(quiet, quiet[:1].expand_as(quiet))
    assert not torch.equal(m.sample(4, generator=gen(0)), quiet)


def test_truncation_one_is_untruncated_and_between_interpolates():
    m = model()
    G = m.generator
    G.w_avg.copy_(torch.randn(G.w_avg.shape))
    assert torch.equal(m.sample(5, generator=gen(3), truncation=1.0), m.sample(5, generator=gen(3)))
    assert not torch.equal(m.sample(5, generator=gen(3), truncation=0.7), m.sample(5, generator=gen(3)))
    ws = torch.randn(2, G.num_ws, G.w_avg.numel())
    torch.testing.assert_close(G.truncate(ws, 0.7), G.w_avg + 0.7 * (ws - G.w_avg))
    assert m.sample_options() == {"truncation": 1.0} and m.sample_options(truncation=0.7) == {"truncation": 0.7}
    with pytest.raises(ValueError, match="no sampling option steps"):
        m.sample(2, generator=gen(0), steps=4)


def test_style_mixing_changes_the_image_from_its_crossover_layer_on():
    G = model().generator
    with torch.no_grad():
        w1, w2 = G.map(torch.randn(3, 8, generator=gen(0))), G.map(torch.randn(3, 8, generator=gen(1)))
        ws = w1[:, None].expand(-1, G.num_ws, -1)
        image = G.synthesize(ws, gen(5))
        for layer in range(1, G.num_ws):
            mixed = G.mix(ws, w2, torch.full((3,), layer))
            assert torch.equal(mixed[:, :layer], ws[:, :layer])
            assert torch.equal(mixed[:, layer:], w2[:, None].expand(-1, G.num_ws - layer, -1))
            assert not torch.allclose(G.synthesize(mixed, gen(5)), image), f"mixing from layer {layer} changed nothing"
        beyond = G.mix(ws, w2, torch.full((3,), G.num_ws))
        assert torch.equal(G.synthesize(beyond, gen(5)), image)
    # in training 0.9 of the items mix, each from a layer in [1, num_ws)
    cut = G.crossover(4000, 0.9, gen(0), torch.device("cpu"))
    assert cut.min() == 1 and set(cut.unique().tolist()) == set(range(1, G.num_ws + 1))
    assert 0.88 < (cut < G.num_ws).float().mean() < 0.92


def test_training_mixes_styles_and_tracks_w_avg_only_in_the_discriminator_phase():
    m = model().train()
    x = load_data("digits").x_train[:16]
    calls = []
    forward = m.generator.forward
    m.generator.forward = lambda *a, **k: calls.append(k) or forward(*a, **k)
    before = m.generator.w_avg.clone()
    m.training_loss({"x": x}, "generator", 0, gen(0))
    assert calls[-1]["mixing"] == 0.9 and not calls[-1]["track"] and torch.equal(m.generator.w_avg, before)
    m.training_loss({"x": x}, "discriminator", 0, gen(0))
    assert calls[-1]["mixing"] == 0.9 and calls[-1]["track"] and not torch.equal(m.generator.w_avg, before)
    m.sample(2, generator=gen(0))
    assert calls[-1]["mixing"] == 0.0 and not calls[-1]["track"]


def test_tanh_output_keeps_images_in_the_data_range_and_linear_is_the_papers_unbounded_image():
    z = torch.randn(64, 8, generator=gen(0))
    squashed = model().generator(z, gen(1))
    unbounded = model(output="linear").generator(z, gen(1))  # same seed: the same weights
    assert squashed.abs().max() < 1 and unbounded.abs().max() > 1
    torch.testing.assert_close(squashed, torch.tanh(unbounded))


def test_runs_saved_before_the_output_option_keep_their_unbounded_image():
    assert StyleGAN.migrate_config({"latent_dim": 8})["output"] == "linear"
    assert StyleGAN.migrate_config({"output": "tanh"})["output"] == "tanh"


# ------------------------------------------------------------------ optimisation
def test_the_mapping_network_learns_at_a_hundredth_of_the_rate():
    m = model()
    groups = m.generator_groups()
    mapping = {id(p) for p in m.generator.mapping.parameters()}
    assert groups[0].lr_scale == 0.01 and {id(p) for p in groups[0].params} == mapping
    assert groups[1].lr_scale == 1.0 and not mapping & {id(p) for p in groups[1].params}
    spec = next(s for s in m.optimizers() if s.name == "generator")
    built = build(spec, Defaults(lr=2e-3, betas=(0.0, 0.99), weight_decay=0.0, warmup_steps=0, grad_clip=0.0))
    assert [g["lr"] for g in built.optimizer.param_groups] == pytest.approx([2e-5, 2e-3])


def test_lazy_r1_runs_every_r1_every_steps(train_tiny):
    phases = {p.name: p for p in model().phases()}
    assert [s for s in range(40) if phases["r1"].active(s)] == [0, 16, 32]
    run = train_tiny("stylegan", steps=17, batch_size=8)
    state = torch.load(ckpt.resolve(run.checkpoints) / "state.pt", weights_only=True)
    steps = {name: int(opt["state"][0]["step"]) for name, opt in state["optimizers"].items()}
    assert steps == {"discriminator": 17 + 2, "generator": 17}  # R1 at steps 0 and 16 steps D once more
    rows = [r for r in run.metrics() if "r1" in r]
    assert len(rows) == 2 and rows[0]["r1"] > 0
    # w_avg moved in training and the EMA generator carries the live one's
    ema, live = run.load_model(ema=True), run.load_model(ema=False)
    assert torch.equal(ema.generator.w_avg, live.generator.w_avg) and live.generator.w_avg.abs().sum() > 0


def test_trained_run_samples_through_the_cli_with_truncation(tmp_path, train_tiny):
    from typer.testing import CliRunner

    from genlab.cli import app

    run = train_tiny("stylegan", steps=3)
    samples = run.sample(6, seed=0)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    images = {}
    for name, args in (("plain", []), ("psi0", ["--truncation", "0"])):
        out = tmp_path / f"{name}.npz"
        result = CliRunner().invoke(app, ["sample", str(run.path), "-n", "8", "--out", str(out), *args])
        assert result.exit_code == 0, result.output
        images[name] = np.load(out)["images"].astype(float)
    # psi 0: one style for all, so the items differ only through the (still nearly silent) noise
    assert images["psi0"].std(axis=0).mean() < 0.1 * images["plain"].std(axis=0).mean()
