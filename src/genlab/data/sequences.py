"""`pairs:PATH`: paired token sequences for sequence-to-sequence models (translation, transduction).

The file is UTF-8 TSV, `source<TAB>target` per line (further columns, such as the attributions of
Tatoeba exports, are ignored). A batch carries the source and the target padded to fixed lengths, so
every batch has the same shapes and a compiled model compiles once:

    source (B, S) int64, source_mask (B, S) bool   the source tokens
    x      (B, T) int64, x_mask      (B, T) bool   BOS target EOS, the sequence to generate

Source and target share one tokenizer: one asset, one vocabulary size for both embeddings (a model
may tie them), and char or BPE vocabularies of two languages stay small together; the price is a
softmax over a few hundred tokens of the other side. Its special tokens are PAD, BOS, EOS = 0, 1, 2
(spec.extras). Pairs are an epoch-style source: every pair once per epoch, in a seeded order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..batch import SOURCE, SOURCE_MASK, X, X_MASK, Batch
from ..config import from_dict
from ..errors import ArgumentError, DataError
from .base import DataSource, DataSpec, DatasetInfo, LoadOptions, epoch_indices, register, split
from .text import TOKENIZER_ASSET, Tokenizer, saved_or_fitted, read_text

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


@dataclass(frozen=True)
class PairsOptions:
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: int = 1024  # bpe only
    max_source_len: int = 0  # 0: the longest source of the file; longer pairs are left out
    max_target_len: int = 0  # 0: the longest target of the file, plus BOS and EOS


def _padded(sequences: list[list[int]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (N, length) int32 tokens and the (N,) lengths."""
    out = torch.full((len(sequences), length), PAD, dtype=torch.int32)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.int32)
    return out, torch.tensor([len(s) for s in sequences], dtype=torch.int64)


class SequencePairs(DataSource):
    """Padded (source, target) pairs held in memory, visited in a seeded order each epoch."""

    def __init__(self, name: str, sources: list[list[int]], targets: list[list[int]], tokenizer: Tokenizer,
                 source_len: int, target_len: int, val_fraction: float, seed: int, source: str = "",
                 notes: list[str] | None = None):
        self.name, self.source, self.notes = name, source, list(notes or [])
        self.tokenizer = tokenizer
        src, src_len = _padded(sources, source_len)  # (N, S)
        tgt, tgt_len = _padded([[BOS, *t, EOS] for t in targets], target_len)  # (N, T)
        train, _, val, _ = split(torch.arange(len(sources)), None, val_fraction, seed)
        self._parts = {"train": (src[train], src_len[train], tgt[train], tgt_len[train]),
                       "val": (src[val], src_len[val], tgt[val], tgt_len[val])}
        self.spec = DataSpec("tokens", (target_len,), vocab_size=tokenizer.vocab_size, conditions=(SOURCE,),
                             extras={"pad_id": PAD, "bos_id": BOS, "eos_id": EOS, "source_length": source_len,
                                     "source_vocab_size": tokenizer.vocab_size, "tokenizer": tokenizer.kind})

    def _batch(self, part: str, idx: torch.Tensor) -> Batch:
        src, src_len, tgt, tgt_len = (t[idx] for t in self._parts[part])
        positions = torch.arange(src.shape[1]), torch.arange(tgt.shape[1])
        return {SOURCE: src.long(), SOURCE_MASK: positions[0] < src_len[:, None],
                X: tgt.long(), X_MASK: positions[1] < tgt_len[:, None]}

    def train_size(self) -> int:
        return len(self._parts["train"][0])

    def train_batch(self, index, batch_size, *, seed, rank=0, world_size=1, device="cpu") -> Batch:
        idx = epoch_indices(self.train_size(), index, batch_size, seed, rank, world_size)
        return {k: v.to(device, non_blocking=True) for k, v in self._batch("train", idx).items()}

    def validation(self, n=None) -> Batch:
        count = len(self._parts["val"][0])
        return self._batch("val", torch.arange(count if n is None else min(n, count)))

    def assets(self) -> dict[str, bytes]:
        return {TOKENIZER_ASSET: self.tokenizer.to_json()}


def read_pairs(scheme: str, path: str) -> tuple[str, list[str], list[str], list[str]]:
    """(path, sources, targets, notes) of a TSV file; a line without a tab is refused by number."""
    p, text = read_text(scheme, path)
    sources, targets, extra = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 2:
            raise DataError(f"{scheme}: {p} line {number} has no tab; every line must be source<TAB>target.")
        sources.append(columns[0])
        targets.append(columns[1])
        extra += len(columns) > 2
    notes = [f"{extra} lines had more than two columns; only the first two were read"] if extra else []
    return str(p), sources, targets, notes


def load_pairs(path: str, opts: LoadOptions) -> SequencePairs:
    """`pairs:PATH` -> padded sequence pairs (options: tokenizer, vocab_size, max_source_len, max_target_len)."""
    o = from_dict(PairsOptions, opts.options, "pairs options")
    if o.max_source_len < 0 or o.max_target_len < 0:
        raise ArgumentError("max_source_len and max_target_len must be positive (or 0 for the longest of the file)")
    p, sources, targets, notes = read_pairs("pairs", path)
    tokenizer, note = saved_or_fitted(opts, o.tokenizer, sources + targets, o.vocab_size, SPECIALS)
    if [tokenizer.token_id(s) for s in SPECIALS] != [PAD, BOS, EOS]:
        raise DataError(f"pairs: the run's saved tokenizer has no {', '.join(SPECIALS)} tokens: "
                        "it was saved by another kind of data (text:PATH?)")
    try:
        src, tgt = tokenizer.encode_batch(sources), tokenizer.encode_batch(targets)
    except ArgumentError as e:
        raise DataError(f"pairs: {p} holds {e}") from None
    source_len = o.max_source_len or max(1, *map(len, src))
    target_len = o.max_target_len or max(map(len, tgt)) + 2
    keep = [i for i in range(len(src)) if len(src[i]) <= source_len and len(tgt[i]) + 2 <= target_len]
    if len(keep) < len(src):
        notes.append(f"{len(src) - len(keep)} of {len(src)} pairs are longer than max_source_len {source_len} "
                     f"or max_target_len {target_len} (with BOS and EOS) and were left out")
    if len(keep) < 2:
        raise DataError(f"pairs: {p} has {len(keep)} usable pair(s); at least two are needed (one is held out).")
    notes = [note, f"{len(keep)} pairs, source padded to {source_len}, target to {target_len}", *notes]
    return SequencePairs(f"pairs:{p}", [src[i] for i in keep], [tgt[i] for i in keep], tokenizer, source_len,
                         target_len, opts.val_fraction, opts.seed, source=p, notes=notes)


register(DatasetInfo("pairs", "paired sequences, source<TAB>target per line, for sequence-to-sequence models",
                     "your file", "T", "none", load_pairs, scheme=True, usage="pairs:PATH",
                     options={"tokenizer": "char (default) or bpe, one shared by source and target",
                              "vocab_size": "bpe vocabulary size (default 1024)",
                              "max_source_len": "source tokens per item (default: the longest); "
                                                "longer pairs are left out",
                              "max_target_len": "target tokens with BOS and EOS (default: the longest)"}))
