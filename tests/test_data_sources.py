"""Every kind of data source against the contract: batches are a function of (seed, index, rank,
world_size, batch_size), shapes and masks are right, assets reproduce the tokenisation and the
statistics, and bad input gets an error that says what to do. Files are tiny and written per test.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data import DataSource, Dataset, LoadOptions, dataset_infos, load_data
from genlab.data.series import series_stats_from_assets
from genlab.data.text import tokenizer_from_assets
from genlab.errors import ArgumentError, DataError, GenlabError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def genlab_cache(tmp_path_factory, monkeypatch) -> Path:
    """A fresh $GENLAB_CACHE per test, apart from the data the test writes."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GENLAB_CACHE", str(path))
    return path


def options(**kw) -> LoadOptions:
    return LoadOptions(options=kw)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_deterministic(source: DataSource, batch_size: int = 4) -> None:
    """Same arguments -> equal batches; another index, seed or rank -> another batch."""
    first = source.train_batch(2, batch_size, seed=0)
    assert same(first, source.train_batch(2, batch_size, seed=0))
    assert not torch.equal(first["x"], source.train_batch(3, batch_size, seed=0)["x"])
    assert not torch.equal(first["x"], source.train_batch(2, batch_size, seed=1)["x"])
    ranks = [source.train_batch(2, batch_size, seed=0, rank=r, world_size=2)["x"] for r in (0, 1)]
    assert not torch.equal(ranks[0], ranks[1])


def check_rank_slices(source: DataSource, batch_size: int = 3) -> None:
    """Epoch-style: the ranks of one index are consecutive slices of the one global batch (so disjoint)."""
    for index in (0, 1):
        whole = source.train_batch(index, 2 * batch_size, seed=5)
        parts = [source.train_batch(index, batch_size, seed=5, rank=r, world_size=2) for r in (0, 1)]
        assert same(whole, {k: torch.cat([p[k] for p in parts]) for k in whole})


# ============================================================================================= text:PATH
CORPUS = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}\n" for i in range(60))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_text_char_windows(tmp_path):
    source = load_data(f"text:{write(tmp_path / 'c.txt', CORPUS)}", options(block_size=16))
    assert source.kind == "tokens" and source.shape == (17,) and source.spec.vocab_size == len(set(CORPUS))
    n_val = round(len(CORPUS) * 0.1)
    head, tail = CORPUS[:-n_val], CORPUS[-n_val:]
    assert source.train_size() == len(head) - 16
    batch = source.train_batch(0, 5, seed=0)
    assert batch.keys() == {"x"} and batch["x"].shape == (5, 17) and batch["x"].dtype == torch.int64
    for row in batch["x"]:
        assert source.tokenizer.decode(row.tolist()) in head  # a window of the training head
    val = source.validation()["x"]
    assert val.shape == (n_val // 17, 17)
    assert "".join(source.tokenizer.decode(r.tolist()) for r in val) == tail[: val.numel()]  # the tail, in order
    assert torch.equal(source.validation(2)["x"], val[:2])
    check_deterministic(source)


def test_text_bpe_is_byte_level_and_local(tmp_path):
    source = load_data(f"text:{write(tmp_path / 'c.txt', CORPUS)}", options(tokenizer="bpe", vocab_size=300,
                                                                            block_size=8))
    tok = source.tokenizer
    assert source.spec.extras["tokenizer"] == "bpe" and 256 < source.spec.vocab_size <= 300
    assert len(tok.encode(CORPUS)) < 0.7 * len(CORPUS)  # merges learnt from the corpus
    for text in ("the lazy fox", "héllo ✓ unseen: ~{}"):  # byte-level: any text round-trips
        assert tok.decode(tok.encode(text)) == text
    batch = source.train_batch(1, 3, seed=0)
    assert batch["x"].shape == (3, 9) and int(batch["x"].max()) < source.spec.vocab_size
    assert all(tok.decode(r.tolist()) in CORPUS for r in batch["x"])
    check_deterministic(source)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_text_tokenizer_assets_round_trip(tmp_path, kind):
    corpus = write(tmp_path / "a.txt", CORPUS)
    first = load_data(f"text:{corpus}", options(tokenizer=kind, vocab_size=300, block_size=8))
    changed = write(tmp_path / "b.txt", "the lazy dog jumps\n" * 40)  # another corpus, characters of the first
    resumed = load_data(f"text:{changed}", LoadOptions(options={"tokenizer": kind, "block_size": 8},
                                                       assets=first.assets()))
    fresh = load_data(f"text:{changed}", options(tokenizer=kind, vocab_size=300, block_size=8))
    assert resumed.assets() == first.assets() != fresh.assets()
    assert any("reused from the run's assets" in note for note in resumed.notes)
    for text in ("line 7: the quick brown fox", "dog 12\n"):
        assert resumed.tokenizer.encode(text) == first.tokenizer.encode(text)
    # a run decodes and encodes from its assets alone, without the corpus
    saved = tokenizer_from_assets(first.assets())
    row = first.train_batch(0, 1, seed=0)["x"][0].tolist()
    assert saved.decode(row) == first.tokenizer.decode(row)
    assert saved.encode("the fox") == first.tokenizer.encode("the fox")


def test_text_saved_char_tokenizer_refuses_new_characters(tmp_path):
    first = load_data(f"text:{write(tmp_path / 'a.txt', CORPUS)}", options(block_size=8))
    changed = write(tmp_path / "b.txt", CORPUS + "Zürich\n")
    with pytest.raises(DataError, match="does not know"):
        load_data(f"text:{changed}", LoadOptions(options={"block_size": 8}, assets=first.assets()))
    with pytest.raises(ArgumentError, match="does not know: 'Zü'"):
        first.tokenizer.encode("Zürich")


def test_text_errors(tmp_path):
    with pytest.raises(DataError, match="no file"):
        load_data(f"text:{tmp_path / 'missing.txt'}")
    empty = write(tmp_path / "empty.txt", "  \n")
    with pytest.raises(DataError, match="is empty"):
        load_data(f"text:{empty}")
    short = write(tmp_path / "short.txt", "just a few characters, far fewer than a block\n")
    with pytest.raises(ArgumentError, match="fewer than one window of 257; lower block_size"):
        load_data(f"text:{short}")
    with pytest.raises(GenlabError, match="unknown field.*blocksize"):
        load_data(f"text:{short}", options(blocksize=4))
    with pytest.raises(GenlabError, match="not one of"):
        load_data(f"text:{short}", options(tokenizer="words"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_data(f"text:{tmp_path / 'latin1.txt'}")
    with pytest.raises(DataError, match="no tokenizer.json"):
        tokenizer_from_assets({})
    with pytest.raises(ArgumentError, match="needs an argument: text:PATH"):
        load_data("text:")


# ============================================================================================= pairs:PATH
WORDS = [f"w{i:02d}{'ab' * (i % 4)}" for i in range(40)]  # 40 distinct sources of 3 to 9 characters


def write_pairs(path: Path, words: list[str] = WORDS, extra: str = "") -> Path:
    return write(path, "".join(f"{w}\t{w[::-1]}!{extra}\n" for w in words))  # the task: reverse and shout


def test_pairs_batches_masks_and_specials(tmp_path):
    source = load_data(f"pairs:{write_pairs(tmp_path / 'p.tsv')}")
    spec = source.spec
    assert spec.kind == "tokens" and spec.conditions == ("source",)
    assert (spec.extras["pad_id"], spec.extras["bos_id"], spec.extras["eos_id"]) == (0, 1, 2)
    assert spec.shape == (9 + 1 + 2,) and spec.extras["source_length"] == 9  # longest target + BOS + EOS
    assert source.train_size() == 36
    batch = source.train_batch(0, 6, seed=0)
    assert batch.keys() == {"source", "source_mask", "x", "x_mask"}
    assert batch["source"].shape == (6, 9) and batch["x"].shape == (6, 12)
    assert batch["source"].dtype == batch["x"].dtype == torch.int64
    assert batch["source_mask"].dtype == batch["x_mask"].dtype == torch.bool
    tok = source.tokenizer
    for src, src_mask, x, x_mask in zip(batch["source"], batch["source_mask"], batch["x"], batch["x_mask"]):
        n = int(x_mask.sum())
        assert x[0] == 1 and x[n - 1] == 2 and bool((x[n:] == 0).all()) and bool(x_mask[:n].all())
        assert bool((src[~src_mask] == 0).all()) and bool(src_mask[: int(src_mask.sum())].all())
        word = tok.decode(src.tolist())
        assert word in WORDS and tok.decode(x.tolist()) == word[::-1] + "!"
    val = source.validation(3)
    assert val["source"].shape == (3, 9) and val["x_mask"].shape == (3, 12)
    check_deterministic(source)
    check_rank_slices(source)


def test_pairs_epoch_visits_every_training_pair_once(tmp_path):
    source = load_data(f"pairs:{write_pairs(tmp_path / 'p.tsv')}", LoadOptions(seed=3))
    seen = [source.tokenizer.decode(s.tolist()) for i in range(9) for s in source.train_batch(i, 4, seed=1)["source"]]
    held_out = {source.tokenizer.decode(s.tolist()) for s in source.validation()["source"]}
    assert len(set(seen)) == 36 and set(seen) | held_out == set(WORDS)


def test_pairs_fixed_max_lengths_leave_long_pairs_out(tmp_path):
    source = load_data(f"pairs:{write_pairs(tmp_path / 'p.tsv')}", options(max_source_len=5, max_target_len=8))
    assert source.shape == (8,) and source.train_batch(0, 4, seed=0)["source"].shape == (4, 5)
    assert any("20 of 40 pairs are longer" in note for note in source.notes)


def test_pairs_bpe_and_assets(tmp_path):
    first = load_data(f"pairs:{write_pairs(tmp_path / 'a.tsv')}", options(tokenizer="bpe", vocab_size=300))
    tok = first.tokenizer
    assert [tok.token_id(s) for s in ("<pad>", "<bos>", "<eos>")] == [0, 1, 2]
    x = first.train_batch(0, 2, seed=0)["x"]
    assert all(tok.decode(row.tolist()).endswith("!") for row in x)  # specials dropped when decoding
    resumed = load_data(f"pairs:{write_pairs(tmp_path / 'b.tsv', WORDS[:10])}",
                        LoadOptions(options={"tokenizer": "bpe"}, assets=first.assets()))
    assert resumed.assets() == first.assets() and resumed.tokenizer.encode("w07ab") == tok.encode("w07ab")
    text = load_data(f"text:{write(tmp_path / 'c.txt', CORPUS)}", options(block_size=8))
    with pytest.raises(DataError, match="no <pad>, <bos>, <eos> tokens"):
        load_data(f"pairs:{tmp_path / 'a.tsv'}", LoadOptions(assets=text.assets()))


def test_pairs_errors_and_notes(tmp_path):
    with pytest.raises(DataError, match="no file"):
        load_data(f"pairs:{tmp_path / 'missing.tsv'}")
    with pytest.raises(DataError, match="is empty"):
        load_data(f"pairs:{write(tmp_path / 'empty.tsv', '')}")
    bad = write(tmp_path / "bad.tsv", "a\tb\nc\td\nno tab here\n")
    with pytest.raises(DataError, match="line 3 has no tab"):
        load_data(f"pairs:{bad}")
    source = load_data(f"pairs:{write_pairs(tmp_path / 'x.tsv', extra=chr(9) + 'CC-BY tatoeba')}")
    assert any("40 lines had more than two columns" in note for note in source.notes)
    assert source.tokenizer.decode(source.validation(1)["x"][0].tolist()).endswith("!")  # third column not read


# ============================================================================================= csv:PATH[:COLUMN]
def write_csv(path: Path, n: int = 300, scale: float = 1.0, header: bool = True, gaps: bool = False) -> Path:
    t = np.arange(n)
    a = scale * (3 + 2 * np.sin(t / 5))
    b = scale * (t / 10.0)
    lines = ["time,a,b"] if header else []
    lines += [f"{i},{'' if gaps and i % 50 == 7 else f'{x:.6f}'},{y:.6f}" for i, x, y in zip(t, a, b)]
    return write(path, "\n".join(lines) + "\n")


def is_window_of(window: torch.Tensor, stream: torch.Tensor) -> bool:
    """window (C, W) equals stream[:, s : s + W] for some start s."""
    views = stream.unfold(-1, window.shape[-1], 1).movedim(-2, 0)  # (starts, C, W)
    return bool(torch.isclose(views, window).flatten(1).all(1).any())


def test_csv_column_windows_and_standardisation(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    source = load_data(f"csv:{path}:a", options(window=16))
    assert source.kind == "series" and source.shape == (1, 16) and source.spec.extras["channels"] == ["a"]
    n_val = 30  # 10% of 300, more than one window
    assert source.train.shape == (1, 270) and source.val.shape == (1, n_val)
    assert abs(float(source.train.mean())) < 1e-5 and abs(float(source.train.std(unbiased=False)) - 1) < 1e-4
    batch = source.train_batch(0, 5, seed=0)
    assert batch["x"].shape == (5, 1, 16) and batch["x"].dtype == torch.float32
    assert all(is_window_of(w, source.train) for w in batch["x"])
    val = source.validation()["x"]
    assert val.shape == (1, 1, 16) and torch.equal(val[0], source.val[:, :16])
    check_deterministic(source)
    by_index = load_data(f"csv:{path}:1", options(window=16))
    assert torch.equal(by_index.train, source.train)


def test_csv_every_numeric_column_and_headerless(tmp_path):
    source = load_data(f"csv:{write_csv(tmp_path / 's.csv')}", options(window=16))
    assert source.shape == (3, 16) and source.spec.extras["channels"] == ["time", "a", "b"]
    assert source.train_batch(0, 2, seed=0)["x"].shape == (2, 3, 16)
    plain = load_data(f"csv:{write_csv(tmp_path / 'plain.csv', header=False)}:2", options(window=16))
    assert plain.spec.extras["channels"] == ["2"] and plain.train.shape == (1, 270)


def test_csv_gaps_are_interpolated(tmp_path):
    source = load_data(f"csv:{write_csv(tmp_path / 's.csv', gaps=True)}:a", options(window=16))
    assert any("6 missing values" in note and "interpolated" in note for note in source.notes)
    assert bool(torch.isfinite(source.train).all())


def test_csv_statistics_are_an_asset(tmp_path):
    first = load_data(f"csv:{write_csv(tmp_path / 'a.csv')}:a", options(window=16))
    mean, std = series_stats_from_assets(first.assets())
    assert mean.shape == std.shape == (1,) and 2.5 < float(mean) < 3.5
    raw = torch.tensor(np.loadtxt(tmp_path / "a.csv", delimiter=",", skiprows=1, usecols=1), dtype=torch.float32)
    assert torch.allclose(first.train[0] * std + mean, raw[:270], atol=1e-5)  # back to the original units
    scaled = write_csv(tmp_path / "b.csv", scale=10.0)
    resumed = load_data(f"csv:{scaled}:a", LoadOptions(options={"window": 16}, assets=first.assets()))
    assert resumed.assets() == first.assets()
    assert torch.allclose(resumed.train, (first.train * std + mean) * 10 / std - mean / std, atol=1e-4)
    with pytest.raises(DataError, match="3 channels but the run's saved statistics have 1"):
        load_data(f"csv:{scaled}", LoadOptions(options={"window": 16}, assets=first.assets()))
    with pytest.raises(DataError, match="no series_stats.json"):
        series_stats_from_assets({})


def test_csv_errors(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    with pytest.raises(ArgumentError, match="no column 'c'. Its columns: time, a, b"):
        load_data(f"csv:{path}:c")
    with pytest.raises(ArgumentError, match="no column '7'"):
        load_data(f"csv:{path}:7")
    with pytest.raises(DataError, match="no file"):
        load_data(f"csv:{tmp_path / 'missing.csv'}")
    with pytest.raises(DataError, match="is empty"):
        load_data(f"csv:{write(tmp_path / 'empty.csv', '')}")
    words = write(tmp_path / "words.csv", "name\nann\nbob\n")
    with pytest.raises(DataError, match="no numeric column"):
        load_data(f"csv:{words}")
    with pytest.raises(ArgumentError, match="300 steps: too few for a window of 500 .* lower window"):
        load_data(f"csv:{path}:a", options(window=500))


@pytest.mark.parametrize("name", ["sunspots", "co2"])
def test_shipped_series(name):
    source = load_data(name)
    assert source.kind == "series" and source.shape == (1, 64) and bool(torch.isfinite(source.train).all())
    assert source.train_batch(0, 4, seed=0)["x"].shape == (4, 1, 64) and len(source.validation()["x"]) >= 1
    if name == "co2":
        assert any("59 missing values of co2 interpolated" in note for note in source.notes)
    else:
        assert source.train.shape[1] + source.val.shape[1] == 309 and source.val.shape[1] == 64


# ============================================================================================= wav:PATH
def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, width: int = 2) -> Path:
    """samples (N, channels) of integers already in the sample width's range."""
    dtype = {1: np.uint8, 2: "<i2", 3: None, 4: "<i4"}[width]
    raw = (b"".join(int(v).to_bytes(3, "little", signed=True) for v in samples.flatten()) if width == 3
           else samples.astype(dtype).tobytes())
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def test_wav_fixture_is_audio_in_unit_range():
    source = load_data(f"wav:{FIXTURES / 'sweep-8khz.wav'}")
    assert source.kind == "audio" and source.shape == (1, 4096) and source.spec.extras["sample_rate"] == 8000
    assert source.assets() == {}  # scaled by dtype, no statistics to keep
    x = source.train_batch(0, 3, seed=0)["x"]
    assert x.shape == (3, 1, 4096) and x.dtype == torch.float32
    assert 0.45 < float(x.abs().max()) <= 0.5  # the sweep's amplitude, scaled by 1/32768
    assert source.validation()["x"].shape == (1, 1, 4096)  # 16000 samples: the last 4096 held out
    check_deterministic(source)


def test_wav_stereo_becomes_mono_and_8_bit_is_read(tmp_path):
    stereo = np.stack([np.full(3000, 16384), np.full(3000, -8192)], axis=1)  # +0.5 and -0.25
    source = load_data(f"wav:{write_wav(tmp_path / 's.wav', stereo)}", options(window=256))
    assert source.shape == (1, 256) and torch.allclose(source.train, torch.tensor(0.125))
    eight = load_data(f"wav:{write_wav(tmp_path / 'e.wav', np.full((3000, 1), 192), width=1)}", options(window=256))
    assert torch.allclose(eight.train, torch.tensor(0.5))


def test_wav_errors(tmp_path):
    with pytest.raises(DataError, match="no file"):
        load_data(f"wav:{tmp_path / 'missing.wav'}")
    with pytest.raises(DataError, match="not a PCM WAV file.*sox"):
        load_data(f"wav:{write(tmp_path / 'text.wav', 'not a wav at all')}")
    # IEEE float samples (format tag 3), as many editors export
    data = np.zeros(1000, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "float.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(DataError, match="not a PCM WAV file"):
        load_data(f"wav:{tmp_path / 'float.wav'}")
    with pytest.raises(DataError, match="24-bit samples"):
        load_data(f"wav:{write_wav(tmp_path / 'deep.wav', np.zeros((3000, 1), np.int64), width=3)}")
    with pytest.raises(DataError, match="holds no samples"):
        load_data(f"wav:{write_wav(tmp_path / 'silent.wav', np.zeros((0, 1)))}")
    with pytest.raises(ArgumentError, match="lower window"):
        load_data(f"wav:{FIXTURES / 'sweep-8khz.wav'}", options(window=9000))


# ============================================================================================= imagefolder:PATH
def write_images(root: Path, n: int = 10, size: int = 12) -> None:
    from PIL import Image

    for i in range(n):
        folder = root / ("odd" if i % 2 else "even")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), (20 * i, 255 - 20 * i, 7 * i)).save(folder / f"{i}.png")


def count_opens(monkeypatch) -> list[int]:
    from PIL import Image

    calls, real = [0], Image.open

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return calls


def test_imagefolder_cache_is_memory_mapped_and_not_read_again(tmp_path, monkeypatch, genlab_cache):
    from PIL import Image

    write_images(tmp_path / "imgs")
    opens = count_opens(monkeypatch)
    first = load_data(f"imagefolder:{tmp_path / 'imgs'}", LoadOptions(image_size=8))
    assert opens[0] > 0 and any("converted once" in note for note in first.notes)
    assert [p.parent for p in genlab_cache.rglob("train.npy")] and len(list((genlab_cache / "data").iterdir())) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the cache must not read the images again")

    monkeypatch.setattr(Image, "open", refuse)
    second = load_data(f"imagefolder:{tmp_path / 'imgs'}", LoadOptions(image_size=8))
    assert isinstance(second.stored_train, np.memmap) and second.stored_train.dtype == np.uint8
    assert any("memory-mapped" in note for note in second.notes)
    assert second.shape == (3, 8, 8) and second.class_names == ["even", "odd"]
    assert torch.equal(second.x_train, first.x_train) and torch.equal(second.y_val, first.y_val)


def test_imagefolder_memmap_batches_equal_in_memory_batches(tmp_path):
    write_images(tmp_path / "imgs", n=20)
    mapped = load_data(f"imagefolder:{tmp_path / 'imgs'}", LoadOptions(image_size=4))
    held = Dataset("held", torch.from_numpy(np.array(mapped.stored_train)), mapped.y_train,
                   torch.from_numpy(np.array(mapped.stored_val)), mapped.y_val, class_names=["even", "odd"])
    for index in range(4):
        assert same(mapped.train_batch(index, 4, seed=1), held.train_batch(index, 4, seed=1))
    check_deterministic(mapped)
    check_rank_slices(mapped, batch_size=2)


def test_imagefolder_changed_folder_is_converted_again(tmp_path, monkeypatch, genlab_cache):
    from PIL import Image

    root = tmp_path / "imgs"
    write_images(root)
    load_data(f"imagefolder:{root}", LoadOptions(image_size=8))
    opens = count_opens(monkeypatch)
    edited = root / "even" / "0.png"
    Image.new("RGB", (12, 12), (255, 255, 255)).save(edited)
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime even on coarse clocks
    again = load_data(f"imagefolder:{root}", LoadOptions(image_size=8))
    assert opens[0] > 0 and any("converted once" in note for note in again.notes)
    x = torch.cat([again.x_train, again.x_val])
    assert bool((x == 1.0).all(dim=(1, 2, 3)).any())  # the white image is in
    Image.new("RGB", (12, 12), (0, 0, 0)).save(root / "odd" / "new.png")
    added = load_data(f"imagefolder:{root}", LoadOptions(image_size=8))
    assert len(added.x_train) + len(added.x_val) == 11
    assert len(list((genlab_cache / "data").iterdir())) == 3  # one conversion per state of the folder


# ============================================================================================= domains:A+B
def test_domains_two_unpaired_sets(tmp_path):
    write_images(tmp_path / "imgs", n=12)
    source = load_data(f"domains:digits+imagefolder:{tmp_path / 'imgs'}", LoadOptions(image_size=8))
    assert source.kind == "image" and source.shape == (3, 8, 8)
    assert source.spec.conditions == () and source.spec.extras["inputs"] == ["x_b"]
    assert source.train_size() == 11  # the smaller domain (12 images, 1 held out)
    batch = source.train_batch(0, 4, seed=0)
    assert batch.keys() == {"x", "x_b"} and batch["x"].shape == batch["x_b"].shape == (4, 3, 8, 8)
    assert torch.equal(batch["x"][:, 0], batch["x"][:, 2])  # the gray digits, repeated to RGB
    assert batch["x"].dtype == batch["x_b"].dtype == torch.float32
    val = source.validation()
    assert val["x"].shape == (180, 3, 8, 8) and val["x_b"].shape == (1, 3, 8, 8)
    check_deterministic(source)
    check_rank_slices(source, batch_size=2)


def test_domains_default_size_and_own_orders():
    source = load_data("domains:digits+digits", LoadOptions(seed=0))
    assert source.shape == (1, 8, 8)
    batch = source.train_batch(0, 8, seed=0)
    assert not torch.equal(batch["x"], batch["x_b"])  # one set, two independent epoch orders


def test_domains_errors():
    with pytest.raises(ArgumentError, match="domains:A\\+B"):
        load_data("domains:digits")
    with pytest.raises(DataError, match="'moons' is a points source"):
        load_data("domains:digits+moons")


# ============================================================================================= registry
def test_every_scheme_and_series_is_registered():
    infos = {info.name: info for info in dataset_infos()}
    schemes = {"imagefolder": "imagefolder:PATH", "text": "text:PATH", "pairs": "pairs:PATH",
               "csv": "csv:PATH[:COLUMN]", "wav": "wav:PATH", "domains": "domains:A+B"}
    for name, usage in schemes.items():
        assert infos[name].scheme and infos[name].usage == usage
    for name in ("text", "pairs", "csv", "wav"):
        assert infos[name].options
    assert not infos["sunspots"].scheme and not infos["co2"].scheme
