"""genlab.models.autoregressive.wavenet and genlab.nn.causal_conv: causality, the receptive field, fast generation
against recomputation, the exact likelihood against a brute-force sum, quantisers, forecasts and audio runs."""

from __future__ import annotations

import itertools
import math
import wave
from pathlib import Path

import pytest
import torch

from genlab.data.base import DataSpec
from genlab.errors import ArgumentError
from genlab.models.autoregressive.wavenet import (WaveNet, WaveNetConfig, mu_law_decode, mu_law_encode,
                                                  uniform_decode, uniform_encode)
from genlab.nn.causal_conv import CausalConv1d

SPEECH = Path(__file__).parent / "fixtures" / "speech.wav"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny(kind: str = "series", channels: int = 1, window: int = 64, **changes) -> WaveNet:
    torch.manual_seed(0)
    config = WaveNetConfig(**{"residual_channels": 8, "dilation_channels": 8, "skip_channels": 16, "bins": 16, **changes})
    return WaveNet(config, DataSpec(kind, (channels, window), extras={"sample_rate": 8000} if kind == "audio" else {})).eval()


# ------------------------------------------------------------------ causality and the receptive field
@pytest.mark.parametrize("inputs", ["embedding", "value"])
def test_outputs_never_see_later_inputs_and_see_the_whole_receptive_field(inputs):
    model = tiny(layers=4, inputs=inputs)
    rf = model.receptive_field
    assert model.dilations == [1, 2, 4, 8] and rf == 1 + 1 + 1 + 2 + 4 + 8  # kernel 2: one past step per dilation
    ids = torch.randint(0, 16, (1, 1, 48), generator=gen(0))
    base = model(ids)
    t = 40
    for j in range(ids.shape[-1]):
        changed = ids.clone()
        changed[..., j] = (changed[..., j] + 5) % 16
        moved = (model(changed)[..., t] - base[..., t]).abs().max() > 0
        assert bool(moved) == (t - rf < j <= t), f"output {t} and input {j} (receptive field {rf})"


def test_training_targets_are_shifted_so_position_t_predicts_from_before_t():
    model = tiny(layers=3)
    ids = torch.randint(0, 16, (2, 1, 20), generator=gen(1))
    logits = model(model._shifted(ids))
    later = ids.clone()
    later[..., 10:] = (later[..., 10:] + 1) % 16
    after = model(model._shifted(later))
    assert torch.equal(logits[..., :11], after[..., :11])  # the logits of x_10 see x_0..x_9 only
    assert not torch.equal(logits[..., 11], after[..., 11])


# ------------------------------------------------------------------ fast generation
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_cached_step_equals_the_full_convolution(kernel_size):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 4, kernel_size, dilation=2)
    x = torch.randn(2, 3, 15)
    full = conv(x)
    cache = conv.new_cache(2, x)
    steps = torch.stack([conv.step(x[..., t], cache) for t in range(15)], -1)
    assert torch.allclose(steps, full, atol=1e-6)
    primed = conv.cache_from(x[..., :9])  # a cache after a full pass, then steps
    rest = torch.stack([conv.step(x[..., t], primed) for t in range(9, 15)], -1)
    assert torch.allclose(rest, full[..., 9:], atol=1e-6)


@pytest.mark.parametrize("inputs", ["embedding", "value"])
@pytest.mark.parametrize("context_length", [0, 5, 60])  # none, shorter and longer than the receptive field
def test_fast_generation_equals_recomputing_the_receptive_field(context_length, inputs):
    model = tiny(layers=4, channels=2, inputs=inputs)
    context = torch.randint(0, 16, (3, 2, context_length), generator=gen(2)) if context_length else None
    fast = model.generate(context, 40, 3, gen(3))
    naive = model.generate(context, 40, 3, gen(3), fast=False)
    assert fast.shape == (3, 2, 40) and torch.equal(fast, naive)
    assert not torch.equal(fast, model.generate(context, 40, 3, gen(4)))


def test_fast_step_logits_match_the_full_pass():
    model = tiny(layers=4)
    ids = torch.randint(0, 16, (2, 1, 30), generator=gen(5))
    inputs = model._shifted(ids)
    full = model(inputs)  # (B, C, bins, T)
    caches: list = []
    first = model._trunk(model._embed(inputs[..., :10]), caches)[..., -1]
    steps = [first] + [model._step(model._embed(inputs[..., t]), caches) for t in range(10, 30)]
    assert torch.allclose(torch.stack(steps, -1), full[..., 9:], atol=1e-5)


# ------------------------------------------------------------------ exact likelihood
@pytest.mark.parametrize("inputs", ["embedding", "value"])
@pytest.mark.parametrize("channels, bins, length", [(1, 3, 4), (2, 2, 3)])
@torch.no_grad()
def test_likelihood_sums_to_one_over_every_sequence_and_follows_the_chain_rule(channels, bins, length, inputs):
    model = tiny(channels=channels, window=length, bins=bins, layers=2, inputs=inputs)
    every = torch.tensor(list(itertools.product(range(bins), repeat=channels * length))).view(-1, channels, length)
    log_p = model.log_likelihood(every)
    assert torch.allclose(log_p.double().exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5)
    # brute force: the conditional of each step from the network run on that prefix alone
    for seq in every[:: max(1, len(every) // 7)]:
        total = 0.0
        for t in range(length):
            prefix = torch.cat([torch.full((1, channels, 1), bins), seq[None, :, :t]], -1)
            step = model(prefix)[0, :, :, -1].log_softmax(-1)  # (C, bins)
            total += float(step.gather(1, seq[:, t : t + 1]).sum())
        assert math.isclose(float(model.log_likelihood(seq[None])), total, abs_tol=1e-4)


def test_bits_per_dim_is_the_exact_negative_log_likelihood_per_modelled_sample():
    model = tiny(window=32, layers=3)
    x = torch.randn(3, 1, 32)
    ids = model.quantize(x)
    expected = -model.log_likelihood(ids) / (32 * math.log(2))
    assert torch.allclose(model.bits_per_dim({"x": x}), expected)
    diff = tiny(window=32, layers=3, difference=1)
    assert diff.bits_per_dim({"x": x}).shape == (3,)  # over the 31 modelled differences


# ------------------------------------------------------------------ quantisation
def test_mu_law_is_the_papers_companding_and_round_trips_within_a_bin():
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x, 256)
    assert q.min() == 0 and q.max() == 255 and (q[1:] >= q[:-1]).all()
    f = torch.sign(x) * torch.log1p(255 * x.abs()) / math.log(256)
    assert torch.equal(q, ((f + 1) * 128).long().clamp(0, 255))
    assert torch.equal(mu_law_encode(mu_law_decode(q, 256), 256), q)
    near_zero, far = (mu_law_decode(torch.tensor([128, 129]), 256), mu_law_decode(torch.tensor([254, 255]), 256))
    assert (near_zero[1] - near_zero[0]) < 0.01 * (far[1] - far[0])  # fine bins where audio lives
    assert torch.equal(uniform_encode(uniform_decode(torch.arange(16), 16), 16), torch.arange(16))


def test_series_values_are_clipped_to_clip_standard_deviations():
    model = tiny(clip=2.0)
    assert model.quantization == "uniform" and tiny("audio").quantization == "mu-law"
    assert tiny(difference=1).quantization == "mu-law"  # increments sit near zero, where mu-law's bins are fine
    assert (model.inputs, tiny("audio").inputs) == ("value", "embedding")
    q = model.quantize(torch.tensor([-9.0, -2.0, 0.0, 2.0, 9.0]))
    assert q.tolist()[0] == q.tolist()[1] == 0 and q.tolist()[-1] == q.tolist()[-2] == 15
    assert torch.allclose(model.dequantize(model.quantize(torch.tensor([0.3]))), torch.tensor([0.3]), atol=2 / 16)


def test_differences_are_summed_back_onto_the_history():
    model = tiny(difference=1)
    history = torch.arange(10.0).view(1, 10)
    assert torch.equal(model._integrate(history[None], torch.ones(1, 1, 3)), torch.tensor([[[10.0, 11.0, 12.0]]]))
    second = tiny(difference=2)
    squares = (torch.arange(6.0) ** 2).view(1, 1, 6)  # second differences are 2
    assert torch.equal(second._integrate(squares, torch.full((1, 1, 2), 2.0)), torch.tensor([[[36.0, 49.0]]]))
    paths = model.forecast_paths(history / 10, 5, 4, gen(0))
    assert paths.shape == (4, 1, 5) and torch.isfinite(paths).all()


def test_bad_settings_say_what_to_change():
    with pytest.raises(ArgumentError, match="difference applies to numeric series"):
        tiny("audio", difference=1)
    with pytest.raises(ArgumentError, match="kernel_size >= 2"):
        tiny(kernel_size=1)
    with pytest.raises(ArgumentError, match="temperature must be positive"):
        tiny().sample(2, generator=gen(0), temperature=0.0)
    with pytest.raises(ArgumentError, match="takes temperature and fast"):
        tiny().sample(2, generator=gen(0), steps=3)


def test_sampling_continues_a_context_condition():
    model = tiny(layers=3)
    context = torch.randn(2, 1, 30)
    out = model.sample(2, {"context": context}, generator=gen(0))
    assert out.shape == (2, 1, 64)
    assert torch.equal(out, model.forecast_paths(context, 64, 2, gen(0)))


def test_default_layers_fit_half_the_window():
    assert tiny(window=64).receptive_field <= 32
    assert tiny(window=4096).dilations == [2**i for i in range(10)]  # the paper's 1..512 block


# ------------------------------------------------------------------ learning and runs
@pytest.mark.slow
def test_forecast_beats_the_naive_forecast_on_a_noisy_sine(tmp_path, train_tiny):
    from genlab.apps.forecast import forecast

    t = torch.arange(600, dtype=torch.float64)
    values = torch.sin(2 * math.pi * t / 12) + 0.1 * torch.randn(600, generator=gen(0), dtype=torch.float64)
    (tmp_path / "sine.csv").write_text("value\n" + "\n".join(f"{v:.5f}" for v in values.tolist()))
    run = train_tiny("wavenet", steps=250, data=f"csv:{tmp_path / 'sine.csv'}", batch_size=32, lr=5e-3,
                     model_config={"residual_channels": 16, "dilation_channels": 16, "skip_channels": 32, "bins": 64},
                     data_options={"window": 48})
    result = forecast(run, horizon=12, n_paths=50, seed=0, season=12)
    scores = result.scores
    assert scores["wavenet"]["MASE"] < 0.5 * scores["naive"]["MASE"], result.table()


@pytest.mark.slow
def test_genlab_sample_on_an_audio_run_writes_a_wav(tmp_path, train_tiny, genlab_cli):
    run = train_tiny("wavenet", steps=2, data=f"wav:{SPEECH}", data_options={"window": 256})
    assert run.spec.kind == "audio" and run.spec.extras["sample_rate"] == 8000
    done = genlab_cli("sample", run.path, "-n", "2", "--out", "speech.wav", "--seed", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    with wave.open(str(tmp_path / "speech.wav")) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        assert w.getnframes() == 2 * 256 + int(0.25 * 8000)  # two windows and the gap between them


def test_speech_fixture_is_a_few_seconds_of_8khz_mono():
    with wave.open(str(SPEECH)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        assert 2 <= w.getnframes() / 8000 <= 8
    assert SPEECH.stat().st_size < 100_000


def test_hl_gauss_targets_are_distributions_centred_on_the_value():
    model = tiny(bins=32, clip=4.0)
    x = torch.tensor([[[-9.0, -1.1, 0.3, 2.1]]])  # (B, C, T), no value on a bin edge
    soft = model._gaussian_targets(x, 2.0)  # (B, bins, C, T)
    assert soft.shape == (1, 32, 1, 4) and torch.allclose(soft.sum(1), torch.ones(1, 1, 4))
    assert torch.equal(soft.argmax(1), model.quantize(x))
    assert float(soft[0, 0, 0, 0]) > 0.5  # a clipped value: the tail beyond the end bin stays in it


def test_training_loss_draws_its_input_noise_from_the_generator():
    model = tiny(input_noise=0.3).train()
    batch = {"x": torch.randn(4, 1, 64, generator=gen(0))}
    a, b = (model.training_loss(batch, "model", 0, gen(s)).loss for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, model.training_loss(batch, "model", 0, gen(2)).loss)
    model.eval()  # no noise and one-hot targets: the exact negative log-likelihood per sample
    exact = model.training_loss(batch, "model", 0, gen(1)).loss
    assert torch.allclose(exact, model.bits_per_dim(batch).mean() * math.log(2), atol=1e-5)
