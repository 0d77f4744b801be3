"""genlab.outputs: every kind and suffix writes a file that reads back; the kind, not the rank, picks the writer."""

from __future__ import annotations

import csv
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import outputs
from genlab.errors import ArgumentError, GenlabError, UnknownNameError
from genlab.imageio import load_samples, make_grid, to_uint8
from genlab.outputs import register_writer, save_samples, writers

KINDS = ("image", "points", "tokens", "series", "audio")


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def tokens(n: int = 3, t: int = 6) -> torch.Tensor:
    return torch.randint(0, 5, (n, t), generator=generator())


def series(n: int = 5, c: int = 1, t: int = 40) -> torch.Tensor:
    return torch.randn(n, c, t, generator=generator()).cumsum(-1) / 10


def test_every_model_kind_has_writers():
    assert {kind: sorted(writers(kind)) for kind in KINDS} == {
        "image": [".jpeg", ".jpg", ".npz", ".png"], "points": [".npz", ".png"], "tokens": [".npz", ".txt"],
        "series": [".csv", ".npz", ".png"], "audio": [".npz", ".wav"]}


# ------------------------------------------------------------------ image
def test_image_png_and_jpg_grids(tmp_path):
    images = torch.rand(4, 3, 8, 8, generator=generator()) * 2 - 1
    path = save_samples(images, tmp_path / "sub" / "grid.png", "image")
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (2 * 66 + 2, 2 * 66 + 2)
        assert np.array_equal(np.asarray(im), make_grid(images))
    with Image.open(save_samples(images, tmp_path / "grid.JPG", "image")) as im:
        assert im.format == "JPEG" and im.size == (134, 134)
    assert not list(tmp_path.rglob("*.tmp*")), "a temporary file was left behind"


def test_image_npz_reads_back(tmp_path):
    images = (torch.arange(2 * 3 * 4 * 4) % 256).float().div(127.5).sub(1).reshape(2, 3, 4, 4)
    path = save_samples(images, tmp_path / "s.npz", "image", labels=torch.tensor([1, 0]))
    with np.load(path) as data:
        assert np.array_equal(data["images"], to_uint8(images))
    back, labels = load_samples(path)
    assert torch.equal(back, images) and labels.tolist() == [1, 0]


# ------------------------------------------------------------------ points
def test_points_scatter_and_npz(tmp_path):
    points = torch.rand(100, 2, generator=generator()) * 2 - 1
    with Image.open(save_samples(points, tmp_path / "p.png", "points", reference=torch.zeros(5, 2))) as im:
        assert im.size == (400, 400)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 3
    back, labels = load_samples(save_samples(points, tmp_path / "p.npz", "points"))
    assert torch.equal(back, points) and labels is None


# ------------------------------------------------------------------ tokens
def test_tokens_text_is_decoded_and_separated(tmp_path):
    vocab = "abcde"
    ids = tokens()
    decode = lambda sample: "".join(vocab[i] for i in sample)
    path = save_samples(ids, tmp_path / "t.txt", "tokens", context={"decode": decode})
    blocks = path.read_text().rstrip("\n").split("\n" + "-" * 40 + "\n")
    assert blocks == [decode(row) for row in ids.tolist()]


def test_tokens_text_without_decoder_and_with_labels(tmp_path):
    ids = torch.tensor([[3, 1, 4], [1, 5, 9]])
    path = save_samples(ids, tmp_path / "t.txt", "tokens", labels=torch.tensor([1, 0]),
                        context={"class_names": ["neg", "pos"]})
    assert path.read_text() == "[pos]\n3 1 4\n" + "-" * 40 + "\n[neg]\n1 5 9\n"


def test_tokens_npz_reads_back(tmp_path):
    ids = tokens()
    path = save_samples(ids.int(), tmp_path / "t.npz", "tokens")
    with np.load(path) as data:
        assert list(data) == ["tokens"] and data["tokens"].dtype == np.int64
    back, _ = load_samples(path)
    assert back.dtype == torch.long and torch.equal(back, ids)


def test_tokens_never_go_through_the_scatter_writer(tmp_path, monkeypatch):
    def no_scatter(*args, **kwargs):
        raise AssertionError("token samples were drawn as a scatter plot")

    monkeypatch.setattr(outputs, "save_scatter", no_scatter)
    with pytest.raises(GenlabError, match=r"kind 'tokens' to .*t\.png': that kind is written to \.txt .*\.npz"):
        save_samples(tokens(), tmp_path / "t.png", "tokens")
    assert not (tmp_path / "t.png").exists()
    # the deprecated rank-guessing wrapper recognises integer ids too
    from genlab import imageio

    with pytest.deprecated_call(), pytest.raises(GenlabError, match="cannot write samples of kind 'tokens'"):
        imageio.save_samples(tokens(), tmp_path / "t.png")
    with pytest.raises(GenlabError, match="token samples must be integer ids"):
        save_samples(torch.rand(3, 6), tmp_path / "t.txt", "tokens")


# ------------------------------------------------------------------ series
@pytest.mark.parametrize("n, cols, rows", [(5, 3, 2), (1, 1, 1), (40, 4, 4)])  # more than 16: the first 16
def test_series_plot_is_a_grid_of_small_axes(tmp_path, n, cols, rows):
    with Image.open(save_samples(series(n, c=2), tmp_path / "s.png", "series")) as im:
        assert im.size == (round(240 * cols), round(160 * rows))


def test_series_csv_has_one_column_per_sample(tmp_path):
    x = series(3, t=20)
    with open(save_samples(x, tmp_path / "s.csv", "series"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["sample_0", "sample_1", "sample_2"] and len(rows) == 1 + 20
    assert np.allclose(np.array(rows[1:], dtype=np.float32).T, x[:, 0].numpy(), atol=1e-6)
    with open(save_samples(series(2, c=2, t=4), tmp_path / "c.csv", "series"), newline="") as f:
        assert next(csv.reader(f)) == ["sample_0_channel_0", "sample_0_channel_1",
                                       "sample_1_channel_0", "sample_1_channel_1"]


def test_series_npz_reads_back_2d_and_3d(tmp_path):
    for x in (series(3), series(3)[:, 0]):
        back, _ = load_samples(save_samples(x, tmp_path / "s.npz", "series"))
        assert torch.equal(back, x)


# ------------------------------------------------------------------ audio
def test_audio_wav_concatenates_samples_with_silence(tmp_path):
    rate, n, t = 8000, 3, 400
    x = torch.sin(torch.arange(n * t).float().reshape(n, t) / 5) * 0.5
    path = save_samples(x, tmp_path / "a.wav", "audio", context={"sample_rate": rate})
    gap = int(0.25 * rate)
    with wave.open(str(path), "rb") as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (rate, 1, 2)
        assert f.getnframes() == n * t + (n - 1) * gap
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    assert np.array_equal(pcm[:t], (x[0] * 32767).round().to(torch.int16).numpy())
    assert not pcm[t : t + gap].any()


def test_audio_wav_stereo_interleaves_channels(tmp_path):
    x = torch.stack([torch.full((2, 10), 0.5), torch.full((2, 10), -0.5)], dim=1)  # (N=2, C=2, T=10)
    path = save_samples(x, tmp_path / "a.wav", "audio", context={"sample_rate": 100})
    with wave.open(str(path), "rb") as f:
        assert f.getnchannels() == 2 and f.getnframes() == 2 * 10 + 25
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    assert (pcm[:10] == [16384, -16384]).all()


def test_audio_needs_a_sample_rate_for_wav(tmp_path):
    with pytest.raises(GenlabError, match=r"needs context\['sample_rate'\]"):
        save_samples(torch.zeros(1, 10), tmp_path / "a.wav", "audio")


def test_audio_npz_reads_back(tmp_path):
    x = torch.rand(2, 1, 50, generator=generator()) * 2 - 1
    path = save_samples(x, tmp_path / "a.npz", "audio", context={"sample_rate": 16000})
    with np.load(path) as data:
        assert int(data["sample_rate"]) == 16000
    back, _ = load_samples(path)
    assert torch.equal(back, x)


# ------------------------------------------------------------------ errors and the registry
def test_an_unknown_suffix_names_the_suffixes_of_the_kind(tmp_path):
    with pytest.raises(GenlabError, match=r"kind 'series' .* written to \.png .*, \.csv .*, \.npz .*choose"):
        save_samples(series(), tmp_path / "s.wav", "series")
    with pytest.raises(UnknownNameError, match="unknown output kind 'video'. Valid output kinds: audio, image"):
        save_samples(series(), tmp_path / "s.png", "video")
    assert not list(tmp_path.iterdir())


def test_samples_that_do_not_fit_the_kind(tmp_path):
    with pytest.raises(GenlabError, match=r"image samples must be \(N, C, H, W\).*got shape \(4, 2\)"):
        save_samples(torch.zeros(4, 2), tmp_path / "x.png", "image")
    with pytest.raises(GenlabError, match="at least 2 coordinates"):
        save_samples(torch.zeros(4, 1), tmp_path / "x.png", "points")


def test_register_a_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_WRITERS", {k: dict(v) for k, v in outputs._WRITERS.items()})

    def json_lines(samples, path, *, labels, reference, context):
        path.write_text("\n".join(str(row) for row in samples.tolist()))
        return path

    register_writer("tokens", ".jsonl", json_lines, "one JSON list per line")
    assert save_samples(torch.tensor([[1, 2]]), tmp_path / "t.jsonl", "tokens").read_text() == "[1, 2]"
    with pytest.raises(ArgumentError, match="already registered; pass replace=True"):
        register_writer("tokens", ".jsonl", json_lines, "again")
    with pytest.raises(ArgumentError, match="start with a dot"):
        register_writer("tokens", "txt", json_lines, "no dot")
