"""Captions for `imagefolder:PATH`: a `captions.tsv` (or `captions.txt`) in the folder, one line per image.

Each line is `relative/path/of/image.png<TAB>its caption`. With the file present, every image needs a
caption; the vocabulary is the words of the training captions (lower-cased, split on white space and
commas), saved with the run, so a prompt with an unknown word is refused with the word list.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .captions import PAD, caption_tensors
from .text import TOKENIZER_ASSET, WordTokenizer, tokenizer_from_assets

CAPTION_FILES = ("captions.tsv", "captions.txt")
MAX_CAPTION_WORDS = 32


def caption_file(root: Path) -> Path | None:
    return next((root / name for name in CAPTION_FILES if (root / name).is_file()), None)


def read_captions(path: Path, root: Path, files: list[Path]) -> list[str]:
    """The caption of each of `files` (in order), from `path`; errors name the line or the image."""
    captions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        if not tab or not text.strip():
            raise DataError(f"{path}:{number}: expected 'IMAGE<TAB>caption', got {line[:60]!r}")
        captions[Path(name.strip()).as_posix()] = text.strip()
    names = [f.relative_to(root).as_posix() for f in files]
    missing = [n for n in names if n not in captions]
    if missing:
        raise DataError(f"{path} has no caption for {len(missing)} of the {len(names)} images (e.g. {', '.join(missing[:3])}); "
                        "give every image a line 'IMAGE<TAB>caption', or remove the file to train without captions")
    return [captions[n] for n in names]


def folder_caption_items(root: Path, files: list[Path], train_ids: torch.Tensor, val_ids: torch.Tensor,
                         assets: dict[str, bytes] | None) -> dict:
    """Dataset arguments (caption tensors per split, the tokenizer asset, the text extras) for a folder
    with a captions file; {} without one. `train_ids`/`val_ids` index `files` as the split does."""
    path = caption_file(root)
    if path is None:
        return {}
    texts = read_captions(path, root, files)
    train = [texts[int(i)] for i in train_ids]
    val = [texts[int(i)] for i in val_ids]
    if assets and TOKENIZER_ASSET in assets:  # a run's own vocabulary: its prompts keep their ids
        tok = tokenizer_from_assets(assets)
    else:
        tok = WordTokenizer((w for t in train for w in t.replace(",", " ").lower().split()), specials=[PAD])
    length = max(len(t.replace(",", " ").split()) for t in texts)
    if length > MAX_CAPTION_WORDS:
        raise DataError(f"{path}: a caption has {length} words; at most {MAX_CAPTION_WORDS} are used. Shorten it.")
    known = set(tok.words)
    unseen = sorted({w for t in val for w in t.replace(",", " ").lower().split()} - known)
    val = [" ".join(w for w in t.replace(",", " ").lower().split() if w in known) for t in val] if unseen else val
    return {"items_train": caption_tensors(train, tok, length), "items_val": caption_tensors(val, tok, length),
            "assets": {TOKENIZER_ASSET: tok.to_json()},
            "extras": {"text_vocab_size": tok.vocab_size, "text_length": length}}
