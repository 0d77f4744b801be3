"""The diffusion family: DDPM's prediction types and samplers, flow matching, guidance, on trained models."""

from __future__ import annotations

import functools

import pytest
import torch

from genlab.data.toy import eight_gaussians_centers
from genlab.errors import ArgumentError

from conftest import TINY_TRAIN_OPTIONS, tiny_config

DDPM_SAMPLERS = ["ddpm", "ddim", "euler", "heun", "dpm++"]
FLOW_SAMPLERS = ["euler", "heun", "dpm++"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def trained_on_gaussians(model: str, prediction: str | None = None):
    """A tiny model trained for a few seconds on 8gaussians (its MLP path), shared between tests."""
    import tempfile

    import genlab

    options = {**TINY_TRAIN_OPTIONS, "batch_size": 256, "warmup_steps": 20, "lr": 3e-3, "log_every": 50}
    with tempfile.TemporaryDirectory() as tmp:
        run = genlab.train(model, "8gaussians", out=f"{tmp}/run", steps=400, progress=False,
                           model_config=tiny_config(model, mlp_hidden=64, **({"prediction": prediction} if prediction else {})),
                           **options)
        return run.load_model()


def distance_to_nearest_mode(x: torch.Tensor) -> float:
    centers = torch.as_tensor(eight_gaussians_centers(), dtype=x.dtype)
    return torch.cdist(x, centers).min(1).values.mean().item()


def network_calls_counted(model, **options) -> int:
    calls = []
    handle = model.net.register_forward_hook(lambda *args: calls.append(args[1][0].shape[0]))
    try:
        model.sample(4, generator=gen(0), **options)
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_every_prediction_type_trains_and_every_sampler_beats_noise(prediction):
    model = trained_on_gaussians("ddpm", None if prediction == "epsilon" else prediction)
    noise = distance_to_nearest_mode(torch.randn(2000, 2, generator=gen(1)) * 2)
    for sampler in DDPM_SAMPLERS:
        steps = None if sampler == "ddpm" else 10
        x = model.sample(2000, generator=gen(2), sampler=sampler, steps=steps)
        assert x.shape == (2000, 2) and torch.isfinite(x).all()
        assert distance_to_nearest_mode(x) < 0.5 * noise, (prediction, sampler)


def test_flow_matching_trains_and_every_sampler_beats_noise():
    model = trained_on_gaussians("flow-matching")
    noise = distance_to_nearest_mode(torch.randn(2000, 2, generator=gen(1)) * 2)
    for sampler in FLOW_SAMPLERS:
        x = model.sample(2000, generator=gen(2), sampler=sampler, steps=8)
        assert distance_to_nearest_mode(x) < 0.5 * noise, sampler


@pytest.mark.parametrize("model_name, sampler", [("ddpm", s) for s in DDPM_SAMPLERS] + [("flow-matching", s) for s in FLOW_SAMPLERS])
def test_samplers_on_images_give_the_data_range_count_their_calls_and_repeat_with_a_seed(model_name, sampler):
    from test_models import build

    model, ds = build(model_name, "digits")
    model.eval()
    options = {"sampler": sampler} if sampler == "ddpm" else {"sampler": sampler, "steps": 3}
    x = model.sample(4, generator=gen(0), **options)
    assert x.shape == (4, *ds.shape) and x.min() >= -1 and x.max() <= 1
    assert network_calls_counted(model, **options) == model.network_calls(**options)
    if sampler != "ddpm":  # the ODE samplers and DDIM (eta 0) draw only the starting noise
        assert torch.equal(x, model.sample(4, generator=gen(0), **options))


@pytest.mark.parametrize("model_name", ["ddpm", "flow-matching"])
def test_guidance_scale_zero_samples_the_unconditional_model(model_name, train_tiny):
    # two steps, so that no zero-initialised layer still blocks the label embedding
    model = train_tiny(model_name, steps=2, condition="label").load_model()
    labels = {"label": torch.arange(4)}
    options = {"sampler": "euler", "steps": 4}
    unconditional = model.sample(4, generator=gen(0), **options)
    at_zero = model.sample(4, labels, generator=gen(0), guidance_scale=0.0, **options)
    guided = model.sample(4, labels, generator=gen(0), guidance_scale=3.0, **options)
    assert torch.allclose(unconditional, at_zero, atol=1e-5)
    assert not torch.allclose(guided, at_zero, atol=1e-4)
    assert model.network_calls(guidance_scale=3.0, **options) == 8


def test_unknown_samplers_and_steps_are_refused_by_name():
    from test_models import build

    ddpm, _ = build("ddpm", "8gaussians")
    with pytest.raises(ArgumentError, match=r"unknown sampler 'plms'; choose from ddpm, ddim, euler, heun, dpm\+\+"):
        ddpm.sample(2, sampler="plms", generator=gen(0))
    flow, _ = build("flow-matching", "8gaussians")
    with pytest.raises(ArgumentError, match="unknown sampler 'ddpm'; choose from euler, heun, dpm"):
        flow.sample(2, sampler="ddpm", generator=gen(0))
    with pytest.raises(ArgumentError, match="at least 1"):
        flow.sample(2, steps=0, generator=gen(0))


def test_ddpm_sampler_defaults():
    from test_models import build

    model, _ = build("ddpm", "8gaussians", sampling_steps=None)
    assert model.sample_options() == {"sampler": "dpm++", "steps": 10}  # a fast sampler, not the 1000-step chain
    assert model.network_calls() == 10
    assert model.sample_options(sampler="ddim") == {"sampler": "ddim", "steps": 50}
    assert model.network_calls(sampler="heun") == 19
    assert model.sample_options(sampler="ddpm") == {"sampler": "ddpm", "steps": 50}  # all num_timesteps


# ------------------------------------------------------------------ editing
def _top_half(n: int) -> torch.Tensor:
    mask = torch.zeros(n, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :] = True
    return mask


@pytest.mark.parametrize("model_name", ["ddpm", "flow-matching"])
def test_inpainting_keeps_the_known_pixels_and_fills_the_rest(model_name):
    from test_models import build, dataset

    model, _ = build(model_name, "digits")
    model.eval()
    source, mask = dataset("digits").x_val[:3], _top_half(3)
    out = model.sample(3, {"source": source, "mask": mask}, generator=gen(0), steps=4, resample=2)
    assert out.shape == source.shape
    known = mask.expand_as(source)
    assert torch.allclose(out[known], source[known], atol=1e-6)
    assert not torch.allclose(out[~known], source[~known], atol=0.05)
    assert torch.equal(out, model.sample(3, {"source": source, "mask": mask}, generator=gen(0), steps=4, resample=2))
    with pytest.raises(ArgumentError, match="needs the image it masks"):
        model.sample(3, {"mask": mask}, generator=gen(0))


@pytest.mark.parametrize("model_name", ["ddpm", "flow-matching"])
def test_img2img_strength_sets_how_far_the_result_moves_from_the_input(model_name):
    from test_models import dataset

    model = trained_on_gaussians(model_name)
    source = dataset("8gaussians").x_val[:500]
    moved = {}
    for strength in (0.05, 0.5, 1.0):
        out = model.sample(500, {"source": source}, generator=gen(0), sampler="euler", steps=20, strength=strength)
        moved[strength] = (out - source).norm(dim=1).mean().item()
    assert moved[0.05] < moved[0.5] < moved[1.0], moved
    assert moved[0.05] < 0.3 and moved[1.0] > 0.8, moved
    with pytest.raises(ArgumentError, match="strength must lie in"):
        model.sample(2, {"source": source[:2]}, generator=gen(0), strength=1.5)


def test_inpainting_through_the_cli(tmp_path, genlab_cli):
    from PIL import Image

    from conftest import tiny_set_args

    trained = genlab_cli("train", "ddpm", "--data", "digits", "--steps", "2", "--out", tmp_path / "run",
                         *tiny_set_args("ddpm"), "--batch-size", "8", "--sample-every", "0", "--quiet")
    assert trained.returncode == 0, trained.stderr
    image = torch.linspace(-1, 1, 64).reshape(8, 8)
    Image.fromarray(((image + 1) * 127.5).round().byte().numpy()).save(tmp_path / "in.png")
    Image.fromarray(_top_half(1)[0, 0].byte().numpy() * 255).save(tmp_path / "mask.png")
    done = genlab_cli("inpaint", tmp_path / "run", "--input", tmp_path / "in.png", "--mask", tmp_path / "mask.png",
                      "--steps", "3", "--resample", "2", "--out", tmp_path / "filled.npz")
    assert done.returncode == 0, done.stderr
    from genlab.imageio import load_samples

    filled, _ = load_samples(tmp_path / "filled.npz")
    known = _top_half(1).expand_as(filled)
    assert filled.shape == (1, 1, 8, 8)
    assert torch.allclose(filled[known], image.reshape(1, 1, 8, 8)[known], atol=1 / 127)  # 8-bit files
    done = genlab_cli("img2img", tmp_path / "run", "--input", tmp_path / "in.png", "--strength", "0.3",
                      "--steps", "4", "--out", tmp_path / "edited.png")
    assert done.returncode == 0 and (tmp_path / "edited.png").exists(), done.stderr


# ------------------------------------------------------------------ captions
@pytest.mark.parametrize("model_name", ["ddpm", "flow-matching"])
def test_a_caption_conditioned_model_trains_and_samples_from_a_prompt(model_name, train_tiny):
    from genlab.data.captions import tokenizer

    run = train_tiny(model_name, steps=3, condition="text")
    model = run.load_model()
    assert model.text_encoder is not None and "text" in run.conditions
    ids = torch.tensor(tokenizer().encode("a thin upright three"))[None].repeat(4, 1)
    prompt = {"text": ids, "text_mask": torch.ones_like(ids, dtype=torch.bool)}
    options = {"sampler": "euler", "steps": 3}
    x = model.sample(4, prompt, generator=gen(0), **options)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()
    guided = model.sample(4, prompt, generator=gen(0), guidance_scale=3.0, **options)
    unconditional = model.sample(4, generator=gen(0), **options)
    at_zero = model.sample(4, prompt, generator=gen(0), guidance_scale=0.0, **options)
    assert torch.allclose(unconditional, at_zero, atol=1e-5) and guided.shape == x.shape


def test_text_needs_captioned_images():
    from test_models import build

    with pytest.raises(ArgumentError, match="needs captioned images"):
        build("ddpm", "8gaussians", conditions=("text",))


def test_prompting_through_the_cli(tmp_path, genlab_cli):
    from conftest import tiny_set_args

    trained = genlab_cli("train", "flow-matching", "--data", "digits", "--condition", "text", "--steps", "2",
                         "--out", tmp_path / "run", *tiny_set_args("flow-matching"), "--batch-size", "8",
                         "--sample-every", "0", "--quiet")
    assert trained.returncode == 0, trained.stderr
    done = genlab_cli("sample", tmp_path / "run", "--prompt", "a thin upright three", "-n", "4", "--guidance", "2",
                      "--out", tmp_path / "threes.png")
    assert done.returncode == 0 and (tmp_path / "threes.png").exists(), done.stderr
    refused = genlab_cli("sample", tmp_path / "run", "--prompt", "a purple three", "--out", tmp_path / "x.png")
    assert refused.returncode == 2 and "purple" in refused.stderr and "Traceback" not in refused.stderr


# ------------------------------------------------------------------ super-resolution
def test_a_super_resolution_run_upscales_consistently_with_its_input(train_tiny, tmp_path, genlab_cli):
    from PIL import Image

    from test_models import dataset

    # 500 steps: at 300 an AVX2-only host landed on the bound (0.177 against 0.177); at 500 it gives 0.116
    run = train_tiny("ddpm", steps=500, condition="low_res", batch_size=64, lr=3e-3,
                     model_config={**tiny_config("ddpm"), "low_res_factor": 2})
    model = run.load_model()
    assert model.low_res_size == 4
    real = dataset("digits").x_val[:64]
    small = torch.nn.functional.avg_pool2d(real, 2)  # (64, 1, 4, 4)
    up = model.sample(64, {"low_res": small}, generator=gen(0), sampler="euler", steps=10)
    assert up.shape == real.shape
    error = (model.shrink(up) - small).abs().mean()
    unrelated = (small.roll(1, 0) - small).abs().mean()  # another digit's low-resolution image
    assert error < 0.5 * unrelated, (error, unrelated)
    with pytest.raises(ArgumentError, match="this run upscales"):
        model.sample(2, generator=gen(0))
    Image.fromarray(((small[0, 0] + 1) * 127.5).round().byte().numpy()).save(tmp_path / "small.png")
    done = genlab_cli("upscale", run.path, "--input", tmp_path / "small.png", "--sampler", "euler", "--steps", "4", "--out", tmp_path / "up.npz")
    assert done.returncode == 0, done.stderr
    from genlab.imageio import load_samples

    assert load_samples(tmp_path / "up.npz")[0].shape == (1, 1, 8, 8)


def test_a_super_resolution_run_draws_previews_and_evaluates_from_held_out_images(train_tiny):
    import genlab

    # previews and evaluation upscale the validation images shrunk: no user input is needed for either
    run = train_tiny("ddpm", steps=3, condition="low_res", sample_every=3)
    assert list((run.path / "samples").glob("step-00000003.*"))
    entry = genlab.evaluate(run, n=40, sampler="euler", steps=2, likelihood=False, memorization=False,
                            reference_size=100, kid_subset_size=20, features="train", write=False)
    assert entry["scores"]["fid"] > 0


# ------------------------------------------------------------------ latent diffusion
def test_latent_diffusion_round_trips_through_its_autoencoder_and_samples_images(train_tiny):
    from test_models import dataset

    run = train_tiny("latent-diffusion", steps=3)
    model = run.load_model()
    assert model.diffusion_shape == (2, 4, 4) and run.references["autoencoder"]["model"] == "autoencoder"
    x = dataset("digits").x_val[:4]
    z = model.encode(x)
    assert z.shape == (4, 2, 4, 4) and model.decode(z).shape == x.shape
    samples = model.sample(4, generator=gen(0), steps=3)
    assert samples.shape == (4, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    mask = _top_half(4)
    filled = model.sample(4, {"source": x, "mask": mask}, generator=gen(0), steps=2, resample=1)
    known = mask.expand_as(x)
    assert torch.allclose(filled[known], x[known])
    assert not any(p is q for p in model.parameters() for q in model.referenced("autoencoder").parameters())


def test_latent_diffusion_refuses_a_changed_or_unfit_autoencoder(train_tiny, tmp_path):
    from genlab.errors import CheckpointError
    from genlab.runs import Run

    autoencoder = train_tiny("autoencoder", steps=2, out=tmp_path / "ae")
    run = train_tiny("latent-diffusion", steps=2, model_config=tiny_config("latent-diffusion", autoencoder=str(autoencoder.path)))
    step = run.references["autoencoder"]["checkpoint"]
    weights = autoencoder.path / "checkpoints" / step / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="weights changed since"):
        Run(run.path).load_model()
    other = train_tiny("autoencoder", steps=1, out=tmp_path / "ae3", model_config=tiny_config("autoencoder", latent_channels=3))
    with pytest.raises(ArgumentError, match=r"latents are \(3, 4, 4\), this model expects \(2, 4, 4\)"):
        train_tiny("latent-diffusion", steps=1, model_config=tiny_config("latent-diffusion", autoencoder=str(other.path)))


# ------------------------------------------------------------------ classifier guidance
@functools.lru_cache(maxsize=None)
def trained_noise_classifier():
    """A tiny noise classifier trained briefly on digits, shared between tests."""
    import tempfile

    import genlab

    options = {**TINY_TRAIN_OPTIONS, "batch_size": 64, "lr": 3e-3, "log_every": 50}
    with tempfile.TemporaryDirectory() as tmp:
        run = genlab.train("noise-classifier", "digits", out=f"{tmp}/run", steps=300, progress=False,
                           model_config=tiny_config("noise-classifier"), **options)
        return run.load_model()


def test_the_noise_classifier_reads_clean_digits_and_is_unsure_under_heavy_noise():
    from genlab.data import load_dataset

    classifier = trained_noise_classifier()
    ds = load_dataset("digits")
    x, y = ds.x_val[:300], ds.y_val[:300]
    clean, noisy = classifier.accuracy(x, y, 0.01, gen(0)), classifier.accuracy(x, y, 50.0, gen(0))
    assert clean > 0.6, f"accuracy on nearly clean digits {clean:.2f}"
    assert noisy < 0.3, f"accuracy at sigma 50 {noisy:.2f}: the image is gone, so should the accuracy be"


def test_classifier_guidance_steers_samples_towards_the_class_and_is_off_at_scale_zero(train_tiny):
    classifier = trained_noise_classifier()
    model = train_tiny("ddpm", steps=2).load_model()  # unconditional: the classifier alone picks the class
    labels = {"label": torch.full((16,), 3)}
    options = {"sampler": "euler", "steps": 6}
    unguided = model.sample(16, generator=gen(0), **options)
    at_zero = model.sample(16, labels, generator=gen(0), classifier=classifier, guidance_scale=0.0, **options)
    guided = model.sample(16, labels, generator=gen(0), classifier=classifier, guidance_scale=20.0, **options)
    assert torch.allclose(unguided, at_zero, atol=1e-6)

    def share_read_as_three(x):
        return float((classifier(x, torch.full((16,), 0.01)).argmax(1) == 3).float().mean())

    assert share_read_as_three(guided) > share_read_as_three(unguided) + 0.3
    assert guided.min() >= -1 and guided.max() <= 1


def test_classifier_guidance_needs_a_class_and_a_matching_classifier(train_tiny):
    from genlab.registry import get_model_class
    from test_models import build

    classifier = trained_noise_classifier()
    model = train_tiny("ddpm", steps=1).load_model()
    with pytest.raises(ArgumentError, match="needs the class to steer towards"):
        model.sample(2, generator=gen(0), classifier=classifier)
    other, _ = build("ddpm", "8gaussians")
    with pytest.raises(ArgumentError, match="train the classifier on this run's data"):
        other.sample(2, {"label": torch.tensor([0, 1])}, generator=gen(0), classifier=classifier)
    assert not get_model_class("noise-classifier").can_sample
    with pytest.raises(ArgumentError, match="does not sample: it guides a diffusion run"):
        classifier.sample(2)


def test_classifier_guidance_through_the_cli(tmp_path, genlab_cli):
    common = ["--data", "digits", "--steps", "2", "--batch-size", "16", "--quiet", "--device", "cpu",
              "--set", "base_channels=8"]
    assert genlab_cli("train", "noise-classifier", *common, "--out", "cls").returncode == 0
    assert genlab_cli("train", "ddpm", *common, "--set", "num_timesteps=50", "--out", "ddpm").returncode == 0
    done = genlab_cli("sample", "ddpm", "--classifier", "cls", "--class", "3", "--guidance", "2", "-n", "4",
                      "--sampler", "euler", "--steps", "3", "--out", "three.png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "three.png").exists()
    refused = genlab_cli("sample", "cls", "-n", "4")
    assert refused.returncode != 0 and "does not sample" in refused.stderr and "Traceback" not in refused.stderr
    evaluated = genlab_cli("eval", "ddpm", "--classifier", "cls", "--guidance", "2", "-n", "40", "--sampler", "euler",
                           "--steps", "2", "--no-likelihood", "--no-memorization", "--reference-size", "100",
                           "--kid-subset-size", "20", "--features", "train")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "conditional accuracy" in evaluated.stdout


# ------------------------------------------------------------------ network
def test_attention_in_the_middle_only_drops_the_lowest_levels_self_attention_but_keeps_caption_attention():
    from genlab.nn.attention import SpatialCrossAttention, SpatialSelfAttention
    from test_models import build

    def count(model, kind):
        return sum(isinstance(m, kind) for m in model.net.modules())

    lowest, _ = build("ddpm", attention="lowest-level")
    middle, _ = build("ddpm", attention="middle")
    # digits' UNet has 2 levels: the lowest one's down block, its 2 up blocks, and the middle
    assert count(lowest, SpatialSelfAttention) == 4 and count(middle, SpatialSelfAttention) == 1
    captioned, _ = build("ddpm", conditions=("text",), attention="middle")
    assert count(captioned, SpatialSelfAttention) == 1 and count(captioned, SpatialCrossAttention) == 4
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 500])
    assert middle(x, t).shape == x.shape


def test_runs_saved_before_the_attention_option_keep_their_lowest_level_attention():
    from genlab.registry import get_model_class

    saved = {"base_channels": 32, "channel_mults": [1, 2], "num_res_blocks": 1}
    assert get_model_class("ddpm").migrate_config(dict(saved))["attention"] == "lowest-level"
    assert get_model_class("flow-matching").migrate_config({**saved, "attention": "middle"})["attention"] == "middle"
