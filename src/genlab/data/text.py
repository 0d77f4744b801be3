"""`text:PATH`: a stream of character or BPE tokens over a text file, for autoregressive models.

As in nanoGPT's shakespeare_char: the file is tokenised once, its head (90%) trains and its tail
(10%) validates, and a training batch is `batch_size` windows of block_size + 1 tokens at random
starts (inputs and next-token targets in one tensor).

The tokenizer is fitted on the whole file (so the validation tail holds no unknown character) and is
an asset of the run: a resumed run, or a run that samples, reads it back with
`tokenizer_from_assets` instead of fitting again, so it tokenises exactly as training did even if the
file changed. `bpe` is byte-level BPE (GPT-2's scheme) trained locally with HuggingFace `tokenizers`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch

from ..batch import X, Batch
from ..config import from_dict
from ..errors import ArgumentError, DataError
from .base import DataSource, DataSpec, DatasetInfo, LoadOptions, register
from .windows import check_length, random_windows, tail_windows, window_generator

TOKENIZER_ASSET = "tokenizer.json"


@dataclass(frozen=True)
class TextOptions:
    block_size: int = 256  # tokens a model sees at once; windows hold block_size + 1
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: int = 1024  # bpe only: merges are learnt until the vocabulary has this many tokens


# ---------------------------------------------------------------------------------------------- tokenizers
class CharTokenizer:
    """One id per distinct character of the corpus (sorted by code point), after the special tokens."""

    kind = "char"

    def __init__(self, chars: Iterable[str], specials: Iterable[str] = ()):
        self.specials = list(specials)
        self.chars = sorted(set(chars))
        self._points = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # sorted: searchsorted maps

    @classmethod
    def fit(cls, texts: Iterable[str], specials: Iterable[str] = ()) -> "CharTokenizer":
        return cls(set().union(*map(set, texts)), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + len(self.chars)

    def token_id(self, special: str) -> int | None:
        return self.specials.index(special) if special in self.specials else None

    def encode_array(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.minimum(np.searchsorted(self._points, points), len(self._points) - 1)
        unknown = self._points[ids] != points
        if unknown.any():
            chars = sorted({chr(p) for p in points[unknown]})
            raise ArgumentError(f"characters the tokenizer does not know: {''.join(chars[:20])!r}; "
                                "it knows only those of the text it was fitted on")
        return ids + len(self.specials)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; a character outside the vocabulary is refused (ArgumentError)."""
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; special tokens (padding, BOS, EOS) are left out."""
        n = len(self.specials)
        return "".join(self.chars[i - n] for i in map(int, ids) if i >= n)

    def to_json(self) -> bytes:
        return json.dumps({"type": "char", "specials": self.specials, "chars": self.chars}).encode()


class WordTokenizer:
    """One id per word of a fixed vocabulary (captions built from a known word list), after the specials.

    Words are split on white space and commas and lower-cased; a word outside the vocabulary is refused
    with the list of known words, which is what a user typing a prompt needs to see.
    """

    kind = "word"

    def __init__(self, words: Iterable[str], specials: Iterable[str] = ()):
        self.specials = list(specials)
        self.words = sorted(set(words))
        self._ids = {w: i + len(self.specials) for i, w in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + len(self.words)

    def token_id(self, special: str) -> int | None:
        return self.specials.index(special) if special in self.specials else None

    def encode(self, text: str) -> list[int]:
        """Token ids of the words of `text`; an unknown word is refused (ArgumentError)."""
        words = text.replace(",", " ").lower().split()
        unknown = [w for w in words if w not in self._ids]
        if unknown:
            raise ArgumentError(f"words the tokenizer does not know: {', '.join(unknown)}; it knows: {' '.join(self.words)}")
        return [self._ids[w] for w in words]

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.specials)
        return " ".join(self.words[i - n] for i in map(int, ids) if i >= n)

    def to_json(self) -> bytes:
        return json.dumps({"type": "word", "specials": self.specials, "words": self.words}).encode()


class BPETokenizer:
    """Byte-level BPE from HuggingFace `tokenizers`: any text encodes, no unknown tokens."""

    kind = "bpe"

    def __init__(self, tokenizer):  # a tokenizers.Tokenizer
        self.hf = tokenizer

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, specials: Iterable[str] = ()) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def token_id(self, special: str) -> int | None:
        return self.hf.token_to_id(special)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.hf.encode(text).ids, dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        return self.hf.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; special tokens (padding, BOS, EOS) are left out."""
        return self.hf.decode(list(map(int, ids)), skip_special_tokens=True)

    def to_json(self) -> bytes:
        return self.hf.to_str().encode()


Tokenizer = CharTokenizer | WordTokenizer | BPETokenizer


def tokenizer_from_json(raw: bytes) -> Tokenizer:
    """A tokenizer from the bytes `to_json` wrote (ours for char and word, HuggingFace's format for bpe)."""
    d = json.loads(raw)
    if d.get("type") == "char":
        return CharTokenizer(d["chars"], d["specials"])
    if d.get("type") == "word":
        return WordTokenizer(d["words"], d["specials"])
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(raw.decode()))


def tokenizer_from_assets(assets: dict[str, bytes]) -> Tokenizer:
    """The tokenizer a run saved (`DataSource.assets()`): decode samples, encode prompts, no corpus needed.

    Args:
        assets: the data assets of a run (`DataSource.assets()`, as the run saved them).

    Returns:
        A tokenizer with `encode(str) -> list[int]`, `decode(list[int]) -> str` and `vocab_size`.

    Raises:
        DataError: the assets hold no tokenizer (the run was not trained on text).
    """
    if TOKENIZER_ASSET not in assets:
        raise DataError(f"the run's data assets hold no {TOKENIZER_ASSET}: it was not trained on tokens")
    return tokenizer_from_json(assets[TOKENIZER_ASSET])


def saved_or_fitted(opts: LoadOptions, kind: str, texts: list[str], vocab_size: int,
                    specials: tuple[str, ...] = ()) -> tuple[Tokenizer, str]:
    """The run's saved tokenizer when LoadOptions.assets holds one, else one fitted on `texts`; and a note."""
    if opts.assets and TOKENIZER_ASSET in opts.assets:
        tokenizer = tokenizer_from_assets(opts.assets)
        asked = opts.options.get("tokenizer")
        mismatch = f" (not the {asked} asked for)" if asked and asked != tokenizer.kind else ""
        return tokenizer, f"{tokenizer.kind} tokenizer reused from the run's assets{mismatch}"
    if kind == "bpe":
        if vocab_size < 1:
            raise ArgumentError(f"vocab_size must be positive, got {vocab_size}")
        tokenizer = BPETokenizer.fit(texts, vocab_size, specials)
    else:
        tokenizer = CharTokenizer.fit(texts, specials)
    return tokenizer, f"{kind} tokenizer fitted on the file: {tokenizer.vocab_size} tokens"


def read_text(scheme: str, path: str) -> tuple[Path, str]:
    """A UTF-8 file's text, with errors for a missing, unreadable or empty file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{scheme}: no file {p}. Give {scheme}:PATH with PATH a UTF-8 text file.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{scheme}: {p} is not UTF-8 text ({e}). Convert it, e.g. iconv -t UTF-8.") from None
    if not text.strip():
        raise DataError(f"{scheme}: {p} is empty.")
    return p, text


def start_token(tokenizer: Tokenizer, tokens: torch.Tensor) -> int:
    """The token unprompted generation starts from: a newline where it is one token (as nanoGPT does),
    else the stream's first token."""
    try:
        ids = tokenizer.encode("\n")
    except (ArgumentError, DataError):
        ids = []
    return int(ids[0]) if len(ids) == 1 else int(tokens[0])


# ---------------------------------------------------------------------------------------------- the source
class TextStream(DataSource):
    """Random windows of block_size + 1 tokens from the head of a token stream; the tail validates."""

    def __init__(self, name: str, tokens: torch.Tensor, tokenizer: Tokenizer, block_size: int,
                 val_fraction: float, source: str = "", notes: list[str] | None = None):
        self.name, self.source, self.notes = name, source, list(notes or [])
        self.tokenizer = tokenizer
        self.block_size = block_size
        n_val = max(1, round(len(tokens) * val_fraction))
        self.train_tokens, self.val_tokens = tokens[:-n_val], tokens[-n_val:]  # (N,) int32 each
        check_length(f"the training part of {name} ({1 - val_fraction:.0%})", len(self.train_tokens),
                     block_size + 1, "block_size")
        check_length(f"the validation tail of {name} (last {val_fraction:.0%})", len(self.val_tokens),
                     block_size + 1, "block_size")
        self.spec = DataSpec("tokens", (block_size + 1,), vocab_size=tokenizer.vocab_size,
                             extras={"block_size": block_size, "tokenizer": tokenizer.kind,
                                     "start_token": start_token(tokenizer, tokens)})

    def train_size(self) -> int:
        return len(self.train_tokens) - self.block_size  # distinct window starts

    def train_batch(self, index, batch_size, *, seed, rank=0, world_size=1, device="cpu") -> Batch:
        g = window_generator(seed, index, rank)
        x = random_windows(self.train_tokens, self.block_size + 1, batch_size, g)  # (B, T+1)
        return {X: x.long().to(device, non_blocking=True)}

    def validation(self, n=None) -> Batch:
        windows = tail_windows(self.val_tokens, self.block_size + 1)  # (K, T+1), always the same
        return {X: windows[:n].long()}

    def assets(self) -> dict[str, bytes]:
        return {TOKENIZER_ASSET: self.tokenizer.to_json()}


def load_text(path: str, opts: LoadOptions, name: str | None = None) -> TextStream:
    """`text:PATH` -> a token stream (options: block_size, tokenizer, vocab_size)."""
    o = from_dict(TextOptions, opts.options, "text options")
    if o.block_size < 1:
        raise ArgumentError(f"block_size must be positive, got {o.block_size}")
    p, text = read_text("text", path)
    tokenizer, note = saved_or_fitted(opts, o.tokenizer, text.splitlines(keepends=True), o.vocab_size)
    try:
        tokens = torch.from_numpy(tokenizer.encode_array(text).astype(np.int32))
    except ArgumentError as e:
        raise DataError(f"text: {p} holds {e}") from None
    notes = [note, f"{len(tokens)} tokens; the head ({1 - opts.val_fraction:.0%}) trains, "
                   f"the tail ({opts.val_fraction:.0%}) validates"]
    return TextStream(name or f"text:{p}", tokens, tokenizer, o.block_size, opts.val_fraction, source=str(p),
                      notes=notes)


# Tiny Shakespeare (Karpathy 2015, char-rnn): 1,115,394 characters, 65 distinct
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"


def load_shakespeare(name: str, opts: LoadOptions) -> TextStream:
    """`shakespeare`: input.txt from --data-dir (default data/shakespeare), or fetched with --download."""
    from .download import download

    data_dir = Path(opts.data_dir).expanduser() if opts.data_dir else Path("data") / "shakespeare"
    path = data_dir / "input.txt"
    if not path.is_file():
        if not opts.download:
            raise DataError(f"no Tiny Shakespeare in {data_dir}: expected {path}. Pass --data-dir DIR (the folder "
                            f"holding input.txt), add --download, or get it from {SHAKESPEARE_URL}.")
        download(SHAKESPEARE_URL, path, SHAKESPEARE_MD5)
    return load_text(str(path), opts, name="shakespeare")


register(DatasetInfo("text", "a text file as a token stream for language models (windows of block_size+1)",
                     "your file", "T+1", "none", load_text, scheme=True, usage="text:PATH",
                     options={"block_size": "tokens per window minus one (default 256)",
                              "tokenizer": "char (default) or bpe (byte-level BPE trained on the file)",
                              "vocab_size": "bpe vocabulary size (default 1024)"}))
register(DatasetInfo("shakespeare", "Tiny Shakespeare (1.1M characters) as a token stream; --data-dir DIR or --download",
                     SHAKESPEARE_URL, "T+1", "none", load_shakespeare, needs_files=True,
                     options={"block_size": "tokens per window minus one (default 256)",
                              "tokenizer": "char (default) or bpe", "vocab_size": "bpe vocabulary size (default 1024)"}))
