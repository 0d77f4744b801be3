"""genlab.apps.interpolate / latents / anomaly / denoise and the exclude-class option of training."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import genlab
from genlab.api import load_run_data
from genlab.apps.anomaly import anomaly_scores
from genlab.apps.denoise import add_noise, denoise
from genlab.apps.interpolate import interpolate, latent_path, lerp, slerp
from genlab.apps.latents import LatentCodec, decode, encode, load_latents, save_latents, traverse
from genlab.batch import LABEL, X
from genlab.cli import app
from genlab.data import load_dataset
from genlab.data.base import LoadOptions, load_data
from genlab.errors import ArgumentError
from genlab.eval.fidelity import psnr

from conftest import TINY_CORPUS, TINY_TRAIN_OPTIONS, tiny_config, tiny_set_args


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny VAE (40 steps) and a tiny spatial autoencoder (3 steps) on digits."""
    root = tmp_path_factory.mktemp("apps-vae")
    genlab.train("vae", "digits", out=root / "vae", steps=40, model_config=tiny_config("vae"), progress=False,
                 **TINY_TRAIN_OPTIONS)
    genlab.train("autoencoder", "digits", out=root / "ae", steps=3, model_config=tiny_config("autoencoder"),
                 progress=False, **TINY_TRAIN_OPTIONS)
    return {"vae": root / "vae", "autoencoder": root / "ae"}


@pytest.fixture(scope="module")
def digits_val() -> torch.Tensor:
    return load_dataset("digits").x_val[:8]


@pytest.fixture(scope="module")
def trained_without_3(tmp_path_factory) -> Path:
    """A tiny VAE trained ~15 s on digits without class 3 (the slow tests share it)."""
    out = tmp_path_factory.mktemp("apps-vae-slow") / "vae-no3"
    genlab.train("vae", "digits", out=out, steps=300, model_config=tiny_config("vae"), progress=False,
                 **{**TINY_TRAIN_OPTIONS, "batch_size": 64, "lr": 3e-3, "precision": "fp32", "exclude_classes": [3]})
    return out


def reconstruction(name: str, run: Path, x: torch.Tensor) -> torch.Tensor:
    """The model's own reconstruction, computed here without the apps' codec."""
    model = genlab.load(run).load_model(device="cpu")
    with torch.no_grad():
        if name == "vae":
            return model(x).clamp(-1, 1)  # the VAE's forward: decoded posterior mean
        return model.decode_latent(model.encode_latent(x))


# ---------------------------------------------------------------------------------------------- exclude-class
def test_exclude_class_drops_it_from_training_batches_but_not_validation():
    full = load_data("digits")
    data = load_data("digits", LoadOptions(exclude_classes=(3,)))
    assert (data.y_train != 3).all() and data.train_size() == int((full.y_train != 3).sum())
    assert torch.equal(data.validation()[LABEL], full.validation()[LABEL])  # the held-out split is untouched
    assert (data.validation()[LABEL] == 3).sum() > 0
    seen = torch.cat([data.train_batch(i, 64, seed=0)[LABEL] for i in range(data.train_size() // 64)])
    assert len(seen) > 1000 and not (seen == 3).any() and set(seen.tolist()) == set(range(10)) - {3}
    assert data.num_classes == 10  # labels keep their meaning
    assert any("excluded" in note for note in data.notes)


def test_exclude_class_is_recorded_by_the_run_and_used_again_on_resume(tmp_path):
    run = genlab.train("vae", "digits", out=tmp_path / "run", steps=1, model_config=tiny_config("vae"),
                       progress=False, **{**TINY_TRAIN_OPTIONS, "exclude_classes": [3, 5]})
    assert genlab.load(run.path).train_config.exclude_classes == [3, 5]
    again = load_run_data(genlab.load(run.path))  # what a resumed run trains on
    assert not torch.isin(again.y_train, torch.tensor([3, 5])).any()
    assert run.data_info["train_size"] == again.train_size() < load_data("digits").train_size()


def test_exclude_class_refuses_what_it_cannot_do():
    with pytest.raises(ArgumentError, match="classes 0..9"):
        load_data("digits", LoadOptions(exclude_classes=(10,)))
    with pytest.raises(ArgumentError, match="leaves no training items"):
        load_data("digits", LoadOptions(exclude_classes=tuple(range(10))))
    with pytest.raises(ArgumentError, match="without per-item classes"):
        load_data(f"text:{TINY_CORPUS}", LoadOptions(options={"block_size": 16}, exclude_classes=(1,)))


# ---------------------------------------------------------------------------------------------- interpolation
def test_slerp_matches_hand_computation_and_keeps_equal_norms():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(a, b, torch.tensor([0.5]))[0]
    assert torch.allclose(mid, torch.tensor([2**-0.5, 2**-0.5]), atol=1e-6)  # on the circle, not the chord
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, generator=g), torch.randn(16, generator=g)
    z1 = z1 * z0.norm() / z1.norm()  # equal norms
    spherical, linear = latent_path(z0, z1, 9, "slerp"), latent_path(z0, z1, 9, "linear")
    norms = spherical.norm(dim=1)
    assert torch.allclose(norms, z0.norm().expand(9), rtol=1e-5)
    assert linear.norm(dim=1)[4] < 0.95 * z0.norm()  # the chord dips inside the shell
    assert torch.allclose(spherical[0], z0, atol=1e-6) and torch.allclose(spherical[-1], z1, atol=1e-6)
    assert torch.allclose(lerp(z0, z1, torch.tensor([0.25]))[0], 0.75 * z0 + 0.25 * z1)


@pytest.mark.parametrize("name", ["vae", "autoencoder"])
@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_ends_are_the_reconstructions_of_a_and_b(runs, digits_val, name, mode):
    a, b = digits_val[0], digits_val[1]
    result = interpolate(runs[name], a, b, frames=5, mode=mode, device="cpu")
    assert result.images.shape == (5, *a.shape) and result.latents.shape[0] == 5
    expected = reconstruction(name, runs[name], torch.stack([a, b]))
    assert torch.allclose(result.images[0], expected[0], atol=1e-4)
    assert torch.allclose(result.images[-1], expected[1], atol=1e-4)
    assert not torch.allclose(result.images[2], expected[0], atol=1e-3)  # the middle is neither end
    assert torch.equal(result.strip()[0], a) and torch.equal(result.strip()[-1], b)


def test_random_interpolation_is_seeded_and_the_gif_has_one_frame_per_step(runs, tmp_path):
    first = interpolate(runs["vae"], frames=7, mode="slerp", seed=1, device="cpu")
    assert torch.equal(first.latents, interpolate(runs["vae"], frames=7, mode="slerp", seed=1, device="cpu").latents)
    assert not torch.equal(first.latents, interpolate(runs["vae"], frames=7, mode="slerp", seed=2, device="cpu").latents)
    gif = first.save(tmp_path / "walk.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 7
    with Image.open(first.save(tmp_path / "walk.png")) as im:
        assert im.width > 6 * im.height  # one row of 7


def test_interpolation_refuses_one_end_and_models_without_latents(runs, digits_val, tmp_path):
    with pytest.raises(ArgumentError, match="both ends"):
        interpolate(runs["vae"], digits_val[0], None)
    gan = genlab.train("gan", "digits", out=tmp_path / "gan", steps=1, model_config=tiny_config("gan"),
                       progress=False, **TINY_TRAIN_OPTIONS)
    with pytest.raises(ArgumentError, match="no latent space"):
        interpolate(gan.path)


# ---------------------------------------------------------------------------------------------- latents
def test_traverse_moves_only_the_chosen_coordinate(runs, digits_val):
    result = traverse(runs["vae"], 2, span=2.0, steps=5, input=digits_val[0], device="cpu")
    base = LatentCodec.of(genlab.load(runs["vae"]).load_model(device="cpu")).encode(digits_val[:1])[0]
    assert torch.allclose(result.base, base)
    z = result.latents[0]  # (steps, latent_dim)
    others = [d for d in range(z.shape[1]) if d != 2]
    assert torch.equal(z[:, others], base[others].expand(5, -1))
    assert torch.allclose(z[:, 2], base[2] + torch.linspace(-2, 2, 5))
    assert (result.images[0, 0] - result.images[0, -1]).abs().max() > 1e-3  # the decoder sees the change
    every = traverse(runs["autoencoder"], span=1.0, steps=3, device="cpu")  # zero base, one row per coordinate
    size = int(np.prod(every.latents.shape[2:]))
    assert len(every.dims) == size and every.images.shape[:2] == (size, 3)
    changed = (every.latents.flatten(2) != 0).sum(-1)  # from zeros: one coordinate per frame (the middle is 0)
    assert torch.equal(changed, torch.tensor([1, 0, 1]).expand(size, 3))
    with pytest.raises(ArgumentError, match="coordinates"):
        traverse(runs["vae"], 99)


def test_encode_save_load_decode_round_trip(runs, digits_val, tmp_path):
    for name, run in runs.items():
        z = encode(run, digits_val, device="cpu")
        path = save_latents(z, tmp_path / f"{name}.npz", run=genlab.load(run))
        back, _ = load_latents(path)
        assert torch.equal(back, z)
        assert torch.allclose(decode(run, path, device="cpu"), reconstruction(name, run, digits_val), atol=1e-4)
    with pytest.raises(ArgumentError, match="latents are"):
        decode(runs["vae"], torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------------- anomaly
def test_anomaly_scores_every_heldout_item_and_writes_csv_and_grid(runs, tmp_path):
    result = anomaly_scores(runs["vae"], target_classes=[3], device="cpu")
    n = len(load_data("digits").validation()[X])
    assert set(result.scores) == {"elbo", "recon"} and all(len(s) == n for s in result.scores.values())
    assert result.score == "elbo" and set(result.auc) == {"elbo", "recon"}
    ranked = result.scores["elbo"][result.ranking]
    assert (ranked[:-1] >= ranked[1:]).all()
    rows = list(csv.DictReader(result.write_csv(tmp_path / "s.csv").open()))
    assert len(rows) == n and sum(int(r["is_target"]) for r in rows) == int((result.labels == 3).sum())
    with Image.open(result.save_grid(tmp_path / "top.png")) as im:
        assert im.width == im.height  # 16 images: 4 x 4
    assert anomaly_scores(runs["autoencoder"], device="cpu").score == "recon"  # no likelihood: reconstruction
    with pytest.raises(ArgumentError, match="no 'elbo'"):
        anomaly_scores(runs["autoencoder"], score="elbo", device="cpu")


@pytest.mark.slow
def test_anomaly_auc_is_above_chance_for_a_class_left_out_of_training(trained_without_3):
    result = anomaly_scores(trained_without_3, "digits", device="cpu")  # the target: the run's excluded class
    assert result.target_classes == (3,)
    assert result.auc["elbo"] > 0.6 and result.auc["recon"] > 0.6, result.auc
    means = result.class_means()
    assert means["3"] > np.median(list(means.values()))


# ---------------------------------------------------------------------------------------------- denoise
def test_noise_is_seeded_and_of_the_asked_strength():
    x = torch.zeros(64, 1, 8, 8)
    a = add_noise(x, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(a, add_noise(x, 0.3, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, add_noise(x, 0.3, torch.Generator().manual_seed(1)))
    assert abs(float(a.std()) - 0.3) < 0.02
    assert add_noise(torch.ones(4, 1, 8, 8), 0.5, torch.Generator().manual_seed(0)).max() <= 1  # clipped


def test_denoise_reports_psnr_of_noisy_against_clean(runs, digits_val):
    result = denoise(runs["vae"], digits_val, noise=0.3, seed=0, device="cpu")
    assert torch.allclose(result.psnr()["noisy"], psnr(result.noisy, digits_val))
    assert torch.equal(result.noisy, denoise(runs["vae"], digits_val, noise=0.3, seed=0, device="cpu").noisy)
    assert result.grid_rows().shape == (3 * len(digits_val), *digits_val.shape[1:])


@pytest.mark.slow
def test_denoising_with_a_trained_model_improves_psnr(trained_without_3, runs):
    x = load_dataset("digits").x_val[:64]
    trained = denoise(trained_without_3, x, noise=0.8, seed=0, device="cpu").psnr()
    barely = denoise(runs["vae"], x, noise=0.8, seed=0, device="cpu").psnr()
    assert trained["denoised"].mean() > trained["noisy"].mean() + 1.0, trained  # dB
    assert trained["denoised"].mean() > barely["denoised"].mean()


# ---------------------------------------------------------------------------------------------- the CLI
def test_every_application_runs_from_the_cli(tmp_path, digits_val):
    run = tmp_path / "vae"
    fast = ["--quiet", "--device", "cpu", "--batch-size", "16", "--set", "train.warmup_steps=0"]
    invoke("train", "vae", "--out", run, "--steps", 2, *fast, *tiny_set_args("vae"), "--exclude-class", 3)
    assert genlab.load(run).train_config.exclude_classes == [3]
    images = tmp_path / "digits.npz"
    np.savez(images, images=((digits_val + 1) * 127.5).round().byte().numpy())  # (N, 1, 8, 8) uint8
    Image.fromarray(((digits_val[0, 0] + 1) * 127.5).round().byte().numpy()).save(tmp_path / "a.png")

    out = invoke("interpolate", run, "--a", tmp_path / "a.png", "--b", images, "--frames", 4, "--mode", "slerp",
                 "--out", tmp_path / "strip.png", "--gif", tmp_path / "strip.gif", "--device", "cpu").stdout
    assert "4 slerp frames between two images" in out and (tmp_path / "strip.png").exists()
    assert (tmp_path / "strip.gif").exists()
    invoke("interpolate", run, "--out", tmp_path / "random.gif", "--seed", 3, "--device", "cpu")
    with Image.open(tmp_path / "random.gif") as im:
        assert im.n_frames == 10
    assert "1 row(s) x 5" in invoke("traverse", run, "--dim", 1, "--steps", 5, "--range", 2, "--input", images,
                                    "--out", tmp_path / "trav.png", "--device", "cpu").stdout
    invoke("traverse", run, "--out", tmp_path / "all.png", "--device", "cpu")
    out = invoke("anomaly", run, "--data", "digits", "--target-class", 3, "--score", "recon", "--top", 3,
                 "--out", tmp_path / "scores.csv", "--grid", tmp_path / "worst.png", "--device", "cpu").stdout
    assert "ROC-AUC finding class 3 by recon" in out and "top 3:" in out
    assert (tmp_path / "scores.csv").exists() and (tmp_path / "worst.png").exists()
    out = invoke("denoise", run, "--input", images, "--noise", 0.3, "--out", tmp_path / "den.png", "--device", "cpu").stdout
    assert "noisy" in out and "dB" in out and (tmp_path / "den.png").exists()
    invoke("encode", run, "--input", images, "--out", tmp_path / "z.npz", "--device", "cpu")
    assert load_latents(tmp_path / "z.npz")[0].shape == (len(digits_val), tiny_config("vae")["latent_dim"])
    invoke("decode", run, "--input", tmp_path / "z.npz", "--out", tmp_path / "dec.png", "--device", "cpu")
    invoke("decode", run, "--input", tmp_path / "z.npz", "--out", tmp_path / "dec.npz", "--device", "cpu")
    assert np.load(tmp_path / "dec.npz")["images"].shape[0] == len(digits_val)
