"""genlab.data: the image and point loaders, on files the tests write themselves (IDX .gz, CIFAR pickles, PNGs).

The other sources (text, pairs, series, audio, two domains, the image-folder cache) are in test_data_sources.py.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data import Dataset, LoadOptions, dataset_infos, load_data, load_dataset
from genlab.data.images import CIFAR_MD5, CIFAR_URL, IDX_SOURCES, read_idx
from genlab.data.toy import EIGHT_GAUSSIANS_STD, eight_gaussians_centers
from genlab.errors import DataError, UnknownNameError

MNIST_URL = IDX_SOURCES["mnist"][0]


@pytest.fixture(autouse=True)
def genlab_cache(tmp_path_factory, monkeypatch):
    """imagefolder:PATH converts into $GENLAB_CACHE: a fresh one per test, apart from the image folders."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


def check_split(ds: Dataset, n_total: int, item_shape: tuple[int, ...]) -> None:
    assert ds.x_train.dtype == torch.float32 and ds.x_val.dtype == torch.float32
    assert ds.shape == item_shape and tuple(ds.x_val.shape[1:]) == item_shape
    assert len(ds.x_train) + len(ds.x_val) == n_total
    if ds.y_train is not None:
        assert ds.y_train.dtype == torch.int64 and len(ds.y_train) == len(ds.x_train)
        assert len(ds.y_val) == len(ds.x_val)


def in_unit_range(x: torch.Tensor) -> bool:
    return bool(x.min() >= -1.0 and x.max() <= 1.0)


# ------------------------------------------------------------------ digits
def test_digits_shape_range_and_labels():
    ds = load_dataset("digits")
    check_split(ds, 1797, (1, 8, 8))
    assert ds.kind == "image" and ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert len(ds.x_val) == round(1797 * 0.1)
    x = torch.cat([ds.x_train, ds.x_val])
    assert x.min() == -1.0 and x.max() == 1.0  # 0 and 16 of the 17 grey levels map to the ends
    assert sorted(torch.cat([ds.y_train, ds.y_val]).unique().tolist()) == list(range(10))


def test_digits_split_is_fixed_by_seed():
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_val, c.x_val)
    # a different split of the same items
    all_a = torch.cat([a.x_train, a.x_val]).flatten(1)
    all_c = torch.cat([c.x_train, c.x_val]).flatten(1)
    assert torch.equal(all_a.sum(0), all_c.sum(0))


def test_digits_resize():
    ds = load_dataset("digits", image_size=16)
    assert ds.shape == (1, 16, 16)
    assert in_unit_range(ds.x_train)


def test_digits_and_points_are_stored_as_float():
    # digits has 17 grey levels (0..16), not 256: uint8 would not hold them exactly
    assert load_dataset("digits").stored_train.dtype == torch.float32
    assert load_dataset("moons").stored_train.dtype == torch.float32


def test_loaders_take_load_options(tmp_path):
    write_idx_pair(tmp_path, "t10k", 10, seed=0)
    ds = load_data("kmnist", LoadOptions(data_dir=tmp_path, seed=2, val_fraction=0.3))
    assert isinstance(ds, Dataset) and len(ds.x_val) == 3 and ds.class_names[1] == "ki"


# ------------------------------------------------------------------ IDX (MNIST family)
def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    raw = idx_bytes(array.astype(np.uint8))
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_idx_pair(directory: Path, prefix: str, n: int, seed: int, size: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_read_idx_checks_header_against_length(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "ok.gz", images)), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / "plain-idx3-ubyte", images, compress=False)), images)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(idx_bytes(images)[:-5]))
    with pytest.raises(DataError, match=r"header promises 24 bytes .* holds 19"):
        read_idx(short)


def test_idx_test_split_only(tmp_path):
    images, labels = write_idx_pair(tmp_path, "t10k", 20, seed=0)
    ds = load_dataset("mnist", data_dir=tmp_path, seed=3)
    check_split(ds, 20, (1, 6, 6))
    assert len(ds.x_val) == 2
    assert any("only the test split" in note for note in ds.notes)
    # every image arrives, with its own label, mapped 0 -> -1 and 255 -> 1
    x = torch.cat([ds.x_train, ds.x_val])
    y = torch.cat([ds.y_train, ds.y_val])
    expected = torch.from_numpy(images.astype(np.float32) / 127.5 - 1)[:, None]
    order = [int(np.flatnonzero((expected.flatten(1) == xi.flatten()).all(1))[0]) for xi in x]
    assert sorted(order) == list(range(20))
    assert y.tolist() == labels[order].tolist()
    assert ds.num_classes == 10


def test_idx_both_splits_use_test_for_validation(tmp_path):
    train_images, train_labels = write_idx_pair(tmp_path, "train", 12, seed=1)
    test_images, test_labels = write_idx_pair(tmp_path, "t10k", 5, seed=2)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert len(ds.x_train) == 12 and len(ds.x_val) == 5
    assert ds.y_train.tolist() == train_labels.tolist() and ds.y_val.tolist() == test_labels.tolist()
    assert torch.equal(ds.x_val[:, 0], torch.from_numpy(test_images.astype(np.float32) / 127.5 - 1))
    assert any("official test split for validation" in note for note in ds.notes)
    assert ds.class_names[0] == "T-shirt/top"


def test_idx_is_stored_as_uint8(tmp_path):
    images, _ = write_idx_pair(tmp_path, "train", 6, seed=0)
    write_idx_pair(tmp_path, "t10k", 3, seed=1)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.stored_train.dtype == torch.uint8 and ds.stored_train.shape == (6, 1, 6, 6)
    assert torch.equal(ds.stored_train[:, 0], torch.from_numpy(images))
    batch = ds.train_batch(0, 3, seed=0)
    assert batch["x"].dtype == torch.float32 and in_unit_range(batch["x"])  # decoded per batch


def test_idx_resize(tmp_path):
    write_idx_pair(tmp_path, "t10k", 10, seed=0, size=28)
    ds = load_dataset("mnist", data_dir=tmp_path, image_size=14)
    assert ds.shape == (1, 14, 14) and in_unit_range(ds.x_train)
    assert ds.stored_train.dtype == torch.uint8  # resized in float, rounded back to 8 bits


def test_idx_resize_keeps_flat_images_exact(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((4, 28, 28), 77, dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(4, dtype=np.uint8))
    ds = load_dataset("mnist", data_dir=tmp_path, image_size=12)
    assert bool((ds.stored_train == 77).all())


def test_idx_missing_files_error_names_files_and_source(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(err.value)
    for name in IDX_SOURCES["mnist"][2]:
        assert name in message
    assert MNIST_URL in message and str(tmp_path) in message and "--download" in message


def test_idx_half_pair_error(tmp_path):
    write_idx_pair(tmp_path, "t10k", 5, seed=0)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="half of the t10k split: t10k-labels-idx1-ubyte.gz is missing") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert MNIST_URL + "t10k-labels-idx1-ubyte.gz" in str(err.value)


def test_idx_truncated_gz_error(tmp_path):
    write_idx_pair(tmp_path, "t10k", 30, seed=0)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_idx_bad_magic_error(tmp_path):
    write_idx_pair(tmp_path, "t10k", 5, seed=0)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"PK\x03\x04 not an idx file at all"))
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_images_and_labels_of_different_lengths(tmp_path):
    write_idx_pair(tmp_path, "t10k", 5, seed=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_shared_mnist(mnist_dir):
    ds = load_dataset("mnist", data_dir=mnist_dir)
    if (mnist_dir / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("the shared MNIST holds both splits; this test is about the test split alone")
    check_split(ds, 10_000, (1, 28, 28))
    assert len(ds.x_val) == 1000
    assert any("only the test split" in note for note in ds.notes)
    assert in_unit_range(ds.x_train) and ds.x_train.min() == -1.0 and ds.x_train.max() == 1.0
    assert sorted(ds.y_train.unique().tolist()) == list(range(10))


# ------------------------------------------------------------------ CIFAR-10
def write_cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"data": data, b"labels": labels}, f)
    return data, labels


def test_cifar10_train_and_test_batches(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    d1, l1 = write_cifar_batch(batches / "data_batch_1", 6, seed=0)
    d2, l2 = write_cifar_batch(batches / "data_batch_2", 4, seed=1)
    dt, lt = write_cifar_batch(batches / "test_batch", 3, seed=2)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    check_split(ds, 13, (3, 32, 32))
    assert len(ds.x_train) == 10 and len(ds.x_val) == 3
    assert ds.y_train.tolist() == l1 + l2 and ds.y_val.tolist() == lt
    # rows hold the red plane, then green, then blue, each row-major
    first = torch.from_numpy(d1[0].reshape(3, 32, 32).astype(np.float32) / 127.5 - 1)
    assert torch.equal(ds.x_train[0], first)
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    assert any("train batches 2/5" in note for note in ds.notes)


def test_cifar10_test_batch_only_and_resize(tmp_path):
    write_cifar_batch(tmp_path / "test_batch", 20, seed=0)  # batches straight in data_dir also work
    ds = load_dataset("cifar10", data_dir=tmp_path, image_size=16)
    check_split(ds, 20, (3, 16, 16))
    assert in_unit_range(ds.x_train)
    assert any("only test batches" in note for note in ds.notes)


def test_cifar10_is_stored_as_uint8(tmp_path):
    data, _ = write_cifar_batch(tmp_path / "data_batch_1", 4, seed=0)
    write_cifar_batch(tmp_path / "test_batch", 2, seed=1)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.stored_train.dtype == torch.uint8
    assert torch.equal(ds.stored_train.flatten(1), torch.from_numpy(data))


class Payload:
    """Unpickling this calls print(...): what a tampered batch could do with os.system instead."""

    def __reduce__(self):
        return print, ("unpickled code ran",)


def test_cifar10_refuses_pickles_that_call_code(tmp_path, capsys):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": Payload()}, f)
    with pytest.raises(DataError, match="builtins.print") as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "holds only numpy arrays" in str(err.value) and CIFAR_URL in str(err.value)
    assert "unpickled code ran" not in capsys.readouterr().out


def python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """{"data": data, "labels": labels} as Python 2's cPickle wrote the official batches (protocol 2,
    str for bytes, numpy.core globals): Python 3's pickler cannot write these."""
    def string(b: bytes) -> bytes:  # SHORT_BINSTRING or BINSTRING
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b

    def integer(n: int) -> bytes:  # BININT
        return b"J" + struct.pack("<i", n)

    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R("
             + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b")
             + b"\x87R(" + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86" + dtype
             + b"\x89" + string(data.tobytes()) + b"tb")
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + b"(" + b"".join(map(integer, labels)) + b"lu."


def test_cifar10_reads_python2_and_protocol_5_pickles(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    (tmp_path / "data_batch_1").write_bytes(python2_pickle(data, [1, 2, 3]))  # the official format
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data[::-1].copy(), b"labels": [3, 2, 1]}, f, protocol=5)  # numpy 2's _frombuffer
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert torch.equal(ds.stored_train.flatten(1), torch.from_numpy(data)) and ds.y_train.tolist() == [1, 2, 3]
    assert torch.equal(ds.stored_val.flatten(1), torch.from_numpy(data[::-1].copy())) and ds.y_val.tolist() == [3, 2, 1]


def test_cifar10_archive_must_match_its_published_md5(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the real archive")
    with pytest.raises(DataError, match=f"not the published {CIFAR_MD5}"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 batches") as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert CIFAR_URL in str(err.value)
    bad = tmp_path / "test_batch"
    write_cifar_batch(bad, 5, seed=0)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("cifar10", data_dir=tmp_path)


# ------------------------------------------------------------------ folders of images
def write_png(path: Path, mode: str, size: tuple[int, int], value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, colour).save(path)


def test_imagefolder_rgb_with_classes(tmp_path):
    for i in range(3):
        write_png(tmp_path / "cats" / f"{i}.png", "RGB", (20, 12), 10 * i)
        write_png(tmp_path / "dogs" / f"{i}.png", "RGB", (9, 9), 200)
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    check_split(ds, 6, (3, 8, 8))
    assert ds.stored_train.dtype == np.uint8
    assert ds.class_names == ["cats", "dogs"]
    x, y = torch.cat([ds.x_train, ds.x_val]), torch.cat([ds.y_train, ds.y_val])
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    dogs = x[y == 1]
    # a flat colour survives resizing: red 200, green 55, blue 0
    assert torch.allclose(dogs[:, 0], torch.full_like(dogs[:, 0], 200 / 127.5 - 1))
    assert torch.allclose(dogs[:, 1], torch.full_like(dogs[:, 1], 55 / 127.5 - 1))
    assert torch.equal(dogs[:, 2], torch.full_like(dogs[:, 2], -1.0))


def test_imagefolder_grayscale_flat_default_size(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", "L", (40, 40), 255)
    ds = load_dataset(f"imagefolder:{tmp_path}")
    check_split(ds, 4, (1, 32, 32))  # grayscale stays one channel; default size 32
    assert ds.y_train is None and ds.num_classes == 0
    assert torch.equal(ds.x_train, torch.ones_like(ds.x_train))


def test_imagefolder_mixed_modes_become_rgb(tmp_path):
    write_png(tmp_path / "a.png", "L", (8, 8), 0)
    write_png(tmp_path / "b.png", "RGB", (8, 8), 0)
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert ds.shape == (3, 8, 8)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    write_png(tmp_path / "good.png", "RGB", (8, 8), 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match="broken.png is truncated or not an image"):
        load_dataset(f"imagefolder:{tmp_path}")


# ------------------------------------------------------------------ 2-D toy sets
TOY_SETS = ["moons", "8gaussians", "swissroll", "checkerboard"]


@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_points_shape_and_range(name):
    ds = load_dataset(name)
    assert ds.kind == "points"
    check_split(ds, 20_000, (2,))
    x = torch.cat([ds.x_train, ds.x_val])
    # "about [-1, 1]": the swiss roll's outer turn and its noise reach 1.14; the plots show [-1.5, 1.5]
    assert x.abs().max() <= 1.2, "toy points should lie within about [-1, 1]"
    assert x.abs().max() >= 0.8
    assert x.std(0).min() > 0.2  # spread over the square, not collapsed
    assert torch.equal(load_dataset(name).x_val, ds.x_val)


def test_eight_gaussians_has_eight_modes():
    ds = load_dataset("8gaussians")
    x, y = torch.cat([ds.x_train, ds.x_val]), torch.cat([ds.y_train, ds.y_val])
    centres = torch.tensor(eight_gaussians_centers(), dtype=torch.float32)
    assert ds.num_classes == 8
    counts = torch.bincount(y, minlength=8)
    assert counts.min() > 0.9 * len(y) / 8 and counts.max() < 1.1 * len(y) / 8
    nearest = torch.cdist(x, centres).argmin(1)
    assert torch.equal(nearest, y)  # every point belongs to its labelled mode
    for k in range(8):
        members = x[y == k]
        assert torch.allclose(members.mean(0), centres[k], atol=0.01)
        assert members.std(0).sub(EIGHT_GAUSSIANS_STD).abs().max() < 0.005


# ------------------------------------------------------------------ registry
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("mnsit")
    message = str(err.value)
    assert "unknown dataset 'mnsit'" in message
    for info in dataset_infos():
        assert info.name in message
    assert "imagefolder:PATH" in message


def test_dataset_infos_cover_the_loaders():
    names = {info.name for info in dataset_infos()}
    assert {"digits", "mnist", "fashion-mnist", "kmnist", "cifar10", *TOY_SETS} <= names
    assert all(info.needs_files == (info.name in {"mnist", "fashion-mnist", "kmnist", "cifar10", "shakespeare"})
               for info in dataset_infos())
