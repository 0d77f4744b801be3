"""Image datasets: scikit-learn digits (embedded), IDX (MNIST family) and CIFAR-10.

8-bit sets stay uint8 (N, C, H, W) in memory, a quarter of float32, and are decoded to [-1, 1] per
batch (`base.decode`). Folders of the user's own images live in `imagecache.py`.
"""

from __future__ import annotations

import gzip
import io
import pickle  # CIFAR-10's official batches are pickles: read through `_CifarUnpickler` only
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..files import file_digest
from .base import Dataset, DatasetInfo, LoadOptions, register, split
from .download import download

DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# name -> (base URL, class names, {file: md5}); checksums as published by each dataset's authors.
# handwritten digits carry captions of their measured properties (data/captions.py)
CAPTIONED = ("mnist",)

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
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}  # what imagefolder:PATH and `evaluate` read


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Square-resize images (N, C, H, W); uint8 stays uint8 (resized in float, rounded back)."""
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    antialias = size < x.shape[-1]
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    if x.dtype == torch.uint8:
        return y.round_().clamp_(0, 255).to(torch.uint8)
    return y.clamp_(-1, 1)


def _data_dir(name: str, opts: LoadOptions) -> Path:
    return Path(opts.data_dir) if opts.data_dir else Path("data") / name


# ---------------------------------------------------------------- digits (embedded default)
def load_digits(name: str, opts: LoadOptions) -> Dataset:
    """scikit-learn's 8x8 digits; 17 grey levels (0..16), so float32 rather than uint8."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0 * 2 - 1).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    xt, yt, xv, yv = split(resize(x, opts.image_size), y, opts.val_fraction, opts.seed)
    return Dataset(name, xt, yt, xv, yv, class_names=DIGIT_NAMES, source="scikit-learn (UCI optical digits), embedded",
                   **_captions(xt, yt, xv, yv, opts))


def _captions(xt, yt, xv, yv, opts: LoadOptions) -> dict:
    """Captions from measured properties ("a small thick seven") for handwritten digits: Dataset arguments."""
    from .captions import CAPTION_LENGTH, captioned_items, tokenizer

    train, val, assets = captioned_items(xt, yt, xv, yv, opts.assets)
    return {"items_train": train, "items_val": val, "assets": assets,
            "extras": {"text_vocab_size": tokenizer().vocab_size, "text_length": CAPTION_LENGTH}}


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


def load_idx(name: str, opts: LoadOptions) -> Dataset:
    """An MNIST-family set from its official IDX files (the test pair alone is enough), checked by MD5 on download."""
    base_url, class_names, files = IDX_SOURCES[name]
    data_dir = _data_dir(name, opts)
    if opts.download:
        for fname, md5 in files.items():
            if _find(data_dir, fname) is None:
                download(base_url + fname, data_dir / fname, md5)
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

    def to_xy(pair: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(pair[0].copy())[:, None]  # (N, 1, 28, 28) uint8; copy: frombuffer is read-only
        return resize(images, opts.image_size), torch.from_numpy(pair[1].astype(np.int64))

    notes = []
    if "train" in parts and "t10k" in parts:
        (xt, yt), (xv, yv) = to_xy(parts["train"]), to_xy(parts["t10k"])
        notes.append("train split for training, official test split for validation")
    else:
        only = "train" if "train" in parts else "test"
        x, y = to_xy(parts["train" if only == "train" else "t10k"])
        xt, yt, xv, yv = split(x, y, opts.val_fraction, opts.seed)
        notes.append(f"only the {only} split was found in {data_dir}; it was split "
                     f"{1 - opts.val_fraction:.0%}/{opts.val_fraction:.0%} (seed {opts.seed})")
    captions = _captions(xt, yt, xv, yv, opts) if name in CAPTIONED else {}
    return Dataset(name, xt, yt, xv, yv, class_names=class_names, source=f"{data_dir} ({base_url})", notes=notes,
                   **captions)


# ---------------------------------------------------------------- CIFAR-10 (python pickle batches)
class _Refused(pickle.UnpicklingError):
    """A global that no CIFAR-10 batch needs: told apart from a truncated file in the error message."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds and nothing else.

    A batch is a dict of a str, a list of ints, a list of file names and one numpy array, written by
    Python 2's cPickle; only the array needs globals (`numpy.core.multiarray._reconstruct`,
    `numpy.ndarray`, `numpy.dtype`). Batches re-pickled under numpy >= 2 name `numpy._core` instead,
    and protocol 5 uses `_frombuffer`. Every other global (os.system, builtins.eval...) is refused, so
    a tampered file cannot run code.
    """

    def find_class(self, module: str, name: str):
        core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): core.numeric._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): core.numeric._frombuffer,
        }
        if (module, name) not in allowed:
            raise _Refused(f"it asks for {module}.{name}, and a CIFAR-10 batch holds only numpy arrays")
        return allowed[module, name]


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> (uint8 (N, 3, 32, 32), int64 (N,)), through the restricted unpickler."""
    try:
        d = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows: red plane, green, blue
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except _Refused as e:
        raise DataError(f"{path} was refused: {e}. Delete it and extract {CIFAR_URL} again.") from None
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"{path} is truncated or corrupt ({e!r}). Delete it and extract {CIFAR_URL} again.") from None
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels. Delete it and extract {CIFAR_URL} again.")
    return x, y


def load_cifar10(name: str, opts: LoadOptions) -> Dataset:
    """CIFAR-10 from its python batches under data_dir (or data_dir/cifar-10-batches-py).

    The archive (downloaded with --download, or left in data_dir by hand) must match the MD5 its
    authors publish before it is extracted; extraction refuses links and absolute paths
    (tarfile's "data" filter). The batches are read with an unpickler that accepts numpy arrays only.
    """
    data_dir = _data_dir(name, opts)
    batch_dir = next((d for d in (data_dir / "cifar-10-batches-py", data_dir)
                      if (d / "data_batch_1").exists() or (d / "test_batch").exists()), None)
    archive = data_dir / "cifar-10-python.tar.gz"
    if batch_dir is None and (opts.download or archive.exists()):
        if not archive.exists():
            download(CIFAR_URL, archive, CIFAR_MD5)
        elif (got := file_digest(archive, "md5")) != CIFAR_MD5:
            raise DataError(f"{archive} has md5 {got}, not the published {CIFAR_MD5}: it is truncated or another file. "
                            "Delete it and download it again (--download).")
        with tarfile.open(archive) as tar:
            tar.extractall(data_dir, filter="data")
        batch_dir = data_dir / "cifar-10-batches-py"
    if batch_dir is None:
        raise DataError(
            f"no CIFAR-10 batches in {data_dir}. Expected cifar-10-batches-py/data_batch_1..5 and test_batch "
            f"(the python version). Download {CIFAR_URL} and extract it there, pass --data-dir DIR, or add --download."
        )

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(read_cifar_batch(batch_dir / n) for n in names))
        return resize(torch.from_numpy(np.concatenate(xs)), opts.image_size), torch.from_numpy(np.concatenate(ys))

    train_names = [f"data_batch_{i}" for i in range(1, 6) if (batch_dir / f"data_batch_{i}").exists()]
    if train_names and (batch_dir / "test_batch").exists():
        (xt, yt), (xv, yv) = read(train_names), read(["test_batch"])
        notes = [f"train batches {len(train_names)}/5, test batch for validation"]
    else:
        x, y = read(train_names or ["test_batch"])
        xt, yt, xv, yv = split(x, y, opts.val_fraction, opts.seed)
        notes = [f"only {'train' if train_names else 'test'} batches found; "
                 f"split {1 - opts.val_fraction:.0%}/{opts.val_fraction:.0%}"]
    return Dataset(name, xt, yt, xv, yv, class_names=CIFAR_NAMES, source=str(batch_dir), notes=notes)


register(DatasetInfo("digits", "8x8 handwritten digits (the embedded default: no files needed)",
                     "scikit-learn, embedded", "1x8x8", "10 (digits 0-9)", load_digits))
for _name, (_url, _classes, _files) in IDX_SOURCES.items():
    register(DatasetInfo(_name, f"{_name} 28x28 grayscale (official IDX .gz files; the test pair alone works)",
                         _url, "1x28x28", f"10 ({', '.join(_classes[:3])}, ...)", load_idx, needs_files=True))
register(DatasetInfo("cifar10", "CIFAR-10 32x32 colour (the python pickle batches)", CIFAR_URL, "3x32x32",
                     "10 (airplane, automobile, ...)", load_cifar10, needs_files=True))
