"""`imagefolder:PATH`: the user's own images, converted once into a memory-mapped uint8 cache.

The first load decodes every image (with a progress bar), resizes it and writes the training and
validation parts as .npy files under `$GENLAB_CACHE/data` (default ~/.cache/genlab/data). Later loads
memory-map them (`np.load(mmap_mode="r")`): no image is decoded again, and a set larger than RAM still
trains, since a batch reads only its own rows from disk.

The cache key covers everything the arrays depend on: the folder, its sorted file list with each
file's size and mtime, the image size, and the split (seed, validation fraction). Adding, removing
or editing one image converts the folder again; stale conversions are left for the user to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..files import cache_root
from .base import Dataset, DatasetInfo, LoadOptions, register, split
from .folder_captions import caption_file, folder_caption_items
from .images import IMAGE_SUFFIXES

CACHE_FORMAT = 1  # bump when the conversion changes: older caches are then ignored
DEFAULT_SIZE = 32


def cache_dir() -> Path:
    """Where converted folders live: $GENLAB_CACHE/data, default ~/.cache/genlab/data."""
    return cache_root() / "data"


def _cache_key(root: Path, files: list[Path], size: int, opts: LoadOptions) -> str:
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root), size, opts.seed, opts.val_fraction]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _labels(root: Path, files: list[Path]) -> tuple[torch.Tensor | None, list[str] | None]:
    """Class = first subfolder, when every image lies in one; unlabelled otherwise."""
    if any(f.parent == root for f in files):
        return None, None
    names = sorted({f.relative_to(root).parts[0] for f in files})
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[f.relative_to(root).parts[0]] for f in files], dtype=torch.int64), names


def _convert(root: Path, files: list[Path], size: int, opts: LoadOptions, dest: Path) -> None:
    """Decode, resize and write every image into dest/{train,val}.npy (+ labels and meta.json)."""
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    def broken(f: Path, e: Exception) -> DataError:
        return DataError(f"imagefolder: {f} is truncated or not an image ({e}). Remove or replace it.")

    # Pass 1 reads headers only (Image.open decodes no pixels): grayscale if every image is, else RGB.
    gray = True
    for f in files:
        try:
            with Image.open(f) as im:
                gray &= im.mode in ("L", "1", "I;16", "I")
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise broken(f, e) from None
    mode, channels = ("L", 1) if gray else ("RGB", 3)

    y, class_names = _labels(root, files)
    train_ids, y_train, val_ids, y_val = split(torch.arange(len(files)), y, opts.val_fraction, opts.seed)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # Pass 2 decodes each image straight into its row of the on-disk arrays: RAM holds one image.
        parts = {}
        slot = {}
        for part, ids in (("train", train_ids), ("val", val_ids)):
            parts[part] = np.lib.format.open_memmap(tmp / f"{part}.npy", mode="w+", dtype=np.uint8,
                                                    shape=(len(ids), channels, size, size))
            slot.update({int(i): (part, row) for row, i in enumerate(ids)})
        for i, f in enumerate(tqdm(files, desc=f"imagefolder: converting {root.name}", unit="img", disable=None)):
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert(mode).resize((size, size), Image.BICUBIC), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise broken(f, e) from None
            part, row = slot[i]
            parts[part][row] = a[None] if mode == "L" else a.transpose(2, 0, 1)  # (C, H, W)
        for array in parts.values():
            array.flush()
        del parts
        if y is not None:
            np.save(tmp / "y_train.npy", y_train.numpy())
            np.save(tmp / "y_val.npy", y_val.numpy())
        meta = {"format": CACHE_FORMAT, "root": str(root), "images": len(files), "mode": mode, "size": size,
                "class_names": class_names}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, dest)  # atomic: a cache directory is complete or absent
        except OSError:
            if not (dest / "meta.json").exists():  # not another process that converted first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_imagefolder(path: str, opts: LoadOptions) -> Dataset:
    """Images under PATH (subfolders become classes), square-resized, from the on-disk cache.

    Grayscale if every image is, else RGB. The training part is an `np.memmap` of uint8 (N, C, S, S).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"imagefolder: '{root}' is not a directory. Give imagefolder:PATH with PATH a folder of PNG/JPEG files.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"imagefolder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}.")
    if len(files) < 2:
        raise DataError(f"imagefolder: only one image under {root}; at least two are needed (one is held out).")
    size = opts.image_size or DEFAULT_SIZE
    dest = cache_dir() / f"imagefolder-{_cache_key(root, files, size, opts)}"
    if (dest / "meta.json").exists():
        how = f"memory-mapped from the cache {dest}"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _convert(root, files, size, opts, dest)
        how = f"converted once into the cache {dest}"
    meta = json.loads((dest / "meta.json").read_text())
    x_train = np.load(dest / "train.npy", mmap_mode="r")  # (N, C, S, S) uint8, read from disk per batch
    x_val = np.load(dest / "val.npy", mmap_mode="r")
    y_train = y_val = None
    if meta["class_names"]:
        y_train = torch.from_numpy(np.load(dest / "y_train.npy"))
        y_val = torch.from_numpy(np.load(dest / "y_val.npy"))
    notes = [f"{len(files)} images, {meta['mode']}, resized to {size}x{size}; {how}"]
    y, _ = _labels(root, files)
    train_ids, _, val_ids, _ = split(torch.arange(len(files)), y, opts.val_fraction, opts.seed)  # as _convert split
    captions = folder_caption_items(root, files, train_ids, val_ids, opts.assets)
    if captions:
        notes.append(f"captions from {caption_file(root).name}: {captions['extras']['text_vocab_size'] - 1} words")
    return Dataset(f"imagefolder:{root}", x_train, y_train, x_val, y_val, class_names=meta["class_names"],
                   source=str(root), notes=notes, **captions)


register(DatasetInfo("imagefolder", "your own images (PNG/JPEG/BMP/WebP); subfolders become classes; a captions.tsv "
                     "(IMAGE<TAB>caption) gives captions; "
                     "converted once into a memory-mapped cache", "your files", "CxSxS",
                     "subfolders", load_imagefolder, scheme=True, usage="imagefolder:PATH"))
