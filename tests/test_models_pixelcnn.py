"""genlab.models.autoregressive.pixelcnn and genlab.nn.masked_conv: causality without a blind spot, an
exact likelihood, sampling and completion, and `genlab complete` end to end."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlab.batch import LABEL, MASK, SOURCE
from genlab.data.base import DataSpec
from genlab.errors import ArgumentError
from genlab.models.autoregressive.pixelcnn import PixelCNN, PixelCNNConfig, level_values, quantise

from conftest import tiny_config


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(shape: tuple[int, ...], num_classes: int = 0, conditions: tuple[str, ...] = (), seed: int = 0,
         **config) -> PixelCNN:
    """A freshly initialised PixelCNN for (C, H, W) images; small, but wide enough per colour that no
    dead ReLU hides a dependence."""
    torch.manual_seed(seed)
    settings = {"channels": 12, "layers": 4, "first_kernel": 3, "kernel": 3, "head_channels": 24, **config}
    return PixelCNN(PixelCNNConfig(**settings), DataSpec("image", shape, num_classes=num_classes), conditions).eval()


def sharpen(model: PixelCNN, factor: float = 8.0) -> PixelCNN:
    """Scale the last layer so each conditional is far from uniform: a wrong normalisation then shows."""
    with torch.no_grad():
        model.head[1].weight.mul_(factor)
        model.head[1].bias.mul_(factor)
    return model


def raster(shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Every subpixel (i, j, c) of a (C, H, W) image in the order the model generates them."""
    c, h, w = shape
    return [(i, j, k) for i in range(h) for j in range(w) for k in range(c)]


def images_on_levels(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return level_values(torch.randint(0, 256, (n, *shape), generator=gen(seed)))


# ------------------------------------------------------------------ causality, no blind spot
@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 4, 4)])
@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_each_subpixel_depends_on_every_earlier_one_and_no_later_one(shape, output):
    """In float64 the Jacobian is exactly zero where the masks cut and non-zero everywhere before: the
    pixels up and to the right, which a single masked stack never sees (its blind spot), included."""
    model = make(shape, output=output).double()
    x = images_on_levels(1, shape, 0).double()
    order = raster(shape)
    for position, (i, j, c) in enumerate(order):
        xx = x.clone().requires_grad_(True)
        out = model(xx)[0, c, :, i, j]  # (P,) the parameters of subpixel (i, j, c)
        (out * torch.randn(out.shape, generator=gen(position), dtype=out.dtype)).sum().backward()
        grad = xx.grad[0]
        for earlier, (a, b, d) in enumerate(order):
            if earlier < position:
                assert grad[d, a, b] != 0, f"({i}, {j}, {c}) does not see earlier subpixel ({a}, {b}, {d})"
            else:
                assert grad[d, a, b] == 0, f"({i}, {j}, {c}) sees subpixel ({a}, {b}, {d}), which comes later"
    up_right = [(i - 1, j + 1) for i, j in itertools.product(range(1, shape[1]), range(shape[2] - 1))]
    assert up_right  # the blind spot of a single stack: covered by the loop above


def test_changing_later_pixels_leaves_earlier_outputs_unchanged():
    shape = (3, 5, 5)
    model = make(shape)
    x = images_on_levels(2, shape, 1)
    out = model(x)
    for i, j in [(0, 0), (2, 3), (4, 4)]:
        changed = x.clone()
        changed[:, 1:, i, j] = images_on_levels(2, (2,), 2)  # G and B of the pixel itself
        flat = changed.view(2, 3, -1)
        flat[:, :, i * 5 + j + 1 :] = images_on_levels(2, (3, flat.shape[-1] - i * 5 - j - 1), 3)
        after = model(changed)
        assert torch.allclose(after[:, 0, :, i, j], out[:, 0, :, i, j], atol=1e-6)  # red sees neither
        before = after.flatten(3)[..., : i * 5 + j]
        assert torch.allclose(before, out.flatten(3)[..., : i * 5 + j], atol=1e-6)


def test_the_masked_convolutions_keep_their_masked_weights_at_zero():
    from genlab.nn.masked_conv import HorizontalConv, channel_groups

    groups = channel_groups(6, 3)
    assert groups.tolist() == [0, 0, 1, 1, 2, 2]
    a = HorizontalConv(channel_groups(3, 3), groups, 3, "A")
    b = HorizontalConv(groups, groups, 1, "B")
    assert a.weight.shape == (6, 3, 1, 2) and b.weight.shape == (6, 6, 1, 1)
    centre = a.weight[:, :, 0, -1]
    assert (centre[:2] == 0).all() and (centre[2:4, 1:] == 0).all() and (centre[4:, 2] == 0).all()
    assert (centre[4:, :2] != 0).all() and (a.weight[:, :, 0, 0] != 0).all()  # the pixel to the left: all of it
    assert (b.weight[:2, 2:, 0, 0] == 0).all() and (b.weight[4:, :, 0, 0] != 0).all()
    with pytest.raises(ValueError, match="odd"):
        HorizontalConv(groups, groups, 2, "B")


# ------------------------------------------------------------------ exact likelihood
@pytest.mark.parametrize("shape", [(1, 1, 2), (1, 2, 1), (2, 1, 1)])
@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_the_probabilities_of_all_images_sum_to_one(shape, output):
    """Brute force over every 8-bit image of two subpixels (256^2 of them): along a row, down a column,
    and across two colour channels of one pixel. A leak from a later subpixel would break the sum."""
    model = sharpen(make(shape, output=output))
    levels = torch.cartesian_prod(torch.arange(256), torch.arange(256))  # (65536, 2)
    images = level_values(levels).view(-1, *shape)
    total = torch.zeros((), dtype=torch.float64)
    for part in images.split(16384):
        bits = model.bits_per_dim({"x": part})
        assert bits.dtype == torch.float32 and bits.shape == (len(part),)
        total += torch.exp(-bits.double() * 2 * math.log(2)).sum()
    assert abs(total.item() - 1) < 2e-4, total.item()


@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_bits_per_dim_is_the_chain_rule_summed_by_hand(output):
    """Each subpixel's log-probability read off a network call in which every later subpixel is noise."""
    shape = (3, 3, 3)
    model = sharpen(make(shape, output=output), 3.0)
    x = images_on_levels(2, shape, 4)
    total = torch.zeros(2, dtype=torch.float64)
    for position, (i, j, c) in enumerate(raster(shape)):
        noisy = x.clone().permute(0, 2, 3, 1).reshape(2, -1)  # raster order: rows, columns, channels
        noisy[:, position + 1 :] = torch.rand(2, noisy.shape[1] - position - 1, generator=gen(position)) * 2 - 1
        noisy = noisy.view(2, *shape[1:], shape[0]).permute(0, 3, 1, 2)
        with torch.no_grad():
            params = model(noisy)[:, c, :, i, j].double()  # (2, P)
        target = quantise(x[:, c, i, j])
        if output == "softmax":
            total += params.log_softmax(-1).gather(1, target[:, None])[:, 0]
        else:  # one logistic mixture, integrated over the target's bin by its CDF
            logits, means, log_scales = params.chunk(3, dim=-1)
            cdf = lambda v: torch.sigmoid((v - means) / log_scales.clamp(min=-7).exp())
            value = level_values(target).double()[:, None]
            upper = torch.where(value > 0.999, torch.ones_like(value), cdf(value + 1 / 255))
            lower = torch.where(value < -0.999, torch.zeros_like(value), cdf(value - 1 / 255))
            total += torch.logsumexp(torch.log(upper - lower) + logits.log_softmax(-1), dim=-1)
    by_hand = -total / (27 * math.log(2))
    exact = model.bits_per_dim({"x": x}).double()
    assert torch.allclose(exact, by_hand, rtol=1e-4), (exact, by_hand)


def test_bits_per_dim_is_computed_in_float32_under_autocast():
    model = make((1, 6, 6))
    x = images_on_levels(3, (1, 6, 6), 5)
    exact = model.bits_per_dim({"x": x})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.bits_per_dim({"x": x}), exact)
        loss = model.training_loss({"x": x}, "model", 0, gen(0))
    assert loss.loss.dtype == torch.float32
    assert torch.allclose(loss.logs["bits_per_dim"], exact.mean(), rtol=2e-2)  # the bf16 network, close


@pytest.mark.slow
def test_training_on_digits_beats_the_untrained_model(train_tiny):
    from genlab.data import load_dataset
    from genlab.eval.likelihood import held_out_bits_per_dim

    digits = load_dataset("digits")
    config = tiny_config("pixelcnn", channels=16, layers=3)
    run = train_tiny("pixelcnn", steps=60, model_config=config, batch_size=32, lr=3e-3)
    untrained = held_out_bits_per_dim(run.build_model(attach_references=False).eval(), digits.x_val, n=200)
    trained = held_out_bits_per_dim(run.load_model(ema=False), digits.x_val, n=200)
    assert trained["kind"] == "exact"
    assert trained["bits_per_dim"] < 0.6 * untrained["bits_per_dim"], (trained, untrained)


# ------------------------------------------------------------------ sampling and completion
def naive_sample(model: PixelCNN, n: int, generator: torch.Generator) -> torch.Tensor:
    """Ancestral sampling by the book: the whole network on the whole image for every subpixel."""
    x = torch.zeros(n, *model.data_shape, dtype=model.dtype)
    with torch.no_grad():
        for i, j, c in raster(model.data_shape):
            x[:, c, i, j] = model._draw(model(x)[:, c, :, i, j], generator)
    return x.float()


@pytest.mark.parametrize("shape, output, layers", [((1, 7, 6), "softmax", 2), ((1, 7, 6), "logistic", 4),
                                                   ((3, 5, 4), "logistic", 3), ((3, 5, 4), "softmax", 2)])
def test_cached_sampling_draws_what_the_whole_network_would(shape, output, layers):
    model = sharpen(make(shape, output=output, layers=layers, first_kernel=5), 3.0).double()
    assert torch.equal(model.sample(3, generator=gen(1)), naive_sample(model, 3, gen(1)))


def test_sampling_is_reproducible_from_the_seed_and_lands_on_the_256_levels():
    model = make((3, 4, 4))
    a = model.sample(4, generator=gen(0))
    assert a.shape == (4, 3, 4, 4) and a.dtype == torch.float32 and a.min() >= -1 and a.max() <= 1
    assert torch.equal(level_values(quantise(a)), a)
    assert torch.equal(model.sample(4, generator=gen(0)), a)
    assert not torch.equal(model.sample(4, generator=gen(1)), a)
    with pytest.raises(ArgumentError, match="takes no sampler options"):
        model.sample(2, generator=gen(0), steps=10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 6, 6)])
def test_completion_keeps_the_given_pixels_exactly_and_draws_the_rest(shape):
    model = sharpen(make(shape))  # an untrained network is nearly uniform whatever it is given
    source = torch.rand(3, *shape, generator=gen(2)) * 2 - 1  # off the levels: kept as given all the same
    mask = torch.zeros(3, 1, *shape[1:], dtype=torch.bool)
    mask[:, :, : shape[1] // 2] = True
    mask[2, :, -1, -1] = True  # a known pixel after the unknown ones: kept, though nothing before it sees it
    out = model.sample(3, {SOURCE: source, MASK: mask}, generator=gen(0))
    known = mask.expand_as(source)
    assert torch.equal(out[known], source[known])
    assert torch.equal(level_values(quantise(out[~known])), out[~known])
    again = model.complete(source, mask, generator=gen(0))
    assert torch.equal(again, out)
    other = model.complete(source, mask, generator=gen(1))
    assert torch.equal(other[known], source[known]) and not torch.equal(other[~known], out[~known])
    # the completion depends on the kept part: the first generated row sees the rows above it
    flipped = model.complete(-source, mask, generator=gen(0))
    assert not torch.equal(flipped[~known], out[~known])
    with pytest.raises(ArgumentError, match="both the image and the mask"):
        model.sample(3, {MASK: mask}, generator=gen(0))
    with pytest.raises(ArgumentError, match="input images are"):
        model.sample(3, {SOURCE: source[:, :, :-1], MASK: mask[:, :, :-1]}, generator=gen(0))


def test_class_conditioning_biases_every_gated_layer_and_is_required_at_sampling():
    model = make((1, 5, 5), num_classes=10, conditions=(LABEL,))
    assert all(layer.label_bias is not None and layer.label_bias.num_embeddings == 10 for layer in model.layers)
    x = images_on_levels(2, (1, 5, 5), 6)
    assert not torch.allclose(model(x, torch.tensor([1, 1])), model(x, torch.tensor([7, 7])))
    threes = model.sample(2, {LABEL: torch.tensor([3, 3])}, generator=gen(0))
    assert not torch.equal(threes, model.sample(2, {LABEL: torch.tensor([8, 8])}, generator=gen(0)))
    with pytest.raises(ArgumentError, match="give the classes"):
        model.sample(2, generator=gen(0))
    bits = model.bits_per_dim({"x": x, LABEL: torch.tensor([0, 9])})
    assert bits.shape == (2,) and torch.isfinite(bits).all()


@pytest.mark.parametrize("change, message", [({"kernel": 4}, "odd"), ({"layers": 0}, "at least 1"),
                                             ({"channels": 2}, "colour channels"), ({"output": "gaussian"}, "softmax")])
def test_impossible_configs_are_refused_with_the_setting_named(change, message):
    with pytest.raises(ArgumentError, match=message):
        make((3, 4, 4), **change)


def test_the_model_is_built_for_images_only():
    with pytest.raises(ArgumentError, match="built for image data"):
        PixelCNN(PixelCNNConfig(), DataSpec("points", (2,)))


# ------------------------------------------------------------------ the application and the CLI
def test_complete_api_keeps_the_top_rows_and_draws_n_completions(train_tiny):
    from genlab.apps.complete import complete, keep_mask
    from genlab.data import load_dataset

    run = train_tiny("pixelcnn", steps=2)
    images = load_dataset("digits").x_val[:2]
    result = complete(run, images, rows=3, n=3, seed=0)
    assert result.completions.shape == (2, 3, 1, 8, 8)
    assert torch.equal(result.completions[:, :, :, :3], images[:, None, :, :3].expand(-1, 3, -1, -1, -1))
    assert result.grid_rows().shape == (2 * 5, 1, 8, 8)
    half = complete(run, images, keep="top-half", n=3, seed=0)
    assert torch.equal(half.mask, keep_mask((1, 8, 8), rows=4).expand(2, -1, -1, -1))
    for kwargs, message in [({}, "say what to keep"), ({"rows": 8}, "between 1 and 7"), ({"keep": "left"}, "top-half"),
                            ({"rows": 2, "keep": "top-half"}, "one of --rows and --keep"),
                            ({"rows": 2, "labels": [1]}, "trained without label")]:
        with pytest.raises(ArgumentError, match=message):
            complete(run, images, **kwargs)


@pytest.mark.slow
def test_complete_through_the_cli(tmp_path, genlab_cli, tiny_model_set_args):
    from PIL import Image

    from genlab.data import load_dataset
    from genlab.imageio import load_samples
    from genlab.outputs import save_samples

    trained = genlab_cli("train", "pixelcnn", "--data", "digits", "--steps", "3", "--out", tmp_path / "run",
                         *tiny_model_set_args("pixelcnn"), "--batch-size", "8", "--sample-every", "0", "--quiet")
    assert trained.returncode == 0, trained.stderr
    digits = load_dataset("digits").x_val[:2]
    save_samples(digits, tmp_path / "in.npz", "image")
    done = genlab_cli("complete", tmp_path / "run", "--input", tmp_path / "in.npz", "--rows", "3", "-n", "2",
                      "--out", tmp_path / "completed.npz")
    assert done.returncode == 0, done.stderr
    assert "wrote 4 completions of 2 image(s)" in done.stdout
    given, _ = load_samples(tmp_path / "in.npz")
    completed, _ = load_samples(tmp_path / "completed.npz")
    assert completed.shape == (4, 1, 8, 8)
    assert torch.equal(completed[:, :, :3], given.repeat_interleave(2, 0)[:, :, :3])  # 8-bit files both
    done = genlab_cli("complete", tmp_path / "run", "--input", tmp_path / "in.npz", "-n", "3",
                      "--out", tmp_path / "c.png")  # --keep top-half by default
    assert done.returncode == 0, done.stderr
    width, height = Image.open(tmp_path / "c.png").size  # per image a row: original, kept part, 3 completions
    assert width > 2 * height
    refused = genlab_cli("complete", tmp_path / "run", "--input", tmp_path / "in.npz", "--rows", "8")
    assert refused.returncode == 2 and "between 1 and 7" in refused.stderr and "Traceback" not in refused.stderr
