"""Image datasets: scikit-learn digits (embedded), IDX (MNIST family), CIFAR-10, and folders of images."""

from __future__ import annotations

import gzip
import pickle  # only for CIFAR-10's official python batches, which are plain dicts of arrays
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .base import Dataset, DatasetInfo, register, split
from .download import download

DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# name -> (base URL, class names, {file: md5}); checksums as published by each dataset's authors.
IDX_SOURCES = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        DIGIT_NAMES,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        FASHION_NAMES,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "kmnist": (
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        KMNIST_NAMES,
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    ),
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"


def to_unit_range(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [-1, 1]."""
    return torch.from_numpy(images_uint8.astype(np.float32)).div_(127.5).sub_(1.0)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    antialias = size < x.shape[-1]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias).clamp_(-1, 1)


# ---------------------------------------------------------------- digits (embedded default)
def load_digits(name: str, image_size: int | None, seed: int, val_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0 * 2 - 1).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    xt, yt, xv, yv = split(resize(x, image_size), y, val_fraction, seed)
    return Dataset(name, xt, yt, xv, yv, class_names=DIGIT_NAMES, source="scikit-learn (UCI optical digits), embedded")


# ---------------------------------------------------------------- IDX: MNIST, Fashion-MNIST, KMNIST
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), checking its header against its length."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is truncated or corrupt ({e}). Delete it and download it again.") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number). Delete it and download it again.")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims))
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(
            f"{path} is truncated: its header promises {expected} bytes of data {dims} but it holds {len(body)}. "
            "Delete it and download it again."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(data_dir: Path, filename: str) -> Path | None:
    for candidate in (data_dir / filename, data_dir / filename.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    return None


def load_idx(name: str, data_dir, download: bool, image_size: int | None, seed: int, val_fraction: float) -> Dataset:
    base_url, class_names, files = IDX_SOURCES[name]
    data_dir = Path(data_dir) if data_dir else Path("data") / name
    if download:
        for fname, md5 in files.items():
            if _find(data_dir, fname) is None:
                globals()["download"](base_url + fname, data_dir / fname, md5)
    parts = {}
    for prefix in ("train", "t10k"):
        img, lab = _find(data_dir, f"{prefix}-images-idx3-ubyte.gz"), _find(data_dir, f"{prefix}-labels-idx1-ubyte.gz")
        if img and lab:
            parts[prefix] = (read_idx(img), read_idx(lab))
        elif img or lab:
            missing = f"{prefix}-labels-idx1-ubyte.gz" if img else f"{prefix}-images-idx3-ubyte.gz"
            raise DataError(f"{data_dir} has half of the {prefix} split: {missing} is missing. Get it from {base_url}{missing}.")
    if not parts:
        raise DataError(
            f"no {name} files in {data_dir}. Expected {', '.join(files)} (the test pair alone is enough). "
            f"Download them from {base_url} into that directory, pass --data-dir DIR, or add --download."
        )
    for images, labels in parts.values():
        if len(images) != len(labels):
            raise DataError(f"{data_dir}: {len(images)} images but {len(labels)} labels; the files do not belong together.")
    notes = []
    to_xy = lambda p: (resize(to_unit_range(p[0][:, None]), image_size), torch.from_numpy(p[1].astype(np.int64)))
    if "train" in parts and "t10k" in parts:
        (xt, yt), (xv, yv) = to_xy(parts["train"]), to_xy(parts["t10k"])
        notes.append("train split for training, official test split for validation")
    else:
        only = "train" if "train" in parts else "test"
        x, y = to_xy(parts["train" if only == "train" else "t10k"])
        xt, yt, xv, yv = split(x, y, val_fraction, seed)
        notes.append(f"only the {only} split was found in {data_dir}; it was split {1 - val_fraction:.0%}/{val_fraction:.0%} (seed {seed})")
    return Dataset(name, xt, yt, xv, yv, class_names=class_names, source=f"{data_dir} ({base_url})", notes=notes)


# ---------------------------------------------------------------- CIFAR-10 (python pickle batches)
def load_cifar10(name: str, data_dir, download: bool, image_size: int | None, seed: int, val_fraction: float) -> Dataset:
    data_dir = Path(data_dir) if data_dir else Path("data") / name
    batch_dir = next((d for d in (data_dir / "cifar-10-batches-py", data_dir) if (d / "data_batch_1").exists() or (d / "test_batch").exists()), None)
    if batch_dir is None and download:
        archive = globals()["download"](CIFAR_URL, data_dir / "cifar-10-python.tar.gz", CIFAR_MD5)
        with tarfile.open(archive) as tar:
            tar.extractall(data_dir, filter="data")
        batch_dir = data_dir / "cifar-10-batches-py"
    if batch_dir is None:
        raise DataError(
            f"no CIFAR-10 batches in {data_dir}. Expected cifar-10-batches-py/data_batch_1..5 and test_batch "
            f"(the python version). Download {CIFAR_URL} and extract it there, pass --data-dir DIR, or add --download."
        )

    def read(names):
        xs, ys = [], []
        for n in names:
            path = batch_dir / n
            try:
                with open(path, "rb") as f:
                    d = pickle.load(f, encoding="bytes")  # the official format; plain dict of numpy arrays
                xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d[b"labels"], dtype=np.int64))
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as e:
                raise DataError(f"{path} is truncated or corrupt ({e!r}). Delete it and extract {CIFAR_URL} again.") from None
        return resize(to_unit_range(np.concatenate(xs)), image_size), torch.from_numpy(np.concatenate(ys))

    train_names = [f"data_batch_{i}" for i in range(1, 6) if (batch_dir / f"data_batch_{i}").exists()]
    if train_names and (batch_dir / "test_batch").exists():
        (xt, yt), (xv, yv) = read(train_names), read(["test_batch"])
        notes = [f"train batches {len(train_names)}/5, test batch for validation"]
    else:
        x, y = read(train_names or ["test_batch"])
        xt, yt, xv, yv = split(x, y, val_fraction, seed)
        notes = [f"only {'train' if train_names else 'test'} batches found; split {1 - val_fraction:.0%}/{val_fraction:.0%}"]
    return Dataset(name, xt, yt, xv, yv, class_names=CIFAR_NAMES, source=str(batch_dir), notes=notes)


# ---------------------------------------------------------------- the user's own images
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def load_imagefolder(path: str, image_size: int | None, seed: int, val_fraction: float) -> Dataset:
    """Images under PATH; subfolders become classes. Grayscale if every image is, else RGB."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder: '{root}' is not a directory. Give imagefolder:PATH with PATH a folder of PNG/JPEG files.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"imagefolder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}.")
    size = image_size or 32
    images, modes = [], set()
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                modes.add("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                images.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise DataError(f"imagefolder: {f} is truncated or not an image ({e}). Remove or replace it.") from None
    mode = "L" if modes == {"L"} else "RGB"
    arrays = []
    for im in images:
        im = im.convert(mode).resize((size, size), Image.BICUBIC)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if mode == "L" else a.transpose(2, 0, 1))
    x = to_unit_range(np.stack(arrays))
    class_dirs = sorted({f.parent.relative_to(root).parts[0] for f in files if f.parent != root})
    y, class_names = None, None
    if class_dirs and all(f.parent != root for f in files):
        class_names = class_dirs
        y = torch.tensor([class_dirs.index(f.parent.relative_to(root).parts[0]) for f in files])
    xt, yt, xv, yv = split(x, y, val_fraction, seed)
    return Dataset(f"imagefolder:{root}", xt, yt, xv, yv, class_names=class_names, source=str(root),
                   notes=[f"{len(files)} images, {mode}, resized to {size}x{size}"])


register(DatasetInfo("digits", "8x8 handwritten digits (the embedded default: no files needed)",
                     "scikit-learn, embedded", "1x8x8", "10 (digits 0-9)", load_digits))
for _name, (_url, _classes, _files) in IDX_SOURCES.items():
    register(DatasetInfo(_name, f"{_name} 28x28 grayscale (official IDX .gz files; the test pair alone works)",
                         _url, "1x28x28", f"10 ({', '.join(_classes[:3])}, ...)", load_idx, needs_files=True))
register(DatasetInfo("cifar10", "CIFAR-10 32x32 colour (the python pickle batches)", CIFAR_URL, "3x32x32",
                     "10 (airplane, automobile, ...)", load_cifar10, needs_files=True))
